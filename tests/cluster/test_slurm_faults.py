"""Slurm kernels through the server and under faults: a queued start that answers at
once, a node lost while its kernel runs, a forged report on the callback port.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import anyio
import psutil
import pytest

from kernelyard.discovery import KernelFinder, KernelSpecProvider
from kernelyard.manager import KernelManager
from kernelyard.provisioning import LaunchOptions
from kernelyard.provisioning.slurm import SlurmKernel
from kernelyard.wire import Channel

from ..helpers import make_spec_dir
from ..integration.serverutil import kernel_socket, running_server, settled_model, start_kernel
from .slurm import SlurmCluster
from .test_slurm_kernels import IPYKERNEL, KERNELYARD, _slurm

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _gone(slurm: SlurmCluster, job: str) -> None:
    with anyio.fail_after(60):
        while job in slurm.jobs():
            await anyio.sleep(0.2)


async def test_a_queued_start_answers_at_once_and_the_socket_waits(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    metadata = _slurm(slurm, extra_args=["--begin=now+4"])  # PENDING (BeginTime) for 4 s
    make_spec_dir(home / "data" / "kernels", "queued", argv=KERNELYARD, metadata=metadata)
    with running_server(home) as server:  # no --transport-encryption: Slurm's default
        async with server.http() as http:
            response = await http.post("api/kernels", json={"name": "queued"})
            assert response.status_code == 201, response.text
            model = response.json()
            kid = model["id"]
            assert model["execution_state"] == "starting"
            try:
                with anyio.fail_after(10):  # Slurm's reason, in the model
                    while "queued (BeginTime)" not in model.get("reason", ""):
                        model = (await http.get(f"api/kernels/{kid}")).json()
                        assert model["execution_state"] == "starting", model
                        await anyio.sleep(0.1)
                async with kernel_socket(server, kid, v1=True) as ws:
                    request = ws.message("kernel_info_request")
                    await ws.send(request)  # kept until the kernel answers
                    with anyio.fail_after(60):
                        while (reply := await ws.receive()).channel is not Channel.SHELL:
                            pass
                    assert reply.parent_header["msg_id"] == request.msg_id
                    assert reply.content["status"] == "ok"
                    executed, _ = await ws.execute("1 + 1")
                    assert executed.content["status"] == "ok"
                model = await settled_model(http, kid)
                assert model["execution_state"] == "idle"
                assert "reason" not in model
                assert model["encrypted"] is True  # on by default: it leaves the machine
                jobs = slurm.jobs()
                assert len(jobs) == 1
            finally:
                assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
    await _gone(slurm, jobs[0])


async def test_a_lost_node_is_a_dead_kernel_and_its_clients_are_told(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    metadata = _slurm(slurm, extra_args=["-w", "n2"])
    make_spec_dir(home / "data" / "kernels", "on-n2", argv=KERNELYARD, metadata=metadata)
    with running_server(home) as server:
        async with server.http() as http:
            model = await start_kernel(http, "on-n2")
            kid = model["id"]
            assert model["execution_state"] == "idle", model
            first = slurm.jobs()
            try:
                async with kernel_socket(server, kid, v1=True) as ws:
                    await ws.execute("x = 1")
                    await ws.send(ws.message("execute_request", {"code": "import time; "
                                                                 "time.sleep(600)"}))  # fmt: skip
                    lost = slurm.lose_node("n2")
                    assert lost, "nothing ran on n2"
                    with anyio.fail_after(30):  # the link breaks: a restart
                        while True:
                            got = await ws.receive()
                            if got.msg_type == "status" and got.content["execution_state"] in (
                                "restarting",
                                "dead",
                            ):
                                break
                    assert got.content["execution_state"] == "restarting"
                    model = (await http.get(f"api/kernels/{kid}")).json()
                    assert model["execution_state"] == "restarting", model
                    # Why, in the model: the link broke with the node (or, were the
                    # link slower, the heartbeat's verdict).
                    assert any(
                        why in model["reason"]
                        for why in ("stopped answering", "heartbeat silent for")
                    ), model
                    slurm.start_slurmd("n2")  # the node comes back; the restart lands there
                    with anyio.fail_after(90):
                        while (await http.get(f"api/kernels/{kid}")).json()[
                            "execution_state"
                        ] != "idle":
                            await anyio.sleep(0.5)
                        reply, outputs = await ws.execute("print('x' in dir())")
                    assert reply.content["status"] == "ok"
                    assert "False" in "".join(m.content.get("text", "") for m in outputs)
            finally:
                assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
    for job in first:
        await _gone(slurm, job)
    with anyio.fail_after(60):  # the node is back for the tests after this one
        while not slurm.idle():
            await anyio.sleep(0.5)


async def test_a_forged_report_on_the_real_callback_port_is_ignored_and_logged_once(
    slurm: SlurmCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernels = tmp_path / "kernels"
    metadata = _slurm(slurm, extra_args=["--begin=now+3", "-w", "n1"])
    make_spec_dir(kernels, "queued-n1", argv=IPYKERNEL, metadata=metadata)
    finder = KernelFinder([KernelSpecProvider([kernels])], runtime_dir=tmp_path / "runtime")
    options = LaunchOptions(stderr=None, startup_timeout=60)
    manager = KernelManager("queued-n1", finder=finder, options=options)
    me = psutil.Process()

    def callback_ports() -> set[int]:
        return {
            c.laddr.port
            for c in me.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.ip == slurm.manager_address
        }

    caplog.set_level(logging.WARNING, logger="kernelyard.provisioning.slurm.callback")
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.start)
        with anyio.fail_after(10):
            while not (ports := callback_ports()):
                await anyio.sleep(0.05)
        (port,) = ports
        body = json.dumps({"kernel_id": manager.kernel_id, "ports": {"shell_port": 1}})
        forged = json.dumps({"body": body, "signature": "0" * 64}) + "\n"
        send = (
            "import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])));"
            "s.sendall(sys.argv[3].encode()); s.close()"
        )
        for _ in range(2):  # from inside node n2, as a stranger on the cluster would
            sent = subprocess.run(
                ["nsenter", f"--net=/run/netns/{slurm.namespaces['n2']}", sys.executable,
                 "-c", send, slurm.manager_address, str(port), forged],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
    try:
        process = manager.process
        assert isinstance(process, SlurmKernel)
        assert process.node == "n1"  # the real report, not the forged one
        info = manager.connection_info
        assert info is not None
        assert info.shell_port != 1
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "wrong signature" in warnings[0]
        job = process.job_id
    finally:
        await manager.shutdown()
    await _gone(slurm, job)


@pytest.mark.parametrize(
    ("argv", "mode"), [(IPYKERNEL, "signal"), (KERNELYARD, "message")], ids=["ipykernel", "ours"]
)
async def test_through_the_server_stdin_interrupt_restart_and_delete(
    slurm: SlurmCluster, tmp_path: Path, argv: list[str], mode: str
) -> None:
    home = tmp_path / "home"
    metadata = _slurm(slurm, extra_args=["-w", "n2"])
    make_spec_dir(
        home / "data" / "kernels", "on-n2", argv=argv, interrupt_mode=mode, metadata=metadata
    )
    with running_server(home) as server:
        async with server.http() as http:
            model = await start_kernel(http, "on-n2")
            kid = model["id"]
            assert model["execution_state"] == "idle", model
            (job,) = slurm.jobs()
            try:
                async with kernel_socket(server, kid, v1=True) as ws:
                    # stdin: the kernel on the node asks, the client here answers.
                    request = ws.message(
                        "execute_request",
                        {"code": "print('got', input('? '))", "allow_stdin": True},
                    )
                    await ws.send(request)
                    with anyio.fail_after(30):
                        while (asked := await ws.receive()).msg_type != "input_request":
                            pass
                    assert asked.content["prompt"] == "? "
                    answer = ws.factory.message(
                        "input_reply",
                        {"value": "typed"},
                        parent=asked.header,
                        channel=Channel.STDIN,
                    )
                    await ws.send(answer)
                    outputs = []
                    with anyio.fail_after(30):
                        while (got := await ws.receive()).channel is not Channel.SHELL:
                            outputs.append(got)
                    assert got.content["status"] == "ok"
                    assert "got typed" in "".join(m.content.get("text", "") for m in outputs)
                    # interrupt over REST, in the kernelspec's mode
                    code = "import time; print('started', flush=True); time.sleep(60)"
                    cell = ws.message("execute_request", {"code": code})
                    await ws.send(cell)
                    with anyio.fail_after(30):  # in the sleep: its handlers are set
                        while not (
                            (got := await ws.receive()).msg_type == "stream"
                            and "started" in got.content["text"]
                            and got.parent_header.get("msg_id") == cell.msg_id
                        ):
                            pass
                    interrupted = await http.post(f"api/kernels/{kid}/interrupt")
                    assert interrupted.status_code == 204
                    with anyio.fail_after(30):
                        while (got := await ws.receive()).channel is not Channel.SHELL:
                            pass
                    assert got.content["status"] == "error"
                    assert got.content["ename"] == "KeyboardInterrupt"
                    # restart over REST: the same job, the same socket goes on
                    restarted = await http.post(f"api/kernels/{kid}/restart")
                    assert restarted.status_code == 200, restarted.text
                    assert slurm.jobs() == [job]
                    executed, _ = await ws.execute("1 + 1")
                    assert executed.content["status"] == "ok"
            finally:
                assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
    await _gone(slurm, job)
    shown = slurm.run("scontrol", "show", "job", job).stdout
    assert "JobState=COMPLETED" in shown  # an ordinary end, not FAILED
