"""ChannelStream: one ZeroMQ socket of a kernel connection, as async send/receive of frames.

The socket is a plain (non-blocking) pyzmq socket driven from the event loop
through its ``ZMQ_FD``: receiving drains every queued message with
``NOBLOCK`` and only waits on the descriptor when nothing is queued. Under an
output flood this costs a fraction of pyzmq's asyncio wrapper, which builds a
future and runs its event machinery for every message.

``ZMQ_FD`` is a notification, not a level: it says "check ``EVENTS``". Two
rules follow, both kept here: the truth is always read from ``EVENTS``
before waiting, and whoever reads ``EVENTS`` (a send, a receive, another
waiter) wakes the waiters whose event it now shows: the read may have
consumed the notification that would otherwise have woken them (a sender
waiting for a connection to complete, while the reader drains).

Use a stream from one event loop (one thread) only. ZMQError becomes
ChannelClosed at this boundary, chained.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, cast

import zmq

from kernelyard.errors import ChannelClosed
from kernelyard.wire.channel import Channel
from kernelyard.wire.frame import Frames

__all__ = ["ChannelStream", "map_zmq_errors"]

# Plain ints: pyzmq's flags are enums, and every ``|`` or ``&`` on them builds a
# new enum member, which shows up in each round trip and in every flood.
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)


@contextlib.contextmanager
def map_zmq_errors(channel: Channel) -> Iterator[None]:
    """Translate pyzmq's errors into ChannelClosed for ``channel``."""
    try:
        yield
    except zmq.ZMQError as exc:
        raise ChannelClosed(f"{channel.value} channel: {exc}") from exc


class ChannelStream:
    """Send and receive multipart messages on one socket, from one event loop."""

    def __init__(self, socket: zmq.Socket[bytes], channel: Channel) -> None:
        self._socket = socket
        self._fd = cast(int, socket.getsockopt(zmq.FD))
        self.channel = channel
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (event, waiter)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def closed(self) -> bool:
        return bool(self._socket.closed)

    def _check_open(self) -> None:
        if self._socket.closed:
            raise ChannelClosed(f"{self.channel.value} channel is closed")

    # -- waiting on the descriptor ----------------------------------------------------

    def _events(self) -> int:
        try:
            return cast(int, self._socket.get(_EVENTS))
        except zmq.ZMQError as exc:
            raise ChannelClosed(f"{self.channel.value} channel: {exc}") from exc

    def _on_fd(self) -> None:
        """Loop callback: the descriptor fired; wake every waiter to re-check EVENTS.

        The reader stays registered while the stream is open (registering per
        wait costs two epoll_ctl calls per message). With no waiter, reading
        EVENTS clears the notification so a level-triggered poller cannot spin.
        """
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if not waiters and not self._socket.closed:
            self._events()

    def _wake_for(self, events: int) -> None:
        """Wake the waiters whose event ``events`` shows (read by someone else)."""
        for wanted, waiter in self._waiters:
            if wanted & events and not waiter.done():
                waiter.set_result(None)

    async def _wait_for(self, event: int) -> None:
        """Return once ``EVENTS`` has ``event`` (POLLIN or POLLOUT)."""
        while not (events := self._events()) & event:
            self._wake_for(events)
            loop = asyncio.get_running_loop()
            if self._loop is None:
                loop.add_reader(self._fd, self._on_fd)
                self._loop = loop
            waiter = loop.create_future()
            entry = (event, waiter)
            self._waiters.append(entry)
            try:
                # Re-check after registering: an event may have come in between.
                if (events := self._events()) & event:
                    return
                self._wake_for(events)
                await waiter
            finally:
                if entry in self._waiters:
                    self._waiters.remove(entry)
            self._check_open()

    def _wake_after_send(self) -> None:
        """A send read EVENTS, maybe consuming a notification a waiter needs."""
        if self._waiters:
            self._wake_for(self._events())

    # -- sending and receiving --------------------------------------------------------

    async def send(self, frames: Frames) -> None:
        self._check_open()
        send = self._socket.send
        with map_zmq_errors(self.channel):
            while True:
                try:
                    send(frames[0], _NOBLOCK | (_SNDMORE if len(frames) > 1 else 0), copy=False)
                    break
                except zmq.Again:  # high-water mark reached: wait until it can take more
                    await self._wait_for(_POLLOUT)
            # Once the first part is queued, ZeroMQ takes the rest of the message.
            for i in range(1, len(frames)):
                send(frames[i], _SNDMORE if i < len(frames) - 1 else 0, copy=False)
        self._wake_after_send()

    async def receive(self) -> list[bytes]:
        """The next multipart message, as bytes frames."""
        return (await self.receive_batch(1))[0]

    async def receive_batch(self, limit: int = 256) -> list[list[bytes]]:
        """The next message and any others already queued, up to ``limit``, in order."""
        self._check_open()
        while True:
            batch: list[list[bytes]] = []
            recv = self._socket.recv
            get: Callable[[int], Any] = self._socket.get
            with map_zmq_errors(self.channel):
                # EVENTS before each read: cheaper than the Again a read of nothing raises.
                while len(batch) < limit and get(_EVENTS) & _POLLIN:
                    frames = [recv(_NOBLOCK)]
                    while get(_RCVMORE):  # the rest of a multipart message is already here
                        frames.append(recv(_NOBLOCK))
                    batch.append(frames)
            if batch:
                if self._waiters:  # a sender may wait for what those reads noticed
                    self._wake_for(self._events())
                return batch
            await self._wait_for(_POLLIN)

    def close(self) -> None:
        """Close at once, dropping anything unsent; waiters get ChannelClosed (idempotent)."""
        if self._socket.closed:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            self._loop = None
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ChannelClosed(f"{self.channel.value} channel was closed"))
        self._socket.close(linger=0)
