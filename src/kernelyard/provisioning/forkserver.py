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

A forked kernel is not our child but the zygote's: see
:mod:`kernelyard.provisioning.forked`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio

from kernelyard.provisioning.forked import (
    ForkedProcess,
    ForkPlan,
    ZygoteGone,
    fork_plan,
    read_report,
)
from kernelyard.provisioning.process import ProcessEvents
from kernelyard.provisioning.spec import LaunchSpec, format_argv, kernel_env

__all__ = ["ForkServers"]

log = logging.getLogger(__name__)

ZYGOTE = Path(__file__).with_name("zygote.py")
_STARTUP_ENV_PREFIXES = ("PYTHON", "LD_", "LC_")
_STARTUP_ENV_NAMES = frozenset({"HOME", "LANG", "TZ"})


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
        report = read_report(data) if data else {"error": "it exited while preloading"}
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
        except ZygoteGone:
            log.warning("a kernelyard fork server stopped answering; spawning instead")
            await zygote.aclose()
            key = _key(spec, plan, env)
            if self._zygotes.get(key) is zygote:  # another launch may have replaced it
                del self._zygotes[key]
            return None
