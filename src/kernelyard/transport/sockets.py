"""Opening the client side of a kernel's sockets.

shell, control and stdin are DEALERs sharing one routing identity (the
kernel sends ``input_request`` on stdin to the identity that sent the
execute on shell); iopub is a SUB subscribed to everything *before* it
connects, so nothing published after the connection is missed; the
heartbeat is a REQ (see :mod:`.heartbeat`). An encrypted connection makes
each a Curve client of the kernel (:mod:`.curve`).
"""

from __future__ import annotations

import resource

import zmq
import zmq.asyncio

from kernelyard.transport.curve import secure_client
from kernelyard.transport.stream import ChannelStream, map_zmq_errors
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["asyncio_context", "context", "open_channel", "raise_open_file_limit"]

_SOCKET_TYPES = {
    Channel.SHELL: zmq.DEALER,
    Channel.CONTROL: zmq.DEALER,
    Channel.STDIN: zmq.DEALER,
    Channel.IOPUB: zmq.SUB,
    Channel.HEARTBEAT: zmq.REQ,
}


#: Most sockets the context may hold, whatever the open-file limit says.
MAX_SOCKETS = 1 << 20
_sized: set[int] = set()


def context() -> zmq.Context[zmq.Socket[bytes]]:
    """The process-wide ZeroMQ context (sockets are driven by :class:`ChannelStream`),
    sized for as many sockets as the process may open files: libzmq's default of
    1,023 sockets is the channels of about 200 kernels.
    """
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    if id(ctx) not in _sized:  # before its first socket: libzmq sizes it then
        _sized.add(id(ctx))
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = MAX_SOCKETS if soft == resource.RLIM_INFINITY else min(soft, MAX_SOCKETS)
        ctx.set(zmq.MAX_SOCKETS, max(limit, ctx.get(zmq.MAX_SOCKETS)))
    return ctx


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (at most
    MAX_SOCKETS), as a server holding many kernels needs: each kernel's channels
    take about ten descriptors. Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_SOCKETS if hard == resource.RLIM_INFINITY else min(hard, MAX_SOCKETS)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft
        return wanted
    return soft


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
