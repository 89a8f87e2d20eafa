"""FakeChannels: the KernelChannels of a fake kernel, with the real channels' contract.

What :class:`~kernelyard.manager.channels.ManagedChannels` does over
ZeroMQ, in memory: frames are signed and verified by the session protocol
(:class:`~kernelyard.wire.ClientProtocol`, as a relay: raw parts kept,
replies matched to the origin of their request); the kernel's lifecycle
reaches :meth:`receive` in order with its messages (RESTART, DIED,
RESTARTED, GAVE_UP, SHUTDOWN, then ChannelClosed); sends are held while the
kernel is dead or restarting and delivered, in order, to the kernel that
answers next; a kernel that is gone for good, stopped, or with
:data:`MAX_HELD` messages waiting refuses sends with ChannelClosed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio.lowlevel

from kernelyard._clock import utcnow
from kernelyard._inbox import Inbox
from kernelyard.backend import ChannelEvent, Origin
from kernelyard.errors import ChannelClosed
from kernelyard.lifecycle import Change, KernelEvent, KernelState
from kernelyard.wire import Channel, ClientProtocol, Frame, Frames, InputRequested, Output, Reply

if TYPE_CHECKING:
    from .backend import FakeKernel

__all__ = ["MAX_HELD", "FakeChannels"]

#: Messages held while the kernel is down before sends fail with ChannelClosed.
MAX_HELD = 1000
#: Lifecycle changes the reader of ``receive`` is told about.
_FORWARDED = frozenset(
    {Change.RESTART, Change.DIED, Change.RESTARTED, Change.GAVE_UP, Change.SHUTDOWN}
)


class FakeChannels:
    """An open connection to one :class:`~kernelyard.testing.FakeKernel`. Use as ``async with``."""

    def __init__(self, kernel: FakeKernel) -> None:
        self._kernel = kernel
        self._protocol: ClientProtocol[Origin] = ClientProtocol(
            kernel.signer, session=uuid.uuid4().hex, clock=utcnow, parse_all=False
        )
        self._inbox = Inbox[ChannelEvent](f"kernel {kernel.id}")
        self._held: list[tuple[Channel, list[Frame]]] = []
        self._closed = False
        self._unsubscribe: Callable[[], None] | None = None
        self.encrypted = False  # no sockets at all

    async def __aenter__(self) -> Self:
        self._unsubscribe = self._kernel.lifecycle.subscribe(self._on_change)
        if self._kernel.process is not None:
            self._kernel.process.connect(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._kernel.process is not None:
            self._kernel.process.disconnect(self)
        self._inbox.close()

    # -- KernelChannels --------------------------------------------------------------------

    async def send(
        self, channel: Channel, parts: Frames, *, msg_id: str, msg_type: str, origin: Origin
    ) -> None:
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise ChannelClosed(f"kernel {self._kernel.id} channels are closed")
        frames = self._protocol.send_parts(
            channel, parts, msg_id=msg_id, msg_type=msg_type, origin=origin
        )
        process = self._kernel.process
        if self._kernel.lifecycle.state is KernelState.RUNNING and process and not self._held:
            process.receive(self, channel, frames)
            return
        lifecycle = self._kernel.lifecycle
        stopping = not lifecycle.alive and lifecycle.state is not KernelState.DEAD
        if lifecycle.gone or stopping:
            raise ChannelClosed(f"kernel {self._kernel.id} is {lifecycle.state.value}")
        if len(self._held) >= MAX_HELD:
            raise ChannelClosed(
                f"kernel {self._kernel.id} is not running and {MAX_HELD} messages wait"
            )
        self._held.append((channel, frames))

    async def receive(self) -> list[ChannelEvent]:
        return await self._inbox.get()

    # -- from the kernel ----------------------------------------------------------------------

    def arrive(self, channel: Channel, frames: list[Frame]) -> None:
        """Frames the kernel sent us: verified, matched, queued for :meth:`receive`."""
        out: list[ChannelEvent] = [
            event
            for event in self._protocol.receive(channel, frames)
            if isinstance(event, Output | Reply | InputRequested)
        ]
        if out:
            self._inbox.put(out)

    def _on_change(self, event: KernelEvent) -> None:
        if event.change is Change.RESTARTED:
            self._protocol.reconnected()
            process = self._kernel.process
            if process is not None:
                process.connect(self)
                held, self._held = self._held, []
                for channel, frames in held:
                    process.receive(self, channel, frames)
        elif event.change is Change.GAVE_UP:
            self._held = []
        if event.change not in _FORWARDED:
            return
        self._inbox.put([event])
        if event.change is Change.SHUTDOWN:
            self._closed = True
            self._inbox.end()
