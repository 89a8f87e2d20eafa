"""KernelManager, KernelRestarter and MultiKernelManager on real processes, faults included."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from kernelyard.discovery import KernelFinder
from kernelyard.errors import InvalidState, KernelDied, LaunchError, NoSuchKernel
from kernelyard.lifecycle import KernelEvent
from kernelyard.manager import (
    KernelManager,
    KernelRestarter,
    KernelState,
    MultiKernelManager,
    RestartEvent,
    run_kernel,
    start_kernel,
)
from kernelyard.provisioning import AttachInfo, LaunchOptions
from kernelyard.wire import Channel, MessageFactory, Reply, Signer, encode

from ..helpers import wait_for_output, wait_until_running

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

QUIET = LaunchOptions(stderr=None)


def _now() -> datetime:
    return datetime.now(UTC)


def quiet(finder: KernelFinder, type_id: str = "python3", **options: Any) -> KernelManager:
    """A manager whose kernel's stderr is not forwarded, with these LaunchOptions."""
    return KernelManager(type_id, finder=finder, options=LaunchOptions(stderr=None, **options))


async def test_start_writes_a_private_connection_file_and_shutdown_removes_it(
    finder: KernelFinder, runtime_dir: Path
) -> None:
    km = quiet(finder)
    assert km.state is KernelState.NEW
    await km.start()
    assert km.state is KernelState.RUNNING
    assert km.is_alive()
    assert km.process is not None
    path = km.process.connection_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    env = Path(f"/proc/{km.process.pid}/environ").read_bytes().split(b"\0")
    assert f"JPY_PARENT_PID={os.getpid()}".encode() in env
    assert os.getpgid(km.process.pid) == km.process.pid  # its own process group
    started = time.monotonic()
    await km.shutdown()
    assert time.monotonic() - started < 2.0
    assert km.state is KernelState.STOPPED
    assert not path.exists()
    # It replied; then it was terminated rather than waited for (exit_grace=0).
    assert km.process.returncode in (0, -signal.SIGTERM)
    await km.shutdown()  # idempotent


async def test_exit_grace_lets_a_kernel_leave_by_itself(finder: KernelFinder) -> None:
    km = quiet(finder, exit_grace=10.0)
    await km.start()
    await km.shutdown()
    assert km.process is not None
    assert km.process.returncode == 0


async def test_ipc_socket_files_are_removed(finder: KernelFinder) -> None:
    async with quiet(finder, transport="ipc") as km:
        assert km.process is not None
        files = km.process.ipc_files()
        assert len(files) == 5
        assert all(f.exists() for f in files)
    assert not any(f.exists() for f in files)


async def test_restart_in_place_keeps_id_ports_and_file(finder: KernelFinder) -> None:
    async with quiet(finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        assert km.process is not None
        assert km.connection_info is not None
        before = (km.process.pid, km.connection_info, km.process.connection_file.read_bytes())
        await kc.execute("state = 1", timeout=30)
        await km.restart()
        assert km.state is KernelState.RUNNING
        assert km.process.pid != before[0]
        assert km.connection_info == before[1]
        assert km.process.connection_file.read_bytes() == before[2]
        await kc.wait_for_ready(timeout=30)
        reply = await kc.execute("state", timeout=30)  # a fresh interpreter
        assert reply.content["ename"] == "NameError"


async def test_restart_with_new_ports(finder: KernelFinder) -> None:
    async with quiet(finder) as km:
        assert km.connection_info is not None
        old = km.connection_info
        await km.restart(newports=True)
        assert km.connection_info.key == old.key
        assert set(km.connection_info.ports.values()).isdisjoint(old.ports.values())
        async with km.client() as kc:
            await kc.wait_for_ready(timeout=30)


async def test_a_closed_client_takes_the_new_ports_when_it_opens_again(
    finder: KernelFinder,
) -> None:
    async with quiet(finder) as km:
        kc = km.client()
        async with kc:
            await kc.wait_for_ready(timeout=30)
        await km.restart(newports=True)  # kc is closed, and still referenced
        assert kc.connection_info == km.connection_info
        async with kc:
            await kc.wait_for_ready(timeout=30)
            assert (await kc.execute("1", timeout=30)).content["status"] == "ok"


async def test_an_open_client_follows_a_restart_to_new_ports(finder: KernelFinder) -> None:
    # As a cluster kernel does at every restart: another node, other ports.
    async with quiet(finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        old = km.connection_info
        await km.restart(newports=True)
        assert kc.connection_info == km.connection_info != old
        await kc.wait_for_ready(timeout=30)
        assert (await kc.execute("1 + 1", timeout=30)).content["status"] == "ok"


async def test_kernel_exiting_at_start_is_a_launch_error_with_its_stderr(
    finder: KernelFinder,
) -> None:
    km = quiet(finder, "exits-at-start")
    started = time.monotonic()
    with pytest.raises(LaunchError) as info:
        await km.start()
    assert time.monotonic() - started < 5
    assert info.value.exit_code == 3
    assert "cannot bind the shell port" in info.value.stderr_tail
    assert "cannot bind the shell port" in str(info.value)
    assert km.state is KernelState.STOPPED


async def test_missing_program_is_a_launch_error(finder: KernelFinder) -> None:
    with pytest.raises(LaunchError, match="cannot start kernel") as info:
        await quiet(finder, "no-such-program").start()
    assert info.value.argv is not None


async def test_a_kernel_ignoring_shutdown_is_killed_within_the_bound(finder: KernelFinder) -> None:
    km = quiet(finder, "stubborn", shutdown_timeout=1.0, kill_grace=0.5)
    await km.start()
    started = time.monotonic()
    await km.shutdown()
    elapsed = time.monotonic() - started
    assert km.process is not None
    assert km.process.returncode == -signal.SIGKILL
    assert elapsed < 1.0 + 0.5 + 1.0


async def test_kill_minus_nine_fails_pending_calls_at_once(finder: KernelFinder) -> None:
    async with quiet(finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        failures: list[tuple[type[BaseException], float]] = []

        code = "import time; time.sleep(30)"

        async def long_call() -> None:
            try:
                await kc.execute(code)
            except KernelDied as exc:
                failures.append((type(exc), time.monotonic()))

        async with kc.iopub() as messages, anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            await wait_until_running(messages, code)
            assert km.process is not None
            killed_at = time.monotonic()
            os.kill(km.process.pid, signal.SIGKILL)
        assert failures
        assert failures[0][1] - killed_at < 0.5
        assert km.state is KernelState.DEAD
        assert km.death is not None
        assert km.death.exit_code == -signal.SIGKILL
        with pytest.raises(KernelDied):  # and new calls fail at once too
            await kc.kernel_info()


async def test_restarter_brings_a_killed_kernel_back(finder: KernelFinder) -> None:
    events: list[tuple[str, RestartEvent]] = []
    async with quiet(finder) as km, km.client() as kc, anyio.create_task_group() as tg:
        restarter = KernelRestarter(
            km,
            on_died=lambda e: events.append(("died", e)),
            on_restarted=lambda e: events.append(("restarted", e)),
            on_failed=lambda e: events.append(("failed", e)),
        )
        tg.start_soon(restarter.run)
        await kc.wait_for_ready(timeout=30)
        assert km.process is not None
        os.kill(km.process.pid, signal.SIGKILL)
        with anyio.fail_after(30):
            while [kind for kind, _ in events] != ["died", "restarted"]:
                await km.wait_for_change()
        assert km.state is KernelState.RUNNING
        assert events[0][1].exit_code == -signal.SIGKILL
        assert events[1][1].attempt == 1
        await kc.wait_for_ready(timeout=30)
        assert (await kc.execute("1", timeout=30)).content["status"] == "ok"
        await km.shutdown()  # on purpose: the restarter stops instead of reviving it
    assert km.state is KernelState.STOPPED
    assert [kind for kind, _ in events] == ["died", "restarted"]


async def test_restarter_gives_up_after_exactly_restart_limit_attempts(
    finder: KernelFinder, kernels_dir: Path
) -> None:
    events: list[tuple[str, RestartEvent]] = []
    km = quiet(finder)
    await km.start()
    # From now on the kernel type fails at every start.
    (kernels_dir / "python3" / "kernel.json").write_text(
        '{"argv": ["' + sys.executable + '", "-c", "raise SystemExit(7)"]}'
    )
    restarter = KernelRestarter(
        km,
        restart_limit=3,
        on_died=lambda e: events.append(("died", e)),
        on_restarted=lambda e: events.append(("restarted", e)),
        on_failed=lambda e: events.append(("failed", e)),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(restarter.run)
        assert km.process is not None
        km.process.kill()
    assert [kind for kind, _ in events] == ["died", "failed"]
    assert events[1][1].attempt == 3
    assert "exited with code 7" in (events[1][1].error or "")
    assert km.state is KernelState.DEAD
    await km.shutdown()
    assert km.state is KernelState.STOPPED


async def test_heartbeat_silence_counts_as_death(finder: KernelFinder) -> None:
    events: list[str] = []
    async with quiet(finder) as km, anyio.create_task_group() as tg:
        restarter = KernelRestarter(
            km,
            heartbeat_interval=0.2,
            time_to_dead=1.0,
            on_died=lambda e: events.append(e.reason),
        )
        tg.start_soon(restarter.run)
        assert km.process is not None
        km.process.send_signal(signal.SIGSTOP)  # alive but silent
        with anyio.fail_after(20):
            while km.state is not KernelState.RUNNING or not events:
                await km.wait_for_change()
        assert "heartbeat" in events[0]
        tg.cancel_scope.cancel()


async def test_interrupt_by_signal_and_by_message(finder: KernelFinder) -> None:
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(20)"
    for type_id in ("python3", "python3-message"):
        async with quiet(finder, type_id) as km, km.client() as kc:
            await kc.wait_for_ready(timeout=30)
            assert km.interrupt_mode == ("message" if type_id.endswith("message") else "signal")
            async with kc.iopub() as messages, anyio.create_task_group() as tg:

                async def interrupt_once_running() -> None:
                    # ipykernel may publish execute_input before it arms SIGINT for the
                    # cell: wait for the cell's own output instead.
                    await wait_for_output(messages, "sleeping")
                    await km.interrupt()

                tg.start_soon(interrupt_once_running)
                reply = await kc.execute(code, timeout=15)
            assert reply.content["ename"] == "KeyboardInterrupt"


async def test_operations_in_the_wrong_state(finder: KernelFinder) -> None:
    km = quiet(finder)
    with pytest.raises(InvalidState):
        await km.interrupt()
    with pytest.raises(InvalidState):
        await km.restart()
    with pytest.raises(InvalidState):
        km.client()
    with pytest.raises(InvalidState):
        await km.wait()
    await km.shutdown()
    assert km.state is KernelState.STOPPED
    with pytest.raises(InvalidState, match="is stopped: it cannot start"):
        await km.start()


async def test_run_kernel_and_start_kernel(finder: KernelFinder) -> None:
    async with run_kernel("python3", finder=finder, options=QUIET) as kc:
        assert (await kc.execute("1", timeout=30)).content["status"] == "ok"
    km, kc = await start_kernel("python3", finder=finder, options=QUIET)
    try:
        assert (await kc.kernel_info()).content["status"] == "ok"
    finally:
        await kc.aclose()
        await km.shutdown()


async def test_twenty_concurrent_starts(finder: KernelFinder) -> None:
    async with MultiKernelManager(finder=finder, options=QUIET) as mkm:
        ids: list[str] = []

        async def start() -> None:
            ids.append(await mkm.start_kernel("python3"))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(start)
        assert len(set(ids)) == 20
        ports = [
            port
            for kid in ids
            for port in (mkm.get_kernel(kid).connection_info.ports.values())  # type: ignore[union-attr]
        ]
        assert len(ports) == len(set(ports)) == 100
        assert {m.state for m in await mkm.list_kernels()} == {KernelState.RUNNING}
        started = time.monotonic()
        await mkm.shutdown_all()
        assert len(mkm) == 0
        assert time.monotonic() - started < 10


async def test_multi_kernel_manager_by_id(finder: KernelFinder) -> None:
    async with MultiKernelManager(finder=finder, options=QUIET) as mkm:
        kid = await mkm.start_kernel(kernel_id="chosen-id")
        assert kid == "chosen-id"
        assert "chosen-id" in mkm
        with pytest.raises(InvalidState, match="already in use"):
            await mkm.start_kernel(kernel_id="chosen-id")
        with pytest.raises(LaunchError):
            await mkm.start_kernel("exits-at-start")
        assert mkm.list_kernel_ids() == ["chosen-id"]
        model = await mkm.kernel_model(kid)
        assert (model.id, model.name, model.state) == ("chosen-id", "python3", KernelState.RUNNING)
        await mkm.restart_kernel(kid)
        async with mkm.open_channels(kid) as channels:
            request = MessageFactory(clock=_now).message(
                "kernel_info_request", channel=Channel.SHELL
            )
            parts = encode(request, Signer(b""))[2:]
            await channels.send(
                Channel.SHELL,
                parts,
                msg_id=request.msg_id,
                msg_type=request.msg_type,
                origin="the-test",
            )
            with anyio.fail_after(30):
                replies: list[Reply[str | None]] = []
                while not replies:
                    batch = await channels.receive()
                    assert not any(isinstance(item, KernelEvent) for item in batch)
                    replies = [item for item in batch if isinstance(item, Reply)]
            [reply] = replies  # (the channels' own probes are not handed out)
            assert reply.origin == "the-test"
            assert reply.received.parent_id == request.msg_id
            assert reply.received.message().msg_type == "kernel_info_reply"
        await mkm.interrupt_kernel(kid)
        for missing in (mkm.get_kernel, mkm.remove_kernel):
            with pytest.raises(NoSuchKernel):
                missing("nope")
        with pytest.raises(NoSuchKernel):
            await mkm.shutdown_kernel("nope")
        await mkm.shutdown_kernel(kid)
        assert len(mkm) == 0
    with pytest.raises(InvalidState, match="async with"):
        await mkm.start_kernel()


async def test_a_slow_start_does_not_block_another(finder: KernelFinder, kernels_dir: Path) -> None:
    slow = kernels_dir / "slow"
    slow.mkdir()
    (slow / "kernel.json").write_text(
        '{"argv": ["' + sys.executable + '", "-c", "import time; time.sleep(30)"]}'
    )
    async with (
        MultiKernelManager(
            finder=finder, options=LaunchOptions(stderr=None, startup_timeout=20)
        ) as mkm,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(mkm.start_kernel, "slow")
        while len(mkm) == 0:  # the slow start claims its id before it awaits anything
            await anyio.sleep(0)
        (slow_id,) = mkm.list_kernel_ids()
        started = time.monotonic()
        fast = await mkm.start_kernel("python3")
        assert time.monotonic() - started < 10
        assert mkm.get_kernel(fast).state is KernelState.RUNNING
        assert mkm.get_kernel(slow_id).state is KernelState.STARTING  # still waiting
        tg.cancel_scope.cancel()


async def test_cwd_and_spec_env_with_substitution(finder: KernelFinder, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ, "KY_BASE": "from-base"}
    async with quiet(finder, "python3-env", cwd=workdir, env=env) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        reply = await kc.execute(
            "import os",
            user_expressions={"cwd": "os.getcwd()", "env": "os.environ['KY_TEST']"},
            timeout=30,
        )
    values = {k: v["data"]["text/plain"] for k, v in reply.content["user_expressions"].items()}
    assert values == {"cwd": repr(str(workdir)), "env": "'value-from-base'"}


async def test_client_heartbeat_marks_a_frozen_kernel_dead_then_alive(finder: KernelFinder) -> None:
    async with quiet(finder) as km, km.client(heartbeat_interval=0.1, time_to_dead=0.5) as kc:
        await kc.wait_for_ready(timeout=30)
        assert km.process is not None
        km.process.send_signal(signal.SIGSTOP)
        try:
            with anyio.fail_after(10):
                while kc.is_alive:
                    await anyio.sleep(0.05)
            with pytest.raises(KernelDied, match="heartbeat"):
                await kc.kernel_info()
        finally:
            km.process.send_signal(signal.SIGCONT)
        with anyio.fail_after(10):
            while not kc.is_alive:
                await anyio.sleep(0.05)
        assert (await kc.kernel_info(timeout=10)).content["status"] == "ok"


async def test_a_start_adds_its_env_to_the_managers_environment(finder: KernelFinder) -> None:
    # The server passes a client's KERNEL_* variables this way: they are added to the
    # kernel's environment, never a replacement for it (PATH and HOME stay).
    async with MultiKernelManager(finder=finder, options=QUIET) as mkm:
        kid = await mkm.start_kernel("python3", env={"KERNEL_USERNAME": "ada"})
        async with mkm.get_kernel(kid).client() as kc:
            reply = await kc.execute(
                "import os",
                user_expressions={
                    "user": "os.environ['KERNEL_USERNAME']",
                    "path": "os.environ['PATH'] == " + repr(os.environ["PATH"]),
                },
                timeout=30,
            )
    expressions = reply.content["user_expressions"]
    assert expressions["user"]["data"]["text/plain"] == "'ada'"
    assert expressions["path"]["data"]["text/plain"] == "True"


async def test_the_provisioner_tells_how_to_reach_the_kernel_again(finder: KernelFinder) -> None:
    async with quiet(finder) as km:
        assert km.process is not None
        attach = km.process.attach_info(km.kernel_id)
        assert AttachInfo.from_dict(json.loads(json.dumps(attach.to_dict()))) == attach
        assert attach.provisioner == "local"
        assert attach.connection_info == km.connection_info
        assert attach.location["pid"] == km.process.pid
        assert Path(attach.location["connection_file"]).exists()
