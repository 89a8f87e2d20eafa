"""Kernels that outlive their manager, and a new manager that adopts them.

A manager process starts kernels with ``LaunchOptions(persist=True)``, runs a
cell in each, prints their AttachInfo and is killed with SIGKILL (a server that
crashed). The kernels live on; a manager here adopts them from that data: the
same namespace, interrupts and a shutdown that ends the process. Real kernels:
ours and ipykernel. What cannot be adopted (a process gone, a pid reused) is a
LaunchError, and a non-persistent kernel still dies with its manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kernelyard.discovery import KernelFinder, KernelSpecProvider
from kernelyard.errors import InvalidState, LaunchError
from kernelyard.manager import KernelManager, KernelState, MultiKernelManager
from kernelyard.provisioning import AttachInfo, LaunchOptions
from kernelyard.provisioning.process import process_start_time

from ..helpers import make_spec_dir, running
from .conftest import IPYKERNEL, KERNELYARD

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(120)]

QUIET = LaunchOptions(stderr=None, startup_timeout=60)

#: A manager that starts one kernel per type named on its command line, sets x in
#: each, prints their attach info as one JSON line, and then waits to be killed.
MANAGER = textwrap.dedent(
    """
    import json, sys, anyio
    from pathlib import Path
    from kernelyard.discovery import KernelFinder, KernelSpecProvider
    from kernelyard.manager import KernelManager
    from kernelyard.provisioning import LaunchOptions

    async def main():
        kernels, persist = sys.argv[1], sys.argv[2] == "persist"
        finder = KernelFinder([KernelSpecProvider([Path(kernels)])], runtime_dir=Path(sys.argv[3]))
        options = LaunchOptions(stderr=None, persist=persist, startup_timeout=60)
        found = {}
        for name in sys.argv[4:]:
            manager = KernelManager(name, finder=finder, options=options)
            await manager.start()
            async with manager.client() as client:
                await client.execute("x = 41", timeout=30)
            found[name] = manager.process.attach_info(manager.kernel_id).to_dict()
        print("ATTACH", json.dumps(found), flush=True)
        await anyio.sleep(3600)

    anyio.run(main)
    """
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def finder(tmp_path: Path) -> KernelFinder:
    kernels = tmp_path / "kernels"
    env = {"IPYTHONDIR": str(tmp_path / "ipython")}
    make_spec_dir(kernels, "ours", argv=KERNELYARD, env=env, interrupt_mode="message")
    make_spec_dir(kernels, "ipykernel", argv=IPYKERNEL, env=env)
    return KernelFinder([KernelSpecProvider([kernels])], runtime_dir=tmp_path / "runtime")


#: The kernels each test's crashed manager left running: killed at teardown whatever the
#: test did (only these pids, and only while they are still the same processes).
_LEFT: list[tuple[int, int | None]] = []


@pytest.fixture(autouse=True)
def _no_kernel_left() -> Iterator[None]:
    yield
    while _LEFT:
        pid, started = _LEFT.pop()
        if started is not None and process_start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _crashed_manager(tmp_path: Path, persist: bool, *names: str) -> dict[str, AttachInfo]:
    """Run MANAGER, read what it printed, SIGKILL it; the kernels' attach info."""
    argv = [sys.executable, "-c", MANAGER, str(tmp_path / "kernels"),
            "persist" if persist else "plain", str(tmp_path / "runtime"), *names]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as manager:
        assert manager.stdout is not None
        line = ""
        for line in manager.stdout:  # the kernels write here too
            if line.startswith("ATTACH "):
                break
        manager.send_signal(signal.SIGKILL)
        manager.wait(timeout=10)
    assert line.startswith("ATTACH "), "the manager printed no attach info"
    found = json.loads(line.removeprefix("ATTACH "))
    attached = {name: AttachInfo.from_dict(data) for name, data in found.items()}
    for attach in attached.values():
        _LEFT.append((attach.location["pid"], attach.location.get("start_time")))
    return attached


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_kernels_outlive_a_killed_manager_and_are_adopted(
    tmp_path: Path, finder: KernelFinder
) -> None:
    attached = _crashed_manager(tmp_path, True, "ours", "ipykernel")
    await anyio.sleep(3)  # longer than a kernel takes to notice a dead JPY_PARENT_PID
    for name, attach in attached.items():
        pid = attach.location["pid"]
        assert _alive(pid), f"{name} died with its manager"
        manager = KernelManager(name, finder=finder, options=QUIET, kernel_id=attach.kernel_id)
        await manager.adopt(attach)
        async with manager.client() as client:
            reply = await client.execute("print(x + 1)", timeout=30)
            assert reply.content["status"] == "ok"
            cell = "import time; print('started', flush=True); time.sleep(30)"
            async with running(client, cell) as (_, replies):
                await manager.interrupt()
            assert replies[0].content["ename"] == "KeyboardInterrupt"
            namespace = await client.execute("y = x", timeout=30)
            assert namespace.content["status"] == "ok"  # x survived: the same kernel
        connection_file = Path(attach.location["connection_file"])
        assert connection_file.exists()  # the crashed manager's sweep did not take it
        await manager.shutdown()
        with anyio.fail_after(10):
            while _alive(pid):
                await anyio.sleep(0.05)
        assert not connection_file.exists()


async def test_what_cannot_be_adopted_is_a_launch_error(
    tmp_path: Path, finder: KernelFinder
) -> None:
    attach = _crashed_manager(tmp_path, True, "ours")["ours"]
    os.kill(attach.location["pid"], signal.SIGKILL)
    with anyio.fail_after(10):
        while _alive(attach.location["pid"]):
            await anyio.sleep(0.05)
    manager = KernelManager("ours", finder=finder, options=QUIET, kernel_id=attach.kernel_id)
    with pytest.raises(LaunchError, match=r"its process \d+ is gone"):
        await manager.adopt(attach)
    same = {"finder": finder, "options": QUIET, "kernel_id": attach.kernel_id}

    def changed(**location: object) -> AttachInfo:
        return AttachInfo.from_dict(
            {**attach.to_dict(), "location": {**attach.location, **location}}
        )

    # A live pid, but not the kernel's: its start time differs.
    with pytest.raises(LaunchError, match="is another's now"):
        await KernelManager("ours", **same).adopt(changed(pid=os.getpid()))
    with pytest.raises(LaunchError, match="was not launched to persist"):
        await KernelManager("ours", **same).adopt(changed(persist=False))
    with pytest.raises(LaunchError, match="no pid and start time"):
        await KernelManager("ours", **same).adopt(changed(pid=None))
    with pytest.raises(LaunchError, match="given to manager of"):
        await KernelManager("ours", finder=finder, options=QUIET).adopt(attach)


async def test_a_kernel_not_launched_to_persist_dies_with_its_manager(
    tmp_path: Path, finder: KernelFinder
) -> None:
    attach = _crashed_manager(tmp_path, False, "ours")["ours"]
    pid = attach.location["pid"]
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        await anyio.sleep(0.1)
    assert not _alive(pid), "a plain kernel outlived its manager"


async def test_an_adopted_kernel_is_supervised_like_any_other(
    tmp_path: Path, finder: KernelFinder
) -> None:
    attach = _crashed_manager(tmp_path, True, "ours")["ours"]
    async with MultiKernelManager(finder=finder, options=QUIET) as kernels:
        kernel_id = await kernels.adopt_kernel("ours", attach)
        assert kernel_id == attach.kernel_id
        with pytest.raises(InvalidState, match="already in use"):
            await kernels.adopt_kernel("ours", attach)
        manager = kernels.get_kernel(kernel_id)
        os.kill(attach.location["pid"], signal.SIGKILL)  # it dies: the restarter revives it
        with anyio.fail_after(60):
            while (
                manager.process is None
                or getattr(manager.process, "pid", None) == attach.location["pid"]
                or manager.state is not KernelState.RUNNING
            ):
                await anyio.sleep(0.05)
        async with manager.client() as client:
            reply = await client.execute("'x' in dir()", timeout=30)
        assert reply.content["status"] == "ok"  # a fresh kernel, with the same id and key
        assert manager.connection_info is not None
        assert manager.connection_info.key == attach.connection_info.key
        await kernels.shutdown_kernel(kernel_id)
    assert kernel_id not in kernels
