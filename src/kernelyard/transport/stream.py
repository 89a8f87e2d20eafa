"""ChannelStream: one ZeroMQ socket of a kernel connection, as async send/receive of frames.

The only place (with :mod:`.sockets` and :mod:`.heartbeat`) that touches
pyzmq. ZMQError becomes ChannelClosed at this boundary, chained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import zmq
import zmq.asyncio

from kernelyard.errors import ChannelClosed
from kernelyard.wire.channel import Channel

__all__ = ["ChannelStream", "map_zmq_errors"]

Frame = bytes | memoryview


@contextlib.contextmanager
def map_zmq_errors(channel: Channel) -> Iterator[None]:
    """Translate pyzmq's errors into ChannelClosed for ``channel``."""
    try:
        yield
    except zmq.ZMQError as exc:
        raise ChannelClosed(f"{channel.value} channel: {exc}") from exc


class ChannelStream:
    """Send and receive multipart messages on one socket; use from one event loop only."""

    def __init__(self, socket: zmq.asyncio.Socket, channel: Channel) -> None:
        self._socket = socket
        self.channel = channel

    @property
    def closed(self) -> bool:
        return bool(self._socket.closed)

    async def send(self, frames: Sequence[Frame]) -> None:
        if self._socket.closed:
            raise ChannelClosed(f"{self.channel.value} channel is closed")
        with map_zmq_errors(self.channel):
            await self._socket.send_multipart(frames, copy=False)

    async def receive(self) -> list[bytes]:
        """The next multipart message, as bytes frames."""
        if self._socket.closed:
            raise ChannelClosed(f"{self.channel.value} channel is closed")
        with map_zmq_errors(self.channel):
            return await self._socket.recv_multipart()

    def close(self) -> None:
        """Close at once, dropping anything unsent (idempotent)."""
        if not self._socket.closed:
            self._socket.close(linger=0)
