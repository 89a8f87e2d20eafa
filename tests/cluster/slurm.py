"""A real two-node Slurm cluster on this machine, for the cluster tests.

Debian's ``slurm-wlm`` 22.05 and ``munge`` (``make check`` installs them), set
up the way that was found to work on our machines (the traps are noted where
they bite: slurmd under ``nsenter``, the controller's hosts file, the order
of shutdown): a bridge with the
manager's address, and a network namespace for the controller and each node,
joined to the bridge by a veth pair; no namespace has a default route, so
nothing leaves the machine. munged, slurmctld and each slurmd run in the
foreground as our children, so each is stopped by the pid we started, in the
order Slurm needs (jobs cancelled and gone, then the slurmd, the controller,
munged last); then the namespaces, the bridge and the hosts file go.

Names carry a random tag and the subnet a random third octet, so a cluster
never meets another run's. Everything else lives under the given directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SlurmCluster", "slurm_cluster"]

NODES = ("n1", "n2")
CTLD_PORT = 16817
SLURMD_PORT = 16818
#: Seconds the cluster may take to come up (munged, slurmctld, both nodes idle, a probe job).
START_TIMEOUT = 60.0

_CONF = """\
ClusterName=ky
SlurmctldHost={host}({ctl})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoCtldInAddrAny
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
InactiveLimit=0
MinJobAge=300
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class ClusterError(AssertionError):
    """The cluster did not come up or go down as it should (with its logs' tails)."""


@dataclass
class SlurmCluster:
    """A running cluster: its ``slurm.conf``, addresses and the environment its
    commands (``sbatch``, ``squeue``, ``scancel``) need.
    """

    root: Path
    tag: str
    manager_address: str  # the bridge's address, in our own namespace
    controller_address: str
    node_addresses: dict[str, str]
    bridge: str
    namespaces: dict[str, str]  # role ("ctl", "n1", ...) -> netns name
    munge_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Our environment with ``SLURM_CONF`` pointing at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command against this cluster; its output, whatever its status."""
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def jobs(self) -> list[str]:
        """The ids of the jobs the controller knows and that have not ended."""
        listed = self.run("squeue", "-h", "-o", "%i")
        if listed.returncode != 0:  # an empty answer must mean no jobs, never no answer
            raise ClusterError(f"squeue failed: {listed.stderr}")
        return listed.stdout.split()

    def idle(self) -> bool:
        """Whether every node is idle (up, and running no job)."""
        states = self.run("sinfo", "-h", "-o", "%T").stdout.split()
        return bool(states) and set(states) == {"idle"}

    def start_slurmd(self, node: str) -> None:
        """Start (or start again) ``node``'s slurmd, in the node's namespace."""
        # nsenter, not `ip netns exec`: that remounts /sys, and slurmd then finds no
        # cgroup file system and refuses to start.
        self.processes[f"slurmd-{node}"] = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{self.namespaces[node]}",
                "slurmd",
                "-D",
                "-N",
                node,
                "-f",
                str(self.conf),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def lose_node(self, node: str) -> list[int]:
        """The node fails as a machine does: its slurmd and everything running in its
        namespace (job steps, kernels) are killed at once. Returns the pids killed.
        """
        slurmd = self.processes[f"slurmd-{node}"]
        slurmd.kill()
        slurmd.wait(timeout=10)
        listed = subprocess.run(
            ["ip", "netns", "pids", self.namespaces[node]],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        pids = [int(pid) for pid in listed.stdout.split()]
        for pid in pids:  # all ours: the namespace is the test cluster's
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def log_tail(self, name: str, size: int = 2000) -> str:
        """The end of daemon ``name``'s log ("" if it wrote none)."""
        for folder in (self.root, self.munge_dir):
            path = folder / f"{name}.log"
            if path.exists():
                return path.read_text(errors="replace")[-size:]
        return ""


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _alive(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def _stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM our child, then SIGKILL if it stays; reap it."""
    if _alive(process):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_for(what: str, check: object, cluster: SlurmCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in cluster.processes.items():
            if not _alive(process):
                raise ClusterError(
                    f"{name} exited with {process.returncode} while waiting for {what}:\n"
                    + cluster.log_tail(name)
                )
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    tails = "\n".join(f"--- {name}\n{cluster.log_tail(name)}" for name in cluster.processes)
    raise ClusterError(f"no {what} within {timeout} s:\n{tails}")


def _network(cluster: SlurmCluster) -> None:
    _sh("ip", "link", "add", cluster.bridge, "type", "bridge")
    _sh("ip", "addr", "add", f"{cluster.manager_address}/24", "dev", cluster.bridge)
    _sh("ip", "link", "set", cluster.bridge, "up")
    addresses = {"ctl": cluster.controller_address, **cluster.node_addresses}
    for role, netns in cluster.namespaces.items():
        veth = f"ky{cluster.tag}{role}"  # at most 15 characters (IFNAMSIZ)
        _sh("ip", "netns", "add", netns)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _sh("ip", "link", "set", veth, "master", cluster.bridge, "up")
        inside = ("ip", "netns", "exec", netns)
        _sh(*inside, "ip", "addr", "add", f"{addresses[role]}/24", "dev", "eth0")
        _sh(*inside, "ip", "link", "set", "eth0", "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")
    # slurmctld binds the address its host name resolves to (NoCtldInAddrAny): the
    # controller's namespace gets a hosts file, which `ip netns exec` lays over /etc/hosts.
    hosts = Path("/etc/netns") / cluster.namespaces["ctl"]
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts").write_text(
        f"127.0.0.1 localhost\n{cluster.controller_address} {socket.gethostname().split('.')[0]}\n"
    )


def _teardown_network(cluster: SlurmCluster) -> None:
    for netns in cluster.namespaces.values():
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
        shutil.rmtree(Path("/etc/netns") / netns, ignore_errors=True)
    subprocess.run(["ip", "link", "delete", cluster.bridge], capture_output=True, check=False)


def _munge(cluster: SlurmCluster) -> Path:
    """Start munged as the munge user with a fresh key; returns its socket.

    Its files live in a directory of its own under /tmp: the munge user cannot
    reach into pytest's 0700 scratch directories. Its stderr goes to its log too.
    """
    home = cluster.munge_dir
    home.chmod(0o711)  # munged wants its socket's directory searchable by all
    key = home / "munge.key"
    key.write_bytes(secrets.token_bytes(128))
    key.chmod(0o400)
    for path in (home, key):
        shutil.chown(path, "munge", "munge")
    sock = home / "munge.socket"
    with (cluster.root / "munged.stderr").open("wb") as stderr:  # the child has its own copy
        cluster.processes["munged"] = subprocess.Popen(
            [
                "munged",
                "--foreground",
                f"--key-file={key}",
                f"--socket={sock}",
                f"--pid-file={home / 'munged.pid'}",
                f"--log-file={home / 'munged.log'}",
                f"--seed-file={home / 'munged.seed'}",
            ],
            user="munge",
            group="munge",
            extra_groups=[],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return sock


@contextmanager
def slurm_cluster(root: Path) -> Iterator[SlurmCluster]:
    """Start the cluster under ``root``; yields it once both nodes are idle and a
    probe job ran on both; tears everything down on the way out.
    """
    tag = secrets.token_hex(2)
    octet = 10 + secrets.randbelow(240)
    prefix = f"10.77.{octet}"
    cluster = SlurmCluster(
        root=root,
        tag=tag,
        manager_address=f"{prefix}.1",
        controller_address=f"{prefix}.2",
        node_addresses={name: f"{prefix}.{11 + i}" for i, name in enumerate(NODES)},
        bridge=f"kybr{tag}",
        namespaces={role: f"ky-{tag}-{role}" for role in ("ctl", *NODES)},
        munge_dir=Path(tempfile.mkdtemp(prefix="kernelyard-munge-")),
    )
    (root / "state").mkdir(parents=True)
    (root / "spool").mkdir()
    try:
        _network(cluster)
        munge_socket = _munge(cluster)
        _wait_for("munge socket", munge_socket.exists, cluster, START_TIMEOUT)
        # More CPUs than the machine has (config_overrides lets slurmd claim them): a
        # kernel takes a CPU of Slurm's while it mostly waits, and the tests and the
        # benchmark start ten at once.
        nodes = "\n".join(
            f"NodeName={name} NodeHostname={name} NodeAddr={address} CPUs=8 RealMemory=8000 "
            "State=UNKNOWN"
            for name, address in cluster.node_addresses.items()
        )
        cluster.conf.write_text(
            _CONF.format(
                host=socket.gethostname().split(".")[0],
                ctl=cluster.controller_address,
                ctld_port=CTLD_PORT,
                slurmd_port=SLURMD_PORT,
                munge_socket=munge_socket,
                root=root,
                nodes=nodes,
            )
        )
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        cluster.processes["slurmctld"] = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                cluster.namespaces["ctl"],
                "slurmctld",
                "-D",
                "-f",
                str(cluster.conf),
            ],
            env=cluster.env,
            **quiet,  # type: ignore[call-overload]
        )
        for name in NODES:
            cluster.start_slurmd(name)
        _wait_for("idle nodes", cluster.idle, cluster, START_TIMEOUT)
        # The first job after a fresh start waits about 3 s; the tests' jobs must not.
        probe = cluster.run(
            "sbatch", "--wait", "-N2", f"--output={root / 'probe.out'}", "--wrap", "true",
            timeout=START_TIMEOUT,
        )  # fmt: skip
        if probe.returncode != 0:
            raise ClusterError(
                f"the probe job failed: {probe.stderr}\n{cluster.log_tail('slurmctld')}"
            )
        yield cluster
    finally:
        _teardown(cluster)


def _teardown(cluster: SlurmCluster) -> None:
    """Jobs first (and wait until the controller has none), then the slurmd, the
    controller, munged: with munged gone first, a step retries its completion forever.
    """
    ctld = cluster.processes.get("slurmctld")
    if ctld is not None and _alive(ctld) and cluster.conf.exists():
        cluster.run("scancel", "--full", "-u", "root")
        deadline = time.monotonic() + 20
        while cluster.jobs() and time.monotonic() < deadline:
            time.sleep(0.2)
    for name in [n for n in cluster.processes if n.startswith("slurmd-")]:
        _stop(cluster.processes[name])
    for name in ("slurmctld", "munged"):
        if name in cluster.processes:
            _stop(cluster.processes[name])
    with contextlib.suppress(OSError):
        _teardown_network(cluster)
    shutil.rmtree(cluster.munge_dir, ignore_errors=True)
