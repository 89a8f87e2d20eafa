"""Heartbeat: is the kernel still answering?

A REQ socket sends a ping and waits for the echo. A REQ that missed its reply
is stuck in its state machine, so after a miss the socket is replaced. The
kernel is declared dead once no echo came for ``time_to_dead`` seconds, and
alive again when echoes return (a kernel can come back after an in-place
restart on the same ports).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from kernelyard.transport.sockets import open_channel
from kernelyard.transport.stream import ChannelStream
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["Heartbeat"]


class Heartbeat:
    """Pings a kernel's heartbeat socket and reports when it stops, or starts again, answering."""

    def __init__(
        self,
        info: ConnectionInfo,
        *,
        interval: float = 0.5,
        time_to_dead: float = 3.0,
        on_dead: Callable[[float], None],
        on_alive: Callable[[], None] | None = None,
    ) -> None:
        self.info = info
        self.interval = interval
        self.time_to_dead = time_to_dead
        self._on_dead = on_dead
        self._on_alive = on_alive
        self.beating = True

    async def ping(self, stream: ChannelStream, timeout: float) -> bool:
        """One ping; True if the echo came back within ``timeout``."""
        payload = str(time.monotonic()).encode()
        await stream.send([payload])
        with anyio.move_on_after(timeout):
            return (await stream.receive()) == [payload]
        return False

    async def run(self) -> None:
        """Ping until cancelled, calling ``on_dead(silence)`` / ``on_alive()`` on changes."""
        stream = open_channel(self.info, Channel.HEARTBEAT)
        last_echo = time.monotonic()
        try:
            while True:
                started = time.monotonic()
                if await self.ping(stream, self.interval):
                    last_echo = time.monotonic()
                    if not self.beating:
                        self.beating = True
                        if self._on_alive is not None:
                            self._on_alive()
                    await anyio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
                    continue
                stream.close()  # a REQ without its reply cannot send again
                stream = open_channel(self.info, Channel.HEARTBEAT)
                silence = time.monotonic() - last_echo
                if self.beating and silence >= self.time_to_dead:
                    self.beating = False
                    self._on_dead(silence)
        finally:
            stream.close()
