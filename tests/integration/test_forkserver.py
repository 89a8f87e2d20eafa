"""Fork servers on real processes: forked kernels look spawned, faults fall back to spawning."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from kernelyard.discovery import KernelFinder, KernelSpecProvider
from kernelyard.discovery.ownkernel import PRELOAD
from kernelyard.errors import LaunchError
from kernelyard.manager import KernelManager, KernelRestarter, MultiKernelManager
from kernelyard.provisioning import ForkServerProvisioner, ForkServers, LaunchOptions
from kernelyard.provisioning.forked import UNKNOWN_EXIT_CODE, ForkedProcess
from kernelyard.provisioning.forkserver import ZYGOTE
from kernelyard.provisioning.process import ProcessEvents
from kernelyard.provisioning.spec import LaunchSpec

from ..helpers import Collect, make_spec_dir, wait_for_output
from .conftest import IPYKERNEL, KERNELYARD

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FORKED = {"kernelyard": {"handshake": True, "preload": list(PRELOAD)}}


@pytest.fixture
def fork_finder(tmp_path: Path, kernels_dir: Path, runtime_dir: Path) -> KernelFinder:
    """The integration kernels plus ``forked`` (our kernel, preloading) and broken preloads."""
    ipython_env = {"IPYTHONDIR": str(tmp_path / "ipython"), "KY_SPEC": "from-spec"}
    make_spec_dir(kernels_dir, "forked", argv=KERNELYARD, env=ipython_env, metadata=FORKED)
    make_spec_dir(
        kernels_dir,
        "forked-signal",
        argv=KERNELYARD,
        env=ipython_env,
        metadata=FORKED,
        interrupt_mode="signal",
    )
    opted_out = {"kernelyard": {"preload": []}}
    make_spec_dir(kernels_dir, "python3-spawned", argv=IPYKERNEL, metadata=opted_out)
    missing = {"kernelyard": {"handshake": True, "preload": ["no_such_module_here"]}}
    make_spec_dir(kernels_dir, "bad-preload", argv=KERNELYARD, env=ipython_env, metadata=missing)
    missing_python = ["/nonexistent/python", "-m", "kernelyard.kernel", "-f", "{connection_file}"]
    make_spec_dir(kernels_dir, "no-python", argv=missing_python, metadata=FORKED)
    threads = tmp_path / "threads"
    threads.mkdir()
    (threads / "starts_a_thread.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    )
    threaded = {"kernelyard": {"handshake": True, "preload": ["starts_a_thread"]}}
    make_spec_dir(
        kernels_dir,
        "threaded-preload",
        argv=KERNELYARD,
        env={**ipython_env, "PYTHONPATH": str(threads)},
        metadata=threaded,
    )
    return KernelFinder([KernelSpecProvider([kernels_dir])], runtime_dir=runtime_dir)


@pytest.fixture
async def forks() -> AsyncIterator[ForkServers]:
    async with ForkServers() as servers:
        yield servers


QUIET = LaunchOptions(stderr=None)


def _forking(forks: ForkServers, finder: KernelFinder) -> ForkServerProvisioner:
    return ForkServerProvisioner(forks, finder.runtime_dir)


def _children() -> list[int]:
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and _parent_or_none(int(entry)) == os.getpid()
    ]


def _is_zygote(pid: int) -> bool:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:2] == [str(ZYGOTE).encode()]


def _parent_or_none(pid: int) -> int | None:
    try:
        return _parent(pid)
    except OSError:
        return None


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def _ready(forks: ForkServers, finder: KernelFinder, type_id: str) -> None:
    """Start the zygote of ``type_id`` and wait until it has preloaded."""
    with anyio.fail_after(30):
        assert await forks.prepare(finder.get_spec(type_id).launch_spec(), wait=True)


async def _usable(forks: ForkServers, finder: KernelFinder, type_id: str) -> bool:
    km = KernelManager(type_id, finder=finder, options=QUIET, provisioner=_forking(forks, finder))
    async with km:
        assert km.process is not None
        return km.process.forked


async def test_a_forked_kernel_is_what_a_spawned_one_would_be(
    fork_finder: KernelFinder, forks: ForkServers, tmp_path: Path
) -> None:
    await _ready(forks, fork_finder, "forked")
    work = tmp_path / "work"
    work.mkdir()
    errors: list[bytes] = []
    km = KernelManager(
        "forked",
        finder=fork_finder,
        options=LaunchOptions(
            cwd=work, env={**os.environ, "KY_LAUNCH": "per-launch"}, stderr=errors.append
        ),
        provisioner=_forking(forks, fork_finder),
    )
    async with km, km.client() as client:
        assert km.process is not None
        assert km.process.forked
        assert _parent(km.process.pid) != os.getpid()  # the zygote's child
        assert os.getpgid(km.process.pid) == km.process.pid  # its own session
        await client.wait_for_ready(timeout=30)
        code = (
            "import os, sys\n"
            "print(os.getcwd(), os.environ['KY_SPEC'], os.environ['KY_LAUNCH'],"
            " os.environ['JPY_PARENT_PID'], sys.argv[0].endswith('__main__.py'), sys.argv[1],"
            " sys.path[0], __name__, sys.stdin.read())\n"
            "sys.__stderr__.write('to the real stderr\\n'); sys.__stderr__.flush()"
        )
        out = Collect()
        reply = await client.execute_interactive(code, output_hook=out, timeout=30)
        assert reply.content["status"] == "ok"
        # Descriptor 2 is captured: shown to the frontend, and copied to the real stderr.
        assert out.text("stderr") == "to the real stderr\n"
        assert out.text().split() == [
            str(work),
            "from-spec",
            "per-launch",
            str(os.getpid()),
            "True",
            "-f",
            str(work),
            "__main__",
        ]
        pid = km.process.pid
    assert km.process.returncode in (0, -signal.SIGTERM)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped by the zygote: gone, not a zombie
    with anyio.fail_after(5):  # the pipe's end: everything the kernel wrote has arrived
        assert "to the real stderr" in await km.process.stderr_tail()
    assert b"to the real stderr" in b"".join(errors)


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})], ids=["uvloop"])
async def test_a_spawned_kernel_is_not_taken_for_forked_under_uvloop(
    fork_finder: KernelFinder, forks: ForkServers
) -> None:
    """The server runs on uvloop, whose subprocess transport is not asyncio's class."""
    km = KernelManager(
        "python3", finder=fork_finder, options=QUIET, provisioner=_forking(forks, fork_finder)
    )
    async with km:
        assert km.process is not None
        assert not km.process.forked
        assert _parent(km.process.pid) == os.getpid()


async def test_fork_false_in_the_options_spawns_even_a_preloading_kernel(
    fork_finder: KernelFinder, forks: ForkServers
) -> None:
    await _ready(forks, fork_finder, "forked")
    km = KernelManager(
        "forked",
        finder=fork_finder,
        options=LaunchOptions(stderr=None, fork=False),
        provisioner=_forking(forks, fork_finder),
    )
    async with km:
        assert km.process is not None
        assert not km.process.forked
        assert _parent(km.process.pid) == os.getpid()


async def test_kill_nine_is_reported_and_the_restarter_forks_it_again(
    fork_finder: KernelFinder, forks: ForkServers
) -> None:
    await _ready(forks, fork_finder, "forked")
    km = KernelManager(
        "forked", finder=fork_finder, options=QUIET, provisioner=_forking(forks, fork_finder)
    )
    restarted = anyio.Event()
    async with km, anyio.create_task_group() as tg:
        restarter = KernelRestarter(km, on_restarted=lambda event: restarted.set())
        tg.start_soon(restarter.run)
        assert km.process is not None
        first = km.process
        first.kill()
        assert await first.wait() == -signal.SIGKILL
        with anyio.fail_after(30):
            await restarted.wait()
        assert km.process is not first
        assert km.process.forked
        async with km.client() as client:
            reply = await client.execute("x = 1", timeout=30)
            assert reply.content["status"] == "ok"
        tg.cancel_scope.cancel()


async def test_interrupt_by_signal_reaches_a_forked_kernel(
    fork_finder: KernelFinder, forks: ForkServers
) -> None:
    await _ready(forks, fork_finder, "forked-signal")
    km = KernelManager(
        "forked-signal", finder=fork_finder, options=QUIET, provisioner=_forking(forks, fork_finder)
    )
    async with km, km.client() as client, client.iopub() as messages:
        assert km.process is not None
        assert km.process.forked
        async with anyio.create_task_group() as tg:
            replies = []

            async def run() -> None:
                code = "import time\nprint('started', flush=True)\ntime.sleep(30)"
                replies.append(await client.execute(code, timeout=30))

            tg.start_soon(run)
            with anyio.fail_after(30):
                await wait_for_output(messages, "started")
            await km.interrupt()
        assert replies[0].content["status"] == "error"
        assert replies[0].content["ename"] == "KeyboardInterrupt"


async def test_a_cwd_that_does_not_exist_is_a_launch_error(
    fork_finder: KernelFinder, forks: ForkServers, tmp_path: Path, runtime_dir: Path
) -> None:
    await _ready(forks, fork_finder, "forked")
    km = KernelManager(
        "forked",
        finder=fork_finder,
        options=LaunchOptions(cwd=tmp_path / "missing"),
        provisioner=_forking(forks, fork_finder),
    )
    with pytest.raises(LaunchError, match="No such file or directory"):
        await km.start()


@pytest.mark.parametrize(
    ("type_id", "why"),
    [("bad-preload", "cannot preload no_such_module_here"), ("threaded-preload", "thread")],
)
async def test_a_zygote_that_cannot_preload_is_not_used(
    fork_finder: KernelFinder,
    forks: ForkServers,
    type_id: str,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(30):
        assert not await forks.prepare(fork_finder.get_spec(type_id).launch_spec(), wait=True)
    assert why in caplog.text
    assert not await _usable(forks, fork_finder, type_id)  # spawned, and it works


async def test_concurrent_first_launches_start_one_zygote(
    fork_finder: KernelFinder, forks: ForkServers
) -> None:
    spec = fork_finder.get_spec("forked").launch_spec()
    ready: list[bool] = []

    async def prepare(wait: bool) -> None:
        ready.append(await forks.prepare(spec, wait=wait))

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(prepare, i % 2 == 0)
    assert len([pid for pid in _children() if _is_zygote(pid)]) == 1
    assert ready.count(True) >= 3  # every waiter saw it ready


async def test_requests_that_fill_the_zygotes_socket_wait_instead_of_failing(
    forks: ForkServers, tmp_path: Path
) -> None:
    (tmp_path / "quick_exit.py").write_text("")
    spec = LaunchSpec(argv=(sys.executable, "-m", "quick_exit"), preload=("json",))
    argv = [sys.executable, "-m", "quick_exit"]
    assert await forks.prepare(spec, wait=True)
    (zygote,) = [pid for pid in _children() if _is_zygote(pid)]
    env = {**os.environ, "BIG": "x" * 20_000}  # 60 of these are more than the socket holds
    processes: list[tuple[ForkedProcess, ProcessEvents]] = []

    async def launch() -> None:
        events = ProcessEvents(None)
        forked = await forks.spawn(spec, argv, env=env, cwd=str(tmp_path), events=events)
        assert forked is not None
        processes.append((forked, events))

    os.kill(zygote, signal.SIGSTOP)  # it reads nothing: the requests pile up
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(launch)
            await anyio.sleep(0.5)
            os.kill(zygote, signal.SIGCONT)
    finally:
        os.kill(zygote, signal.SIGCONT)
    try:
        with anyio.fail_after(30):
            for _, events in processes:
                await events.exited.wait()
        assert len(processes) == 60
        assert {p.get_returncode() for p, _ in processes} == {0}
    finally:
        for process, _ in processes:
            process.close()


async def test_a_missing_interpreter_is_a_launch_error_not_a_crash(
    fork_finder: KernelFinder, forks: ForkServers
) -> None:
    assert not await forks.prepare(fork_finder.get_spec("no-python").launch_spec(), wait=True)
    km = KernelManager(
        "no-python", finder=fork_finder, options=QUIET, provisioner=_forking(forks, fork_finder)
    )
    with pytest.raises(LaunchError, match="cannot start kernel"):
        await km.start()


async def test_a_kernel_outlives_its_zygote_and_its_end_is_still_seen(
    fork_finder: KernelFinder, forks: ForkServers
) -> None:
    await _ready(forks, fork_finder, "forked")
    km = KernelManager(
        "forked", finder=fork_finder, options=QUIET, provisioner=_forking(forks, fork_finder)
    )
    async with km, km.client() as client:
        assert km.process is not None
        zygote = _parent(km.process.pid)
        os.kill(zygote, signal.SIGKILL)
        reply = await client.execute("y = 2", timeout=30)  # the kernel does not care
        assert reply.content["status"] == "ok"
        # The next launch spawns while a new zygote preloads.
        assert not await _usable(forks, fork_finder, "forked")
        os.kill(km.process.pid, signal.SIGKILL)
        with anyio.fail_after(10):
            assert await km.process.wait() == UNKNOWN_EXIT_CODE
    await _ready(forks, fork_finder, "forked")  # a new zygote took over


async def test_closing_the_fork_servers_ends_the_zygotes_not_the_kernels(
    fork_finder: KernelFinder,
) -> None:
    async with ForkServers() as forks:
        await _ready(forks, fork_finder, "forked")
        km = KernelManager(
            "forked", finder=fork_finder, options=QUIET, provisioner=_forking(forks, fork_finder)
        )
        await km.start()
        assert km.process is not None
        zygote = _parent(km.process.pid)
    assert not Path(f"/proc/{zygote}").exists()  # closing waited for it to exit and be reaped
    async with km.client() as client:
        reply = await client.execute("z = 3", timeout=30)
        assert reply.content["status"] == "ok"
    await km.shutdown()
    assert km.process.returncode in (0, -signal.SIGTERM, UNKNOWN_EXIT_CODE)


async def test_multi_kernel_manager_forks_after_warm_up(fork_finder: KernelFinder) -> None:
    async with MultiKernelManager(finder=fork_finder, default_type_id="forked") as kernels:
        assert await kernels.warm_up(wait=True)
        assert not await kernels.warm_up("python3-spawned")  # a type that opted out
        ids: list[str] = []

        async def start() -> None:
            ids.append(await kernels.start_kernel())

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(start)
        pids = set()
        for kid in ids:
            process = kernels.get_kernel(kid).process
            assert process is not None
            assert process.forked
            pids.add(process.pid)
        assert len(pids) == 10
    async with MultiKernelManager(finder=fork_finder, options=LaunchOptions(fork=False)) as kernels:
        assert not await kernels.warm_up("forked", wait=True)  # fork=False
        kernel_id = await kernels.start_kernel("forked")
        process = kernels.get_kernel(kernel_id).process
        assert process is not None
        assert not process.forked
