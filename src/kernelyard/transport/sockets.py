"""Opening the client side of a kernel's sockets.

shell, control and stdin are DEALERs sharing one routing identity (the
kernel sends ``input_request`` on stdin to the identity that sent the
execute on shell); iopub is a SUB subscribed to everything *before* it
connects, so nothing published after the connection is missed; the
heartbeat is a REQ (see :mod:`.heartbeat`). An encrypted connection makes
each a Curve client of the kernel (:mod:`.curve`).
"""

from __future__ import annotations

import zmq
import zmq.asyncio

from kernelyard.transport.curve import secure_client
from kernelyard.transport.stream import ChannelStream, map_zmq_errors
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["asyncio_context", "context", "open_channel"]

_SOCKET_TYPES = {
    Channel.SHELL: zmq.DEALER,
    Channel.CONTROL: zmq.DEALER,
    Channel.STDIN: zmq.DEALER,
    Channel.IOPUB: zmq.SUB,
    Channel.HEARTBEAT: zmq.REQ,
}


def context() -> zmq.Context[zmq.Socket[bytes]]:
    """The process-wide ZeroMQ context (sockets are driven by :class:`ChannelStream`)."""
    return zmq.Context.instance()


def asyncio_context() -> zmq.asyncio.Context:
    """The process-wide asyncio ZeroMQ context, for the jupyter_client objects the
    provisioner adapter makes (one each would be destroyed, noisily, by their ``__del__``).
    """
    return zmq.asyncio.Context.instance()


def open_channel(
    info: ConnectionInfo,
    channel: Channel,
    *,
    identity: bytes | None = None,
    unbounded: bool = False,
    immediate: bool = False,
) -> ChannelStream:
    """A connected client socket for ``channel`` of the kernel ``info`` describes.

    ``unbounded`` lifts ZeroMQ's high-water marks (1000 messages by default):
    a relay that must never drop IOPub reads everything into its own memory.
    ``immediate`` (ZMQ_IMMEDIATE, request channels) queues messages only on a
    connection that is up: while the kernel is unreachable a send waits
    instead of queueing into a connection that may never complete (a kernel
    that died and restarted on other ports leaves the old one to a stranger).
    """
    with map_zmq_errors(channel):
        socket = context().socket(_SOCKET_TYPES[channel])
        try:
            socket.linger = 0
            if unbounded:
                socket.rcvhwm = socket.sndhwm = 0
            if identity is not None and channel is not Channel.IOPUB:
                socket.setsockopt(zmq.IDENTITY, identity)
            if immediate and channel is not Channel.IOPUB:
                socket.setsockopt(zmq.IMMEDIATE, 1)
            if channel is Channel.IOPUB:
                socket.setsockopt(zmq.SUBSCRIBE, b"")
            secure_client(socket, info.curve_keys)
            socket.connect(info.endpoint(channel))
        except BaseException:
            socket.close(linger=0)
            raise
    return ChannelStream(socket, channel)
