"""The Slurm provisioner's parts that need no cluster: its config, its callback port."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelSpec
from kernelyard.errors import KernelSpecError, LaunchError
from kernelyard.provisioning import LaunchOptions
from kernelyard.provisioning.registry import provisioner_for
from kernelyard.provisioning.slurm import Allocation, SlurmConfig, SlurmKernel, SlurmProvisioner
from kernelyard.provisioning.slurm.callback import Callback
from kernelyard.provisioning.slurm.commands import JobState, SlurmCommands
from kernelyard.provisioning.slurm.link import NodeLink
from kernelyard.provisioning.slurm.node import read_signed, signature, signed_line
from kernelyard.provisioning.slurm.watcher import JobWatcher
from kernelyard.wire import ConnectionInfo

pytestmark = pytest.mark.anyio

KEY = b"the-kernel-key"
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_config_becomes_sbatch_arguments() -> None:
    config = SlurmConfig.from_config(
        "k",
        {"partition": "gpu", "account": "lab", "time": "1:00:00", "cpus": 4, "memory": "2G",
         "extra_args": ["--qos=short"], "queue_timeout": 60},
    )  # fmt: skip
    assert config.sbatch_args("abc") == [
        "--job-name=kernelyard-abc",
        "--output=/tmp/kernelyard-%j.out",
        "--no-requeue",
        "--partition=gpu",
        "--account=lab",
        "--time=1:00:00",
        "--mem=2G",
        "--cpus-per-task=4",
        "--qos=short",
    ]
    assert config.queue_timeout == 60.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"partitions": "x"}, "has no setting 'partitions'"),
        ({"cpus": "4"}, "cpus must be a int"),
        ({"cpus": True}, "cpus must be a int"),
        ({"queue_timeout": 0}, "queue_timeout must be a positive number"),
        ({"extra_args": "--qos=x"}, "extra_args must be a list of strings"),
        ({"transport_encryption": "on"}, "transport_encryption must be one of disabled, auto"),
    ],
)
def test_a_bad_config_names_the_kernelspec_and_the_setting(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(KernelSpecError, match=f"kernelspec 'k': .*{message}"):
        SlurmConfig.from_config("k", config)


def test_a_kernelspec_chooses_its_provisioner_by_entry_point(tmp_path: Any) -> None:
    metadata = {"kernel_provisioner": {"provisioner_name": "kernelyard-slurm", "config": {}}}
    spec = KernelSpec.from_dict("k", {"argv": ["k"], "metadata": metadata}).launch_spec()
    assert isinstance(provisioner_for(spec, tmp_path), SlurmProvisioner)
    local = {"kernel_provisioner": {"provisioner_name": "local-provisioner"}}  # jupyter_client's
    assert (
        KernelSpec.from_dict("k", {"argv": ["k"], "metadata": local}).launch_spec().provisioner
        == ""
    )
    with pytest.raises(KernelSpecError, match=r"metadata\.kernel_provisioner must be an object"):
        KernelSpec.from_dict("k", {"argv": ["k"], "metadata": {"kernel_provisioner": "slurm"}})


def test_job_states_as_exit_codes() -> None:
    assert JobState("COMPLETED", exit_code=0).returncode == 0
    assert JobState("FAILED", exit_code=1).returncode == 1
    assert JobState("CANCELLED", exit_code=0, exit_signal=9).returncode == -9
    assert JobState("RUNNING").returncode is None
    assert JobState("TIMEOUT").ended
    assert not JobState("PENDING").ended


def test_cluster_kernels_are_encrypted_unless_the_kernelspec_says_disabled() -> None:
    def mode(config: dict[str, Any], asked: str) -> str:
        provisioner = SlurmProvisioner(SlurmConfig.from_config("k", config))
        return provisioner._encryption(LaunchOptions(transport_encryption=asked))  # type: ignore[arg-type]

    assert mode({}, "disabled") == "auto"  # the default: its connection leaves the machine
    assert mode({}, "required") == "required"  # the options may ask for more
    assert mode({"transport_encryption": "disabled"}, "disabled") == "disabled"
    assert mode({"transport_encryption": "disabled"}, "auto") == "auto"  # never less
    assert mode({"transport_encryption": "required"}, "auto") == "required"


async def test_a_slurm_kernels_end_says_what_slurm_said() -> None:
    spec = KernelSpec.from_dict("k", {"argv": ["k"]}).launch_spec()
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    link = NodeLink(reader, writer, key=KEY, kernel_id="kid", job_id="7")
    allocation = Allocation(
        job_id="7", node="n2", commands=FakeCommands({}), link=link, poll_interval=60,
        output=None,
    )  # fmt: skip

    def described(shown: JobState | None, *, lost: bool = False) -> str:
        kernel = SlurmKernel(
            allocation=allocation, pid=1, connection_info=ConnectionInfo(key=KEY), argv=["k"],
            launch_spec=spec, provisioner="kernelyard-slurm",
        )  # fmt: skip
        allocation.ended = shown
        kernel._ended(-9 if lost else (shown.returncode if shown else -1), lost=lost)
        return kernel.exit_description

    try:
        lost = JobState("NODE_FAIL", reason="NodeDown", exit_code=0, exit_signal=9)
        assert described(lost) == "exited with code -9 (Slurm job 7 on n2: NODE_FAIL, NodeDown)"
        done = JobState("COMPLETED", reason="None", exit_code=0)
        assert described(done) == "exited with code 0 (Slurm job 7 on n2: COMPLETED)"
        assert described(None) == "exited with code -1 (Slurm job 7 on n2)"
        assert described(None, lost=True) == (
            "exited with code -9 (Slurm job 7 on n2: its supervisor on the node stopped answering)"
        )
    finally:
        allocation.watcher.forget("7")
        link.close()
        theirs.close()


async def test_the_link_takes_signed_lines_only_and_says_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    link = NodeLink(reader, writer, key=KEY, kernel_id="kid", job_id="7")
    exited: list[tuple[int, int]] = []
    lost = anyio.Event()
    link.on_exited = lambda pid, code: exited.append((pid, code))
    link.on_lost = lost.set
    node_side = theirs.makefile("rwb", buffering=0)
    try:
        assert link.send("signal", signum=2)
        assert link.send("kill")
        await writer.drain()
        sent = [read_signed(KEY, node_side.readline()) for _ in range(2)]
        assert sent == [{"op": "signal", "seq": 1, "signum": 2}, {"op": "kill", "seq": 2}]
        forged = signed_line(b"guess", {"event": "exited", "pid": 5, "code": 0})
        node_side.write(forged + b"not json\n")
        node_side.write(signed_line(KEY, {"event": "exited", "pid": 5, "code": 3}))
        with anyio.fail_after(5):
            while not exited:
                await anyio.sleep(0.01)
        restarting = asyncio.ensure_future(link.restart("n2", timeout=5))
        await anyio.sleep(0.1)
        restart = read_signed(KEY, node_side.readline())
        assert restart == {"op": "restart", "seq": 3, "nonce": "n2"}
        ready = {"event": "ready", "kernel_id": "kid", "nonce": "n2", "job_id": "7",
                 "node": "n1", "address": "10.0.0.3", "pid": 6, "ports": PORTS}  # fmt: skip
        node_side.write(signed_line(KEY, {**ready, "nonce": "n1"}))  # an earlier start's
        node_side.write(signed_line(KEY, ready))
        with anyio.fail_after(5):
            report = await restarting
        assert (report.pid, report.address, report.ports) == (6, "10.0.0.3", PORTS)
        assert exited == [(5, 3)]  # the forged one was not taken
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == ["Slurm job 7: ignored a badly signed line on the node's link"]
        node_side.close()
        theirs.close()  # the node is gone
        with anyio.fail_after(5):
            await lost.wait()
        assert not link.open
        assert not link.send("kill")
    finally:
        link.close()
        node_side.close()
        theirs.close()


async def _send(port: int, line: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line + b"\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def _report(kernel_id: str = "kid", nonce: str = "", **body: Any) -> tuple[bytes, bytes]:
    fields = {"kernel_id": kernel_id, "nonce": nonce, "job_id": "7", "node": "n1"}
    fields |= {"address": "10.0.0.2", "pid": 42, "ports": PORTS, **body}
    data = json.dumps(fields).encode()
    return data, json.dumps({"body": data.decode(), "signature": signature(KEY, data)}).encode()


async def test_only_a_report_signed_with_the_kernels_key_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Callback("127.0.0.1", "kid", KEY) as callback:
        callback.job_id = "7"
        nonce = callback.nonce
        body, _ = _report(nonce=nonce)
        forged = json.dumps({"body": body.decode(), "signature": signature(b"guess", body)})
        await _send(callback.port, forged.encode())
        await _send(callback.port, forged.encode())
        await _send(callback.port, b"not json")
        await _send(callback.port, b"[1, 2]")  # JSON, but not an object
        await _send(callback.port, json.dumps({"body": "x", "signature": "\u00e9"}).encode())
        await _send(callback.port, _report(kernel_id="other", nonce=nonce)[1])
        await _send(callback.port, _report(nonce="an-earlier-start")[1])  # replayed
        await _send(callback.port, _report(nonce=nonce, job_id="6")[1])  # another job
        await _send(callback.port, _report(nonce=nonce, ports={"shell_port": 1})[1])
        with anyio.move_on_after(0.3):
            await callback.report()
            pytest.fail("a forged, foreign or replayed report was taken")
        await _send(callback.port, _report(nonce=nonce)[1])
        with anyio.fail_after(5):
            report = await callback.report()
    assert (report.job_id, report.node, report.address, report.pid) == ("7", "n1", "10.0.0.2", 42)
    assert report.ports == PORTS
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once, however many came
    assert "wrong signature" in warnings[0].getMessage()


class FakeCommands(SlurmCommands):
    """Slurm's answers from a dict: job id -> state (squeue lists only RUNNING ones)."""

    def __init__(self, jobs: dict[str, JobState]) -> None:
        super().__init__({"SLURM_CONF": "fake"})
        self.jobs = jobs

    async def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {j: s for j, s in self.jobs.items() if j in job_ids and s.state == "RUNNING"}

    async def show(self, job_id: str) -> JobState | None:
        return self.jobs.get(job_id)


async def test_the_watcher_ends_jobs_on_scontrols_word_and_survives_a_bad_callback() -> None:
    commands = FakeCommands({"1": JobState("RUNNING"), "2": JobState("RUNNING")})
    watcher = JobWatcher.of(commands, 0.05)
    assert JobWatcher.of(commands, 1.0) is watcher  # one per cluster and loop
    ended: list[tuple[str, JobState | None]] = []

    def bad(state: JobState | None) -> None:
        raise RuntimeError("a listener's bug")

    watcher.watch("1", bad)
    watcher.watch("2", lambda state: ended.append(("2", state)))
    commands.jobs["1"] = JobState("COMPLETED", exit_code=0)
    await anyio.sleep(0.2)
    assert ended == []  # 2 still runs: absent from nothing, listed by squeue
    commands.jobs["2"] = JobState("FAILED", exit_code=3)
    with anyio.fail_after(5):
        while not ended:
            await anyio.sleep(0.02)
    assert ended == [("2", JobState("FAILED", exit_code=3))]


def test_a_client_is_made_outside_an_event_loop() -> None:
    # A KernelClient (and its ZmqLink) may be built before any loop runs, as before.
    client = KernelClient(ConnectionInfo(shell_port=1, iopub_port=2, stdin_port=3,
                                         control_port=4, hb_port=5))  # fmt: skip
    moved = ConnectionInfo(shell_port=11, iopub_port=12, stdin_port=13, control_port=14, hb_port=15)
    client.kernel_moved(moved)  # not open: only kept for its next connect
    assert client.connection_info == moved


async def test_a_callback_ip_this_host_does_not_have_is_a_launch_error() -> None:
    with pytest.raises(LaunchError, match="cannot listen for the kernel's report on callback_ip"):
        async with Callback("192.0.2.7", "kid", KEY):  # TEST-NET-1: nobody's address
            pass
