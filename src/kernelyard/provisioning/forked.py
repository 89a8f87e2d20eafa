"""A kernel forked by a fork server's zygote, and the zygote's reports about it.

The kernel is not our child but the zygote's: the zygote reaps it and
reports its exit code on a socket of its own, and a pidfd tells its end even
if the zygote is gone (then the code is unknown: :data:`UNKNOWN_EXIT_CODE`).
:class:`ForkedProcess` looks like asyncio's subprocess transport, so a
:class:`~kernelyard.provisioning.process.KernelProcess` drives it like a
spawned one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import orjson

from kernelyard.errors import LaunchError
from kernelyard.provisioning.process import ProcessEvents
from kernelyard.provisioning.spec import LaunchSpec

__all__ = [
    "UNKNOWN_EXIT_CODE",
    "ForkPlan",
    "ForkedProcess",
    "Zygote",
    "ZygoteGone",
    "fork_plan",
    "read_report",
]

log = logging.getLogger(__name__)

#: The exit code reported for a forked kernel whose zygote died before it did.
UNKNOWN_EXIT_CODE = 255
_START_TIMEOUT = 10.0  # from a request to the child's "started"; a fork takes milliseconds
_SUPPORTED = all(hasattr(os, name) for name in ("fork", "pidfd_open")) and hasattr(
    socket, "send_fds"
)


class Zygote(Protocol):
    """The zygote's end that a fork request goes through."""

    #: Our end of its control socket (SOCK_SEQPACKET, non-blocking).
    control: socket.socket
    #: Held while a request is sent: requests must not interleave.
    sending: anyio.Lock


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


def read_report(data: bytes) -> dict[str, Any]:
    """A zygote's report; garbage (it never sends any) reads as an error report."""
    try:
        report = orjson.loads(data)
    except orjson.JSONDecodeError:
        report = None
    return report if isinstance(report, dict) else {"error": f"unreadable report {data[:80]!r}"}


class ZygoteGone(Exception):
    """The fork server stopped answering: spawn the kernel instead."""


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
        zygote: Zygote,
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
                raise ZygoteGone from exc
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
            self._handle(read_report(data))

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
