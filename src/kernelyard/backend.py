"""KernelBackend: the one interface the server uses to reach kernels.

The local :class:`~kernelyard.manager.MultiKernelManager` implements it;
:class:`kernelyard.testing.FakeBackend` implements it in memory (for tests of
frontends and of the server); the gateway implements it over HTTP and
WebSocket. None derives from another. Everything here is a protocol or plain
data: the REST shapes (``/api/kernels``, ``/api/kernelspecs``) are built by
the server from these values.

Channels carry **raw message parts**: ``[header, parent_header, metadata,
content, *buffers]``, the JSON frames exactly as the kernel wrote them. That
is what the v1 WebSocket framing carries too, so a relay passes them through
without parsing; signing and verifying with the kernel's key is the
implementation's job, so no caller ever holds the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from kernelyard.discovery import KernelSpec
from kernelyard.lifecycle import KernelEvent, KernelState
from kernelyard.wire import Channel, Frames, InputRequested, Output, Reply

__all__ = [
    "ChannelEvent",
    "KernelBackend",
    "KernelChannels",
    "KernelModel",
    "KernelSpecs",
    "Origin",
    "Progress",
    "RemoteModels",
]

#: Who sent a request: the server's WebSocket session; its reply comes back with it.
Origin = str | None

#: Told, while a start waits, what it waits for ("queued in Slurm: Resources"), as
#: text for the starting kernel's ``reason``.
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class KernelModel:
    """A running kernel as the backend knows it."""

    id: str
    name: str  # the kernel type it was started from
    state: KernelState
    reason: str = ""  # why it is in that state, when that needs saying
    #: What a remote backend's model adds (a gateway's ``execution_state``,
    #: ``last_activity`` and ``connections``); empty for local kernels.
    execution_state: str = ""
    last_activity: datetime | None = None
    connections: int = 0


@dataclass(frozen=True, slots=True)
class KernelSpecs:
    """The kernel types a backend offers, under the names clients use (no ``/``)."""

    specs: Mapping[str, KernelSpec]
    default: str | None  # the name a start without one gets; None if there is none


#: One item of :meth:`KernelChannels.receive`: a kernel message, as the session
#: protocol's event (its raw parts kept), or a change of the kernel's lifecycle.
ChannelEvent = Reply[Origin] | InputRequested[Origin] | Output | KernelEvent


class KernelChannels(Protocol):
    """An open connection to one kernel's shell, control, stdin and iopub channels."""

    @property
    def encrypted(self) -> bool | None:
        """Whether the connection to the kernel is CurveZMQ-encrypted; None when it is
        not known here (a gateway's kernel: its connection is the gateway's).
        """
        ...

    async def send(
        self, channel: Channel, parts: Frames, *, msg_id: str, msg_type: str, origin: Origin
    ) -> None:
        """Sign and send raw parts on ``channel`` (shell, control or stdin).

        The reply to a ``*_request``, and the input requests it makes, come back
        from :meth:`receive` with ``origin``. While the kernel is restarting or
        dead awaiting a restart, messages are held and sent, in order, once it
        answers again (on whatever ports it then has). Raises ChannelClosed once
        the kernel is stopped or gone for good, or when too many messages wait.
        """
        ...

    async def receive(self) -> list[ChannelEvent]:
        """The next batch of events, in arrival order (waits for at least one).

        Kernel messages arrive as :class:`~kernelyard.wire.Output` (IOPub),
        :class:`~kernelyard.wire.Reply` and :class:`~kernelyard.wire.InputRequested`
        (for a request sent here). Lifecycle events arrive in order with them:
        RESTART (a restart begins), DIED (``will_restart`` if the backend will try),
        RESTARTED (it answers again; sockets were reconnected first), GAVE_UP (dead
        for good) and SHUTDOWN (its reason says why: "shut down", "culled", ...).
        Raises ChannelClosed after SHUTDOWN was delivered, or once closed.
        """
        ...


class KernelBackend(Protocol):
    """Start, control and connect to kernels. Unknown kernel ids raise NoSuchKernel."""

    async def kernel_specs(self) -> KernelSpecs:
        """Every kernel type this backend can start (specs that fail to load are skipped)."""
        ...

    async def kernel_spec_file(self, name: str, filename: str) -> bytes:
        """A resource file (logo, ``kernel.js``) of kernel type ``name``.

        Raises NoSuchKernelSpec when the type or the file does not exist; no path
        may leave the kernelspec's resource directory.
        """
        ...

    def new_kernel_id(self) -> str | None:
        """An id for the next start to take as ``kernel_id``, so that a caller can name
        a kernel before it is up; None when kernels get their ids elsewhere (a
        gateway's: ``kernel_id`` there adopts a running kernel).
        """
        ...

    async def start_kernel(
        self,
        name: str | None = None,
        *,
        kernel_id: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Start a kernel of type ``name`` (the default type when None) and return its
        id once it answered ``kernel_info``.

        ``kernel_id`` chooses the id (one in use raises InvalidState); ``env`` is
        added to the kernel's environment; ``progress`` hears what a slow start
        waits for. Raises NoSuchKernelSpec or KernelSpecError for an unknown or
        broken type, LaunchError when the kernel cannot be started or exits first.
        Cancelling it stops whatever it launched.
        """
        ...

    async def shutdown_kernel(
        self, kernel_id: str, *, now: bool = False, reason: str = "shut down"
    ) -> None:
        """Stop a kernel for good and forget it.

        Politely (``shutdown_request``, then SIGTERM, then SIGKILL, bounded) or,
        with ``now``, at once. Open channels get SHUTDOWN with ``reason``, then
        ChannelClosed. Idempotent while the id is known.
        """
        ...

    async def restart_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        """Stop and start the kernel again in place (same id and key); return once it
        answers. ``now`` skips the polite ``shutdown_request``.

        Open channels stay open: they get RESTART, hold what is sent meanwhile and
        get RESTARTED once the kernel answers. A restart that fails raises
        (LaunchError, KernelDied) and leaves the kernel DEAD.
        """
        ...

    async def interrupt_kernel(self, kernel_id: str) -> None:
        """Interrupt what the kernel runs (a signal, or ``interrupt_request`` for kernels
        whose spec says ``interrupt_mode: "message"``). InvalidState unless it runs.
        """
        ...

    def open_channels(self, kernel_id: str) -> AbstractAsyncContextManager[KernelChannels]:
        """Connect to a kernel's message channels for as long as the block runs."""
        ...


@runtime_checkable
class RemoteModels(Protocol):
    """A backend whose kernels live elsewhere and change there too (a gateway's): other
    clients use them, the remote side culls them. The server reads their models every
    ``refresh_interval`` seconds (0: never) and shows what it learns.
    """

    refresh_interval: float

    async def refresh(self) -> list[KernelModel]:
        """The remote models of the kernels this backend knows, their ``connections``
        counting the remote side's other clients only (not this backend's own
        sockets). Those gone remotely are not among them: their lifecycle got
        SHUTDOWN, with the reason.
        """
        ...
