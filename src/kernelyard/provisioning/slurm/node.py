"""The node side of a Slurm kernel: the job's batch script, with nothing but the stdlib.

:class:`~kernelyard.provisioning.slurm.SlurmProvisioner` submits this file as
the batch script (its first line made ``#!`` + the node's Python), so a node
needs neither kernelyard nor a shared home directory. Everything secret comes
through the job's environment, never its command line or script, which Slurm
shows to every user:

* ``KERNELYARD_KERNEL`` (JSON): kernel id, argv template, callback
  ``host:port``, this start's nonce, signature scheme, node-side directory;
* ``KERNELYARD_KEY``: the HMAC key; ``KERNELYARD_CURVE_PUBLIC`` and
  ``KERNELYARD_CURVE_SECRET``: the CurveZMQ pair, when encrypted.

It is the kernel's supervisor for the life of the job (the allocation): it
connects to the manager's callback and keeps that one connection (the
*link*); runs the kernel as its child, with a 0600 connection file of ``ip
0.0.0.0`` and every port 0 (the kernel binds ports of its choosing and
writes them back, as ipykernel and ours do); and reports on the link, each
line signed with the HMAC key:

* ``ready``: node, its address on the route to the manager, the kernel's pid
  and ports, with the nonce of the start it answers (the file is removed once
  read: it holds the keys);
* ``exited``: the kernel's exit code.

The manager sends signed lines back, each with a greater ``seq`` than the
last: ``signal`` (to the kernel's process group: an interrupt), ``kill``
(the kernel and what it started, not the supervisor), ``restart`` with a new
nonce (the kernel again, in this allocation: no new queue wait) and
``exit``. A kernel that ended waits RESTART_GRACE seconds for a restart;
then the supervisor exits with the kernel's code, ending the job (on
``exit``, with 0: an ordinary end, which Slurm records as COMPLETED). If
the link breaks (the manager went away), the kernel is stopped and the job
ends, as a local kernel ends with the server that started it.
Signals Slurm sends the batch step (``scancel --batch --signal=INT``, a time
limit's SIGTERM) go to the kernel's group too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time

#: Seconds the supervisor waits for the kernel to write its ports.
PORTS_TIMEOUT = 120.0
#: Seconds an ended kernel waits for the manager to restart it.
RESTART_GRACE = 60.0
#: Seconds a kernel asked to stop (SIGTERM) has before SIGKILL.
KILL_GRACE = 5.0
PORT_FIELDS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
SECRET_VARIABLES = ("KERNELYARD_KEY", "KERNELYARD_CURVE_PUBLIC", "KERNELYARD_CURVE_SECRET")
#: Longest line either side sends.
MAX_LINE = 64 * 1024
#: Signals that cannot be blocked: sent to the others of our group one by one.
UNBLOCKABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
#: Signals Slurm may send the batch step that the kernel's group gets too.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def signature(key: bytes, body: bytes) -> str:
    """A line's HMAC-SHA256, hex; the other side checks it with the same key."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def signed_line(key: bytes, fields: dict[str, object]) -> bytes:
    """One line of the link: ``{"body": JSON, "signature": HMAC of body}``."""
    body = json.dumps(fields, sort_keys=True)
    return json.dumps({"body": body, "signature": signature(key, body.encode())}).encode() + b"\n"


def read_signed(key: bytes, line: bytes) -> dict[str, object] | None:
    """The fields of a line signed with ``key``; None for anything else."""
    try:
        message = json.loads(line)
        body, signed = message["body"], message["signature"]
        if not isinstance(body, str) or not isinstance(signed, str):
            return None
        if not hmac.compare_digest(signature(key, body.encode()).encode(), signed.encode()):
            return None
        fields = json.loads(body)
    except (ValueError, KeyError, TypeError):
        return None
    return fields if isinstance(fields, dict) else None


def _address_towards(host: str, port: int) -> str:
    """This node's source address on its route to ``host`` (no packet is sent)."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, port))
        return str(probe.getsockname()[0])
    finally:
        probe.close()


class Supervisor:
    """The kernel's parent on the node, and the node's end of the link."""

    def __init__(self, job: dict[str, object], key: bytes, secrets_env: dict[str, str]) -> None:
        self.job = job
        self.key = key
        self.secrets = secrets_env
        host, port = str(job["callback"]).rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)
        self.link = socket.create_connection((self.host, self.port), timeout=30)
        self.link.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.link.settimeout(None)
        self.buffer = b""
        self.seq = 0
        self.kernel_pid = 0
        self.nonce = ""  # of the start the running kernel answers
        self.reported = False  # a kernel was ready once: the link carries news since
        self.code: int | None = None  # the last kernel's exit code, once it ended
        self.pending_signals: list[int] = []
        self.terminating = False  # Slurm asked the job to end (a time limit, scancel)
        # The connection file's directory, ours alone: a name in a shared /tmp could
        # be taken first by another user.
        self.directory = tempfile.mkdtemp(
            prefix="kernelyard-", dir=str(job.get("workdir") or "/tmp")
        )

    # -- the link ---------------------------------------------------------------------

    def send(self, fields: dict[str, object]) -> None:
        self.link.sendall(signed_line(self.key, {"kernel_id": self.job["kernel_id"], **fields}))

    def commands(self, timeout: float) -> list[dict[str, object]] | None:
        """The manager's commands that came within ``timeout``; None once the link broke."""
        try:
            readable, _, _ = select.select([self.link], [], [], timeout)
        except InterruptedError:
            return []
        if not readable:
            return []
        try:
            data = self.link.recv(MAX_LINE)
        except OSError:
            return None
        if not data:
            return None
        self.buffer += data
        found: list[dict[str, object]] = []
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            fields = read_signed(self.key, line)
            seq = fields.get("seq") if fields is not None else None
            if fields is None or not isinstance(seq, int) or seq <= self.seq:
                print(
                    "kernelyard node: ignored a badly signed or replayed command", file=sys.stderr
                )
                continue
            self.seq = seq
            found.append(fields)
        if len(self.buffer) > MAX_LINE:
            return None
        return found

    # -- the kernel -------------------------------------------------------------------

    def spawn(self, nonce: str) -> bool:
        """Start the kernel and report it ready; False if it ended before it had ports."""
        self.nonce = nonce
        path = os.path.join(self.directory, f"kernel-{self.job['kernel_id']}.json")
        info = {
            "transport": "tcp",
            "ip": "0.0.0.0",
            "key": self.key.decode(),
            "signature_scheme": self.job.get("signature_scheme", "hmac-sha256"),
            "kernel_name": self.job.get("kernel_name", ""),
            **dict.fromkeys(PORT_FIELDS, 0),
        }
        if self.secrets.get("KERNELYARD_CURVE_SECRET"):
            info["curve_publickey"] = self.secrets["KERNELYARD_CURVE_PUBLIC"]
            info["curve_secretkey"] = self.secrets["KERNELYARD_CURVE_SECRET"]
        if os.path.exists(path):
            os.unlink(path)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(info, handle)
        template = self.job["argv"]
        assert isinstance(template, list)
        argv = [str(arg).replace("{connection_file}", path) for arg in template]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the node's Python, which runs this script
        self.code = None
        pid = os.fork()
        if pid == 0:
            try:
                for number in FORWARDED:
                    signal.signal(number, signal.SIG_DFL)
                self.link.close()
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        self.kernel_pid = pid
        try:
            ports = self._ports(path)
        finally:  # the file holds the keys: never left behind, whatever happened
            if os.path.exists(path):
                os.unlink(path)
        if ports is None:
            return False
        self.send(
            {
                "event": "ready",
                "nonce": nonce,
                "job_id": os.environ.get("SLURM_JOB_ID", ""),
                "node": os.environ.get("SLURMD_NODENAME", socket.gethostname()),
                "address": _address_towards(self.host, self.port),
                "pid": pid,
                "ports": ports,
            }
        )
        self.reported = True
        return True

    def _ports(self, path: str) -> dict[str, int] | None:
        deadline = time.monotonic() + PORTS_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with open(path) as handle:
                    written = json.load(handle)
                ports = {name: int(written.get(name) or 0) for name in PORT_FIELDS}
            except (OSError, ValueError):
                ports = {}
            if ports and all(ports.values()):
                return ports
            if self.reap():
                return None  # it ended first: the manager hears "exited"
            time.sleep(0.01)
        print("kernelyard node: the kernel wrote no ports in time", file=sys.stderr)
        self.stop_kernel()
        return None

    def reap(self) -> bool:
        """Whether the kernel has ended (reaping it, and reporting its code once)."""
        if self.code is not None:
            return True
        try:
            pid, status = os.waitpid(self.kernel_pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.kernel_pid, 0
        if pid == 0:
            return False
        self.code = os.waitstatus_to_exitcode(status)
        if self.reported:  # before the first report, the job's own end says it
            with contextlib.suppress(OSError):  # the link is gone: the loop sees it
                self.send(
                    {
                        "event": "exited",
                        "pid": self.kernel_pid,
                        "code": self.code,
                        "nonce": self.nonce,
                    }
                )
        return True

    def to_group(self, signum: int) -> None:
        """``signum`` to the kernel and what it started (our process group), not to us.

        The kernel stays in our group: with Slurm's ``proctrack/pgid`` a process that
        leaves the job's group escapes the job's end.
        """
        if self.code is not None:
            return
        try:
            signal.Signals(signum)
        except ValueError:
            print(f"kernelyard node: ignored signal {signum}", file=sys.stderr)
            return
        if signum in UNBLOCKABLE:  # it would reach us too: to each of the others
            self.to_others(signum)
            return
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        try:
            os.killpg(os.getpgrp(), signum)
            signal.sigtimedwait({signum}, 0)  # our own copy: taken, not handled
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def to_others(self, signum: int) -> None:
        """``signum`` to every process of our group but us (the kernel, its children,
        what an earlier kernel left behind).
        """
        me, group = os.getpid(), os.getpgrp()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == group:
                    os.kill(int(entry), signum)
            except (OSError, ValueError, IndexError):
                continue

    def kill_group(self) -> None:
        """SIGKILL to the kernel and its children, not to us."""
        self.to_others(signal.SIGKILL)

    def stop_kernel(self) -> None:
        """SIGTERM to the kernel's group, SIGKILL after KILL_GRACE; reaped."""
        if self.reap():
            return
        self.to_group(signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline:
            if self.reap():
                return
            time.sleep(0.02)
        self.kill_group()
        while not self.reap():
            time.sleep(0.01)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until told to exit, the link breaks or an ended kernel's grace is
        out; returns the exit code for the job (the last kernel's).
        """
        for number in FORWARDED:
            signal.signal(number, lambda signum, _: self.pending_signals.append(signum))
        try:
            return self._supervise()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _supervise(self) -> int:
        if not self.spawn(str(self.job.get("nonce", ""))):
            return self.code or 1  # nobody has the link yet to restart it: the job fails
        ended_at: float | None = None
        while True:
            while self.pending_signals:
                received = self.pending_signals.pop(0)
                if received == signal.SIGTERM:
                    self.terminating = True  # the job is to end: no restart in it
                self.to_group(received)
            commands = self.commands(0.1)
            if commands is None:  # the manager is gone: so is its kernel
                self.stop_kernel()
                return self.code or 0
            for command in commands:
                op, asked = command.get("op"), command.get("signum")
                if op == "signal" and isinstance(asked, int):
                    self.to_group(asked)
                elif op == "kill":
                    self.kill_group()
                    self.reap()
                elif op == "restart" and not self.terminating:
                    self.stop_kernel()
                    self.kill_group()  # what the old kernel started must not linger
                    running = self.spawn(str(command.get("nonce", "")))
                    ended_at = None if running else time.monotonic()
                elif op == "exit":  # the manager is done with it: an ordinary end
                    self.stop_kernel()
                    self.kill_group()
                    return 0
            if ended_at is None and self.reap():
                ended_at = time.monotonic()
            if ended_at is not None and (
                self.terminating or time.monotonic() - ended_at > RESTART_GRACE
            ):
                return self.code or 0


def main() -> None:
    job = json.loads(os.environ["KERNELYARD_KERNEL"])
    secrets_env = {name: os.environ.get(name, "") for name in SECRET_VARIABLES}
    key = secrets_env["KERNELYARD_KEY"].encode()
    for name in (*SECRET_VARIABLES, "KERNELYARD_KERNEL", "JPY_PARENT_PID"):
        os.environ.pop(name, None)  # not the kernel's: its parent is on another machine
    supervisor = Supervisor(job, key, secrets_env)
    code = supervisor.run()
    sys.stderr.flush()
    sys.exit(code if 0 <= code < 256 else 128 + abs(code))


if __name__ == "__main__":
    main()
