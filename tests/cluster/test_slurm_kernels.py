"""Kernels on the test cluster through the kernelyard-slurm provisioner, from the library."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kernelyard.discovery import KernelFinder, KernelSpecProvider
from kernelyard.errors import KernelSpecError, LaunchError
from kernelyard.manager import KernelManager
from kernelyard.manager.hl import running_kernel
from kernelyard.provisioning import LaunchOptions
from kernelyard.provisioning.slurm import SlurmKernel

from ..helpers import Collect, make_spec_dir, running
from ..integration.serverutil import kernel_socket, running_server, start_kernel, stream_text
from .slurm import SlurmCluster

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(180)]

IPYKERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
KERNELYARD = [sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"]
QUIET = LaunchOptions(stderr=None, startup_timeout=60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _slurm(slurm: SlurmCluster, **config: Any) -> dict[str, Any]:
    return {
        "kernel_provisioner": {
            "provisioner_name": "kernelyard-slurm",
            "config": {
                "callback_ip": slurm.manager_address,
                "slurm_conf": str(slurm.conf),
                "output": str(slurm.root / "kernel-%j.out"),
                "poll_interval": 0.5,
                **config,
            },
        },
        "supported_encryption": ["curve"],
    }


@pytest.fixture
def cluster_finder(slurm: SlurmCluster, tmp_path: Path) -> Iterator[KernelFinder]:
    kernels = tmp_path / "kernels"
    env = {"IPYTHONDIR": str(tmp_path / "ipython")}
    make_spec_dir(
        kernels, "ipykernel-n1", argv=IPYKERNEL, metadata=_slurm(slurm, extra_args=["-w", "n1"])
    )
    make_spec_dir(
        kernels, "kernelyard-n2", argv=KERNELYARD, env=env, interrupt_mode="message",
        metadata=_slurm(slurm, extra_args=["-w", "n2"]),
    )  # fmt: skip
    fails = [sys.executable, "-c", "import sys; sys.exit('no kernel here')"]
    make_spec_dir(kernels, "exits-on-node", argv=fails, metadata=_slurm(slurm))
    make_spec_dir(
        kernels, "never-scheduled", argv=IPYKERNEL,
        metadata=_slurm(slurm, extra_args=["--begin=now+1hour"], queue_timeout=2),
    )  # fmt: skip
    make_spec_dir(kernels, "no-such-provisioner", argv=IPYKERNEL,
        metadata={"kernel_provisioner": {"provisioner_name": "nope"}})  # fmt: skip
    make_spec_dir(kernels, "bad-config", argv=IPYKERNEL, metadata=_slurm(slurm, partitions="x"))
    yield KernelFinder([KernelSpecProvider([kernels])], runtime_dir=tmp_path / "runtime")
    assert slurm.jobs() == [], "a test left a job in the queue"


@pytest.mark.parametrize(("kernel", "node"), [("ipykernel-n1", "n1"), ("kernelyard-n2", "n2")])
async def test_a_kernel_runs_on_its_node_and_is_driven_from_here(
    cluster_finder: KernelFinder, slurm: SlurmCluster, kernel: str, node: str
) -> None:
    options = LaunchOptions(stderr=None, startup_timeout=60, transport_encryption="auto")
    async with running_kernel(kernel, finder=cluster_finder, options=options) as (manager, client):
        process = manager.process
        assert isinstance(process, SlurmKernel)
        assert process.node == node
        info = manager.connection_info
        assert info is not None
        assert info.ip == slurm.node_addresses[node]  # the address it reported from its node
        assert info.encrypted  # its connection leaves this machine
        with pytest.raises(ConnectionRefusedError):  # its ports are not in our namespace
            socket.create_connection(("127.0.0.1", info.shell_port), timeout=5).close()
        assert process.job_id in slurm.jobs()

        out = Collect()
        code = "import os; print(os.environ['SLURMD_NODENAME'], 6 * 7)"
        reply = await client.execute_interactive(code, output_hook=out, timeout=30)
        assert reply.content["status"] == "ok"
        assert out.text() == f"{node} 42\n"

        out = Collect()
        reply = await client.execute_interactive(
            "print('got', input('? '))", output_hook=out, stdin_hook=lambda _: "typed", timeout=30
        )
        assert out.text() == "got typed\n"

        cell = "import time; print('started', flush=True); time.sleep(30)"
        async with running(client, cell) as (_, replies):
            await manager.interrupt()
        assert replies[0].content["ename"] == "KeyboardInterrupt"

        first_job = process.job_id
        first_pid = process.pid
        await manager.restart()
        await client.wait_for_ready(timeout=60)
        again = manager.process
        assert isinstance(again, SlurmKernel)
        # In the same allocation (no new queue wait): the same job, a new kernel process.
        assert (again.job_id, again.node) == (first_job, node)
        assert again.pid != first_pid
        assert manager.connection_info is not None
        assert manager.connection_info.curve_keys == info.curve_keys  # the same keys
        reply = await client.execute("1 + 1", timeout=30)
        assert reply.content["status"] == "ok"
        last = manager.process
        job = last.job_id
    # Shut down politely: the kernel left by itself (no SIGTERM, no scancel), and the
    # supervisor then ended the job.
    assert last.returncode == 0
    with anyio.fail_after(30):
        while job in slurm.jobs():  # the job leaves the queue
            await anyio.sleep(0.2)
    shown = slurm.run("scontrol", "show", "job", job).stdout
    assert "JobState=COMPLETED" in shown
    assert "ExitCode=0:0" in shown


@pytest.mark.parametrize("death", ["sigkill", "scancel"])
async def test_a_dead_kernel_restarts_in_its_job_while_the_job_lives(
    cluster_finder: KernelFinder, slurm: SlurmCluster, death: str
) -> None:
    """A SIGKILL sent to the kernel goes to its group on the node, not to its
    supervisor: the job lives on and the restart stays in it. A job cancelled behind
    our back (an admin, a time limit) takes the allocation along: a new job.
    """
    manager = KernelManager("ipykernel-n1", finder=cluster_finder, options=QUIET)
    await manager.start()
    try:
        process = manager.process
        assert isinstance(process, SlurmKernel)
        if death == "sigkill":
            manager.signal(signal.SIGKILL)
        else:
            assert slurm.run("scancel", process.job_id).returncode == 0
        with anyio.fail_after(30):
            code = await process.wait()
        assert "Slurm job" in process.exit_description
        if death == "sigkill":
            assert code == -signal.SIGKILL  # told over the link
            assert process.job_id in slurm.jobs()
        await manager.restart()
        again = manager.process
        assert isinstance(again, SlurmKernel)
        assert (again.job_id == process.job_id) is (death == "sigkill")
        async with manager.client() as client:
            assert (await client.execute("1 + 1", timeout=30)).content["status"] == "ok"
        job = again.job_id
    finally:
        await manager.shutdown()
    with anyio.fail_after(30):
        while job in slurm.jobs():
            await anyio.sleep(0.2)


async def test_kill_cancels_the_job(cluster_finder: KernelFinder, slurm: SlurmCluster) -> None:
    manager = KernelManager("ipykernel-n1", finder=cluster_finder, options=QUIET)
    await manager.start()
    assert isinstance(manager.process, SlurmKernel)
    job = manager.process.job_id
    await manager.kill()
    with anyio.fail_after(30):
        while job in slurm.jobs():
            await anyio.sleep(0.2)


async def test_a_job_that_fails_before_it_reports_is_a_launch_error(
    cluster_finder: KernelFinder,
) -> None:
    manager = KernelManager("exits-on-node", finder=cluster_finder, options=QUIET)
    with pytest.raises(LaunchError, match=r"ended \(FAILED.*exit code 1\) before its kernel "
                       r"reported: no kernel here") as raised:  # fmt: skip
        await manager.start()
    assert raised.value.exit_code == 1


async def test_a_job_pending_past_the_queue_timeout_is_cancelled(
    cluster_finder: KernelFinder, slurm: SlurmCluster
) -> None:
    manager = KernelManager("never-scheduled", finder=cluster_finder, options=QUIET)
    with pytest.raises(LaunchError, match=r"still PENDING after 2 s in the queue \(BeginTime\)"):
        await manager.start()


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        ("no-such-provisioner", "names provisioner 'nope', which is not installed"),
        ("bad-config", "kernelyard-slurm has no setting 'partitions'"),
    ],
)
async def test_a_kernelspec_naming_a_bad_provisioner(
    cluster_finder: KernelFinder, kernel: str, message: str
) -> None:
    with pytest.raises(KernelSpecError, match=message):
        await KernelManager(kernel, finder=cluster_finder, options=QUIET).start()


async def test_two_kernels_through_the_server_land_on_two_nodes(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    for node in slurm.node_addresses:
        metadata = _slurm(slurm, extra_args=["-w", node])
        make_spec_dir(home / "data" / "kernels", f"on-{node}", argv=KERNELYARD, metadata=metadata)
    with running_server(home, "--transport-encryption", "auto") as server:
        async with server.http() as http:
            models = [await start_kernel(http, f"on-{node}") for node in slurm.node_addresses]
            try:
                seen = []
                for model in models:
                    assert model["encrypted"] is True
                    async with kernel_socket(server, model["id"], v1=True) as ws:
                        code = "import os; print(os.environ['SLURMD_NODENAME'])"
                        reply, outputs = await ws.execute(code)
                        assert reply.content["status"] == "ok"
                        seen.append(stream_text(outputs).strip())
                assert seen == list(slurm.node_addresses)  # n1 and n2, as asked
                jobs = slurm.jobs()
                assert len(jobs) == 2
            finally:
                for model in models:
                    assert (await http.delete(f"api/kernels/{model['id']}")).status_code == 204
    with anyio.fail_after(30):
        while set(jobs) & set(slurm.jobs()):  # deleted: the jobs leave the queue
            await anyio.sleep(0.2)
