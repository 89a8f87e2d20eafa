"""How a KernelConnection reaches its kernel: the one seam below the client.

A :class:`Link` carries the client's signed frames to the kernel and hands
back what arrives, channel by channel, in batches; the connection's
:class:`~kernelyard.wire.ClientProtocol` does everything else (verifying,
matching replies to requests, IOPub readiness), the same for every link.

* :class:`ZmqLink`: the kernel's own ZeroMQ sockets, from its connection
  info (shell, control, stdin, iopub, and the heartbeat that tells a dead
  kernel from a busy one).
* :class:`ChannelsLink`: any backend's :class:`~kernelyard.backend.KernelChannels`
  (a gateway's kernel over its WebSocket, a kernel of the local manager, a
  :class:`kernelyard.testing.FakeBackend` kernel). The backend signs and
  verifies with the kernel's key; the messages it hands over are fed back
  through the client's protocol unsigned, so replies and outputs are routed
  as from sockets. The backend's lifecycle events reach the connection as
  its ``kernel_restarting`` (a restart begins), ``kernel_restarted`` and
  ``kernel_died`` (dead, given up on, shut down). The channels are opened
  anew at each connect, so a client can be closed and opened again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from kernelyard.backend import KernelChannels
from kernelyard.errors import ChannelClosed, KernelDied
from kernelyard.lifecycle import Change, KernelEvent
from kernelyard.transport import ChannelStream, Heartbeat, open_channel
from kernelyard.wire import DELIMITER, Channel, ConnectionInfo, Frame, Frames

__all__ = ["ChannelsFactory", "ChannelsLink", "Link", "LinkOwner", "ZmqLink"]

#: Frames of the messages of one channel that arrived together.
Deliver = Callable[[Channel, Sequence[Frames]], None]
#: Opens a backend's channels of one kernel (``lambda: backend.open_channels(kernel_id)``).
ChannelsFactory = Callable[[], AbstractAsyncContextManager[KernelChannels]]


class LinkOwner(Protocol):
    """What a link tells its connection besides messages."""

    def kernel_died(self, error: KernelDied) -> None: ...
    def kernel_restarted(self) -> None: ...
    def kernel_restarting(self) -> None: ...


class Link(Protocol):
    """Frames out, batches of frames in, for one open connection."""

    async def connect(self, stack: AsyncExitStack) -> None:
        """Connect, and put the closing on ``stack``."""
        ...

    def start(self, tasks: TaskGroup, deliver: Deliver, owner: LinkOwner) -> None:
        """Start the readers in ``tasks`` (cancelled before the closing runs)."""
        ...

    async def send(self, channel: Channel, frames: list[Frame], msg_id: str, msg_type: str) -> None:
        """Send the signed ``frames`` of one message on ``channel`` (shell, control or
        stdin: the connection checks), once open.
        """
        ...

    def move(self, connection_info: ConnectionInfo) -> None:
        """The kernel came back elsewhere (a restart on new ports, or on another node):
        reach it there from now on. Links that do not hold ports ignore it.
        """
        ...


class ZmqLink:
    """The kernel's ZeroMQ sockets; see the module docstring."""

    def __init__(
        self,
        connection_info: ConnectionInfo,
        *,
        identity: bytes,
        heartbeat: bool,
        heartbeat_interval: float,
        time_to_dead: float,
        kernel_id: str | None,
    ) -> None:
        self.connection_info = connection_info
        self._identity = identity
        self._heartbeat = heartbeat
        self._heartbeat_interval = heartbeat_interval
        self._time_to_dead = time_to_dead
        self._kernel_id = kernel_id
        self._streams: dict[Channel, ChannelStream] = {}
        self._running: tuple[TaskGroup, Deliver, LinkOwner] | None = None
        self._readers: anyio.CancelScope | None = None

    async def connect(self, stack: AsyncExitStack) -> None:
        self._open_streams()
        stack.callback(self._closed)

    def _closed(self) -> None:
        self._running = None
        self._close_streams()
        self._streams = {}

    def _open_streams(self) -> None:
        for channel in (Channel.SHELL, Channel.CONTROL, Channel.STDIN, Channel.IOPUB):
            self._streams[channel] = open_channel(
                self.connection_info, channel, identity=self._identity
            )

    def _close_streams(self) -> None:
        for stream in self._streams.values():
            stream.close()

    def start(self, tasks: TaskGroup, deliver: Deliver, owner: LinkOwner) -> None:
        self._running = (tasks, deliver, owner)
        self._readers = anyio.CancelScope()
        tasks.start_soon(self._read_all, self._readers, dict(self._streams), name="read sockets")

    async def _read_all(
        self, scope: anyio.CancelScope, streams: dict[Channel, ChannelStream]
    ) -> None:
        assert self._running is not None
        _, deliver, owner = self._running
        with scope:
            async with anyio.create_task_group() as tg:
                for channel, stream in streams.items():
                    tg.start_soon(_read, stream, channel, deliver, name=f"read {channel.value}")
                if self._heartbeat:
                    kernel_id = self._kernel_id

                    def lost(silence: float) -> None:
                        owner.kernel_died(
                            KernelDied(
                                f"kernel heartbeat silent for {silence:.1f} s", kernel_id=kernel_id
                            )
                        )

                    beat = Heartbeat(
                        self.connection_info,
                        interval=self._heartbeat_interval,
                        time_to_dead=self._time_to_dead,
                        on_dead=lost,
                        on_alive=owner.kernel_restarted,
                    )
                    tg.start_soon(beat.run, name="heartbeat")

    def move(self, connection_info: ConnectionInfo) -> None:
        """New sockets to ``connection_info``'s endpoints, and new readers; the old ones
        are closed. Nothing happens when the endpoints and keys are the same; a link
        that is not open only keeps the info for its next connect.
        """
        if connection_info == self.connection_info:
            return
        self.connection_info = connection_info
        if self._running is None:  # not open (yet, or any more): the next connect uses it
            return
        if self._readers is not None:
            self._readers.cancel()
        self._close_streams()
        self._open_streams()
        self.start(*self._running)

    async def send(self, channel: Channel, frames: list[Frame], msg_id: str, msg_type: str) -> None:
        await self._streams[channel].send(frames)


async def _read(stream: ChannelStream, channel: Channel, deliver: Deliver) -> None:
    while True:
        try:
            batch = await stream.receive_batch()
        except ChannelClosed:
            return
        deliver(channel, batch)


class ChannelsLink:
    """A backend's KernelChannels, opened anew at each connect; see the module docstring."""

    def __init__(self, channels: ChannelsFactory, *, kernel_id: str | None) -> None:
        self._open = channels
        self._channels: KernelChannels | None = None
        self._kernel_id = kernel_id

    async def connect(self, stack: AsyncExitStack) -> None:
        self._channels = await stack.enter_async_context(self._open())

    def move(self, connection_info: ConnectionInfo) -> None:
        """The backend's channels follow the kernel themselves."""

    def start(self, tasks: TaskGroup, deliver: Deliver, owner: LinkOwner) -> None:
        assert self._channels is not None, "connect first"
        tasks.start_soon(self._read, self._channels, deliver, owner, name="read channels")

    async def send(self, channel: Channel, frames: list[Frame], msg_id: str, msg_type: str) -> None:
        if self._channels is None:
            raise ChannelClosed("the channels are not open")
        # [DELIMITER, signature, header, parent, metadata, content, *buffers]: the
        # backend signs with the kernel's key, so it takes the parts after both.
        await self._channels.send(
            channel, frames[2:], msg_id=msg_id, msg_type=msg_type, origin=None
        )

    async def _read(self, channels: KernelChannels, deliver: Deliver, owner: LinkOwner) -> None:
        dead = False  # reported dead: the first cause is the one the caller sees
        while True:
            try:
                events = await channels.receive()
            except ChannelClosed:
                if not dead:
                    owner.kernel_died(
                        KernelDied("the kernel's channels were closed", kernel_id=self._kernel_id)
                    )
                return
            for event in events:
                if not isinstance(event, KernelEvent):
                    received = event.received
                    deliver(received.channel, [[DELIMITER, b"", *received.parts]])
                    continue
                change = event.change
                if change is Change.RESTART:
                    owner.kernel_restarting()
                elif change is Change.RESTARTED:
                    dead = False
                    owner.kernel_restarted()
                elif change in (Change.DIED, Change.GAVE_UP, Change.SHUTDOWN) and not dead:
                    dead = True
                    what = "was shut down" if change is Change.SHUTDOWN else "died"
                    why = f": {event.reason}" if event.reason else ""
                    owner.kernel_died(
                        KernelDied(f"the kernel {what}{why}", kernel_id=self._kernel_id)
                    )
