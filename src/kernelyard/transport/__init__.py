"""The ZeroMQ side of a kernel connection: the only package that imports zmq. Async only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from kernelyard.transport.heartbeat import Heartbeat
    from kernelyard.transport.sockets import context, open_channel
    from kernelyard.transport.stream import ChannelStream, map_zmq_errors

__all__ = ["ChannelStream", "Heartbeat", "context", "map_zmq_errors", "open_channel"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ChannelStream": "kernelyard.transport.stream",
        "Heartbeat": "kernelyard.transport.heartbeat",
        "context": "kernelyard.transport.sockets",
        "map_zmq_errors": "kernelyard.transport.stream",
        "open_channel": "kernelyard.transport.sockets",
    },
)
