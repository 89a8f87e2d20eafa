"""Fork servers: start Python kernels by forking a process that has already imported them.

A fresh Python kernel spends most of its start importing (our kernel ~130 ms
of CPU on this project's machine, ipykernel ~280 ms), and twenty kernels
started at once queue for the CPU. A kernelspec that opts in with
``metadata.kernelyard.preload`` (a list of module names) and whose argv is
``PYTHON -m MODULE ...`` can instead be forked from a *zygote*: a process of
that interpreter that imported those modules once (:mod:`.zygote`). Each
kernel is still a new process, in its own session, with its own stdio, cwd,
environment and ``sys.argv``; it just does not pay for the imports again.

:class:`ForkServers` owns the zygotes (``async with``; closing it ends them,
the kernels they forked live on). A zygote serves launches whose interpreter,
preload list, kernelspec env and start-up environment (``PYTHON*``, ``LD_*``,
``LC_*``, ``LANG``, ``HOME``, ``TZ``: what an interpreter reads before any
code runs) are the same; anything else in the environment is set in the child.
The first launch of such a spec starts its zygote and is spawned as usual
while the zygote imports; launches after that are forked. A zygote that
cannot preload (an import error, or an import that starts a thread) is
reported once and never used; one that died is replaced. Without
``os.fork``, ``os.pidfd_open`` and descriptor passing, every launch spawns.

A forked kernel is not our child but the zygote's: the zygote reaps it and
reports its exit code on a socket of its own (:class:`ForkedProcess`), and a
pidfd tells its end even if the zygote is gone (then the code is unknown:
:data:`UNKNOWN_EXIT_CODE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import orjson

from kernelyard.errors import LaunchError
from kernelyard.provisioning.launch import LaunchSpec, format_argv, kernel_env
from kernelyard.provisioning.process import ProcessEvents

__all__ = ["UNKNOWN_EXIT_CODE", "ForkServers", "ForkedProcess", "fork_plan"]

log = logging.getLogger(__name__)

ZYGOTE = Path(__file__).with_name("zygote.py")
#: The exit code reported for a forked kernel whose zygote died before it did.
UNKNOWN_EXIT_CODE = 255
_STARTUP_ENV_PREFIXES = ("PYTHON", "LD_", "LC_")
_STARTUP_ENV_NAMES = frozenset({"HOME", "LANG", "TZ"})
_START_TIMEOUT = 10.0  # from a request to the child's "started"; a fork takes milliseconds
_SUPPORTED = all(hasattr(os, name) for name in ("fork", "pidfd_open")) and hasattr(
    socket, "send_fds"
)


@dataclass(frozen=True, slots=True)
class ForkPlan:
    """What a zygote needs to run a launch: ``python -m module *args``."""

    python: str
    module: str
    args: tuple[str, ...]


def fork_plan(spec: LaunchSpec, argv: Sequence[str]) -> ForkPlan | None:
    """The plan for forking ``argv``, or None when it must be spawned."""
    if not _SUPPORTED or not spec.preload or len(argv) < 3 or argv[1] != "-m":
        return None
    return ForkPlan(python=argv[0], module=argv[2], args=tuple(argv[3:]))


def _startup_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (k, v)
            for k, v in env.items()
            if k.startswith(_STARTUP_ENV_PREFIXES) or k in _STARTUP_ENV_NAMES
        )
    )


@dataclass(frozen=True, slots=True)
class _Key:
    python: str
    preload: tuple[str, ...]
    spec_env: tuple[tuple[str, str], ...]
    startup_env: tuple[tuple[str, str], ...]


def _key(spec: LaunchSpec, plan: ForkPlan, env: Mapping[str, str]) -> _Key:
    return _Key(plan.python, spec.preload, tuple(sorted(spec.env.items())), _startup_env(env))


def _report(data: bytes) -> dict[str, Any]:
    """A zygote's report; garbage (it never sends any) reads as an error report."""
    try:
        report = orjson.loads(data)
    except orjson.JSONDecodeError:
        report = None
    return report if isinstance(report, dict) else {"error": f"unreadable report {data[:80]!r}"}


class _Zygote:
    """One zygote process and our end of its control socket."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        events: ProcessEvents,
        control: socket.socket,
    ) -> None:
        self.transport = transport
        self.events = events
        self.control = control
        self.ready = False
        self.failed = False
        #: One sender, and one reader, at a time: anyio lets one task wait on a socket.
        self.sending = anyio.Lock()
        self._reading = anyio.Lock()

    @classmethod
    async def start(cls, python: str, preload: Sequence[str], env: Mapping[str, str]) -> _Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            loop = asyncio.get_running_loop()
            transport, events = await loop.subprocess_exec(
                lambda: ProcessEvents(None),  # its stdio is ours: only its exit is reported
                python,
                str(ZYGOTE),
                str(theirs.fileno()),
                *preload,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=dict(env),
                start_new_session=True,  # a Ctrl-C in our terminal is not for it
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(transport, events, ours)

    def usable(self) -> bool:
        """Ready to fork (reads the zygote's report without waiting for it)."""
        if self.ready or self.failed:
            return self.ready and self.transport.get_returncode() is None
        try:
            data = self.control.recv(65536)
        except BlockingIOError:
            return False  # still importing
        except OSError:
            data = b""
        report = _report(data) if data else {"error": "it exited while preloading"}
        if "ready" in report:
            self.ready = True
        else:
            self.failed = True
            log.warning("kernelyard fork server not used: %s", report.get("error", report))
        return self.ready

    def dead(self) -> bool:
        return self.transport.get_returncode() is not None

    async def wait_ready(self) -> bool:
        """Wait until it has preloaded, or failed to; returns :meth:`usable`."""
        async with self._reading:
            while not (self.usable() or self.failed or self.dead()):
                try:
                    await anyio.wait_readable(self.control)
                except (OSError, anyio.ClosedResourceError):  # closed meanwhile
                    break
        return self.usable()

    async def aclose(self, timeout: float = 2.0) -> None:
        """Close the control socket (the zygote then exits by itself); kill it if it lingers."""
        self.control.close()
        with anyio.move_on_after(timeout):
            await self.events.exited.wait()
        if not self.events.exited.is_set():
            self.transport.kill()
            await self.events.exited.wait()
        self.transport.close()


class ForkServers:
    """The zygotes of one owner (a MultiKernelManager, a benchmark, a test).

    Use as ``async with ForkServers() as forks`` and pass ``forks`` to the
    launch; closing ends the zygotes (the kernels they forked keep running).
    """

    def __init__(self) -> None:
        self._zygotes: dict[_Key, _Zygote] = {}
        self._closed = False
        self._starting = anyio.Lock()  # concurrent first launches start one zygote, not two

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._starting:  # a zygote being started is in the dict after this
                self._closed = True
                zygotes, self._zygotes = list(self._zygotes.values()), {}
            for zygote in zygotes:
                await zygote.aclose()

    async def prepare(
        self, spec: LaunchSpec, *, env: Mapping[str, str] | None = None, wait: bool = False
    ) -> bool:
        """Start the zygote for launches of ``spec`` (with base environment ``env``,
        ours by default) now, so that the first launch is forked too.

        Returns whether launches of ``spec`` are forked now; with ``wait``, once
        the zygote has preloaded (or failed to).
        """
        argv = format_argv(spec.argv, connection_file="", resource_dir=spec.resource_dir)
        plan = fork_plan(spec, argv)
        if plan is None or self._closed:
            return False
        base = env if env is not None else os.environ
        zygote = await self._zygote(spec, plan, kernel_env(base, spec.env, parent_pid=os.getpid()))
        if zygote is None:
            return False
        return await zygote.wait_ready() if wait else zygote.usable()

    async def _zygote(
        self, spec: LaunchSpec, plan: ForkPlan, env: Mapping[str, str]
    ) -> _Zygote | None:
        """The zygote for this launch, started if there is none (None: it cannot start)."""
        key = _key(spec, plan, env)
        async with self._starting:
            zygote = self._zygotes.get(key)
            if zygote is not None and zygote.dead():
                zygote.usable()  # reads its last report: one that could not preload stays unused
                if zygote.failed:
                    return zygote
                log.warning("a kernelyard fork server exited; starting another")
                await zygote.aclose()
                zygote = None
            if zygote is None and not self._closed:
                try:
                    zygote = await _Zygote.start(plan.python, spec.preload, env)
                except OSError as exc:  # the spawn that follows reports it as a LaunchError
                    log.warning("cannot start a kernelyard fork server: %s", exc)
                    return None
                self._zygotes[key] = zygote
            return zygote

    async def spawn(
        self,
        spec: LaunchSpec,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        events: ProcessEvents,
    ) -> ForkedProcess | None:
        """Fork ``argv`` from a ready zygote; None means spawn it the usual way.

        Raises LaunchError if the zygote took the launch and it failed (a cwd
        that does not exist, say).
        """
        plan = fork_plan(spec, argv)
        if plan is None or self._closed:
            return None
        zygote = await self._zygote(spec, plan, env)
        if zygote is None or not zygote.usable():
            return None
        try:
            return await ForkedProcess.start(zygote, plan, env, cwd, events)
        except _ZygoteGone:
            log.warning("a kernelyard fork server stopped answering; spawning instead")
            await zygote.aclose()
            key = _key(spec, plan, env)
            if self._zygotes.get(key) is zygote:  # another launch may have replaced it
                del self._zygotes[key]
            return None


class _ZygoteGone(Exception):
    pass


class _StderrPipe(asyncio.Protocol):
    def __init__(self, events: ProcessEvents) -> None:
        self.events = events

    def data_received(self, data: bytes) -> None:
        self.events.pipe_data_received(2, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.pipe_connection_lost(2, exc)


class ForkedProcess:
    """A kernel forked by a zygote, seen like asyncio's subprocess transport.

    ``get_pid``, ``get_returncode`` and ``close`` are what :class:`KernelProcess`
    uses; the kernel's stderr and its exit reach ``events`` as they would from
    asyncio.
    """

    def __init__(self, reply: socket.socket, events: ProcessEvents) -> None:
        self._loop = asyncio.get_running_loop()
        self._reply = reply
        self._events = events
        self._pid = 0
        self._pidfd: int | None = None
        self._returncode: int | None = None
        self._started: asyncio.Future[int] = self._loop.create_future()
        self._stderr: asyncio.BaseTransport | None = None
        reply.setblocking(False)
        self._loop.add_reader(reply.fileno(), self._on_reply)

    @classmethod
    async def start(
        cls,
        zygote: _Zygote,
        plan: ForkPlan,
        env: Mapping[str, str],
        cwd: str,
        events: ProcessEvents,
    ) -> ForkedProcess:
        request = orjson.dumps(
            {"module": plan.module, "args": list(plan.args), "env": dict(env), "cwd": cwd}
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err_r, err_w = os.pipe()
        stdout = _stdout_fd()
        fds = [theirs.fileno(), stdout, err_w]
        try:
            async with zygote.sending:
                while True:
                    try:
                        socket.send_fds(zygote.control, [request], fds)
                        break
                    except BlockingIOError:  # requests come faster than it forks: wait
                        await anyio.wait_writable(zygote.control)
        except BaseException as exc:
            os.close(err_r)
            ours.close()
            if isinstance(exc, OSError | anyio.ClosedResourceError):
                raise _ZygoteGone from exc
            raise
        finally:
            theirs.close()
            os.close(err_w)
            if stdout != 1:
                os.close(stdout)
        process = cls(ours, events)
        try:
            pipe = open(err_r, "rb", buffering=0)  # noqa: SIM115  # the transport closes it
            process._stderr, _ = await process._loop.connect_read_pipe(
                lambda: _StderrPipe(events), pipe
            )
            with anyio.fail_after(_START_TIMEOUT):
                process._pid = await asyncio.shield(process._started)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await process._abandon()
            if isinstance(exc, TimeoutError):
                raise LaunchError(f"the fork server did not start {plan.module!r}") from None
            raise
        return process

    async def _abandon(self) -> None:
        """A start that failed or was cancelled: no kernel may be left running."""
        with anyio.move_on_after(1.0):  # the child reports within milliseconds of the fork
            with contextlib.suppress(LaunchError):
                pid = await asyncio.shield(self._started)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        self.close()

    # -- the transport's face ------------------------------------------------------------

    def get_pid(self) -> int:
        return self._pid

    def get_returncode(self) -> int | None:
        return self._returncode

    def close(self) -> None:
        """Stop watching; release our descriptors (the kernel's stderr pipe too)."""
        self._stop_reading()
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- reports --------------------------------------------------------------------------

    def _stop_reading(self) -> None:
        if self._reply.fileno() >= 0:
            self._loop.remove_reader(self._reply.fileno())
            self._reply.close()

    def _on_reply(self) -> None:
        while True:
            try:
                data = self._reply.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._stop_reading()
                self._zygote_gone()
                return
            self._handle(_report(data))

    def _handle(self, report: dict[str, Any]) -> None:
        if "started" in report:
            pid = int(report["started"])
            with contextlib.suppress(OSError):  # already gone: its exit report follows
                self._pidfd = os.pidfd_open(pid)
            if not self._started.done():
                self._started.set_result(pid)
        elif "error" in report:
            self._fail_start(LaunchError(f"the fork server could not start it: {report['error']}"))
        elif "exit" in report:
            self._fail_start(LaunchError(f"it exited with code {report['exit']} while forking"))
            self._exited(int(report["exit"]))

    def _fail_start(self, error: LaunchError) -> None:
        if not self._started.done():
            self._started.set_exception(error)

    def _zygote_gone(self) -> None:
        if self._returncode is not None:
            return
        if self._pidfd is None:
            self._fail_start(LaunchError("the fork server exited before starting it"))
            return
        # The kernel may outlive its zygote: its pidfd says when it ends.
        self._loop.add_reader(self._pidfd, self._on_pidfd)

    def _on_pidfd(self) -> None:
        log.warning("kernel %d exited after its fork server; its exit code is unknown", self._pid)
        assert self._pidfd is not None
        self._loop.remove_reader(self._pidfd)
        self._exited(UNKNOWN_EXIT_CODE)

    def _exited(self, code: int) -> None:
        if self._returncode is None:
            self._returncode = code
            self._events.process_exited()


def _stdout_fd() -> int:
    """Our stdout for the kernel to inherit (a spawned kernel inherits it too); else /dev/null."""
    try:
        os.fstat(1)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)
    return 1
