"""Inbox: the queue behind a KernelChannels' ``receive`` (batches of events, in order).

Whoever reads the kernel (socket readers, a lifecycle listener, an in-memory
fake) puts lists of events; the one consumer gets everything queued so far
in one list, so a flood costs one wake-up, not one per message.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

import anyio

from kernelyard.errors import ChannelClosed

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """An unbounded queue of event batches; ``name`` goes in the ChannelClosed message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._send, self._receive = anyio.create_memory_object_stream[list[T]](math.inf)

    def put(self, events: list[T]) -> bool:
        """Queue ``events``; False once the inbox is closed (they are dropped)."""
        try:
            self._send.send_nowait(events)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    def end(self) -> None:
        """No more events: the consumer gets what is queued, then ChannelClosed."""
        self._send.close()

    def close(self) -> None:
        """End and discard what is queued (the consumer is gone)."""
        self._send.close()
        self._receive.close()

    async def get(self) -> list[T]:
        """Everything queued, in order (waits for at least one batch); ChannelClosed at the end."""
        try:
            # What is queued is taken at once: receive() first yields to the loop (a
            # checkpoint), one scheduling round per batch that a relay would pay for.
            batch = self._receive.receive_nowait()
        except anyio.WouldBlock:
            batch = None
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ChannelClosed(f"{self.name} channels are closed") from None
        if batch is None:
            try:
                batch = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise ChannelClosed(f"{self.name} channels are closed") from None
        while True:
            try:
                batch.extend(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return batch
