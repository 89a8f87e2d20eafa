"""IOPub from any thread: in order, stream output coalesced, nothing dropped.

Every message goes out through one lock, so messages from one thread leave in
the order that thread published them, and stream text written before a
message leaves before it (a ``print`` before ``display`` shows above it).

Stream writes are not one message each: text is appended to a pending chunk
per (stream name, parent request) and sent when

* anything else is published (order is kept),
* the chunk grows past ``max_chunk`` characters,
* ``flush()`` is called: it asks the I/O thread to send *soon* and returns at
  once, so 20,000 ``print(..., flush=True)`` become a few hundred messages
  that carry every line, in order, instead of 20,000 round trips through the
  I/O thread,
* or ``interval`` seconds passed since the first unsent write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kernelyard.kernel.session import KernelSession
from kernelyard.wire.channel import Channel
from kernelyard.wire.frame import Frames
from kernelyard.wire.message import Message

__all__ = ["Publisher", "Sender"]


class Sender(Protocol):
    """What the publisher needs from the socket owner (KernelSockets)."""

    def send(self, channel: Channel, frames: Frames) -> None: ...

    def call_soon(self, func: Callable[[], None]) -> None: ...

    def call_later(self, delay: float, func: Callable[[], None]) -> None: ...


class _Chunk:
    __slots__ = ("name", "parent", "parts", "size")

    def __init__(self, name: str, parent: Message | None) -> None:
        self.name = name
        self.parent = parent
        self.parts: list[str] = []
        self.size = 0


class Publisher:
    """Publishes on IOPub through ``sender``; safe to call from every thread."""

    def __init__(
        self,
        session: KernelSession,
        sender: Sender,
        *,
        interval: float = 0.02,
        max_chunk: int = 1 << 16,
    ) -> None:
        self._session = session
        self._sender = sender
        self._interval = interval
        self._max_chunk = max_chunk
        self._lock = threading.Lock()
        self._pending: list[_Chunk] = []
        self._timer_armed = False
        self._flush_asked = False

    def publish(
        self,
        msg_type: str,
        content: Mapping[str, Any],
        parent: Message | None,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Frames = (),
        topic: bytes | None = None,
    ) -> Message:
        """Send one message (after any pending stream text); returns it."""
        msg = self._session.message(msg_type, content, parent, metadata=metadata, buffers=buffers)
        frames = self._session.frames(msg, [topic or b"kernel." + msg_type.encode()])
        with self._lock:
            self._send_pending_locked()
            self._sender.send(Channel.IOPUB, frames)
        return msg

    def status(self, state: str, parent: Message | None) -> None:
        self.publish("status", {"execution_state": state}, parent)

    def stream(self, name: str, text: str, parent: Message | None) -> None:
        """Queue ``text`` for stream ``name``; sent within ``interval`` seconds at the latest."""
        if not text:
            return
        with self._lock:
            last = self._pending[-1] if self._pending else None
            if last is None or last.name != name or last.parent is not parent:
                last = _Chunk(name, parent)
                self._pending.append(last)
            last.parts.append(text)
            last.size += len(text)
            if last.size >= self._max_chunk:
                self._send_pending_locked()
                return
            arm = not self._timer_armed
            self._timer_armed = True
        if arm:
            self._sender.call_later(self._interval, self._on_timer)

    def flush(self) -> None:
        """Ask for pending stream text to be sent soon, without waiting for it."""
        with self._lock:
            if self._flush_asked or not self._pending:
                return
            self._flush_asked = True
        self._sender.call_soon(self._on_flush)

    def flush_now(self) -> None:
        """Hand pending stream text to the sender before returning."""
        with self._lock:
            self._send_pending_locked()

    def _on_flush(self) -> None:
        with self._lock:
            self._flush_asked = False
            self._send_pending_locked()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer_armed = False
            self._send_pending_locked()

    def _send_pending_locked(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        for chunk in pending:
            content = {"name": chunk.name, "text": "".join(chunk.parts)}
            msg = self._session.message("stream", content, chunk.parent)
            self._sender.send(
                Channel.IOPUB, self._session.frames(msg, [b"stream." + chunk.name.encode()])
            )
