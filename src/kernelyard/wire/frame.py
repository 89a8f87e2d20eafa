"""The one type every layer uses for a ZeroMQ (or v1 WebSocket) message part."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Frame", "Frames"]

#: One part of a multipart message: bytes, or a view into a larger buffer (zero copy).
Frame = bytes | memoryview
#: The parts of one message, in order.
Frames = Sequence[Frame]
