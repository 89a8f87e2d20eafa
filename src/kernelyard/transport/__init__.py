"""The ZeroMQ side of a kernel connection: the only package that imports zmq. Async only."""

from kernelyard.transport.heartbeat import Heartbeat
from kernelyard.transport.sockets import context, open_channel
from kernelyard.transport.stream import ChannelStream, map_zmq_errors

__all__ = ["ChannelStream", "Heartbeat", "context", "map_zmq_errors", "open_channel"]
