"""The launcher's registration socket (JEP 66 kernel handshake).

A kernel that supports the handshake gets a connection file with no ports
and a ``registration_port``. It binds random ports itself, connects to the
registration socket and sends a signed ``handshake_request`` whose content
holds its five ``*_port`` fields; the launcher answers ``handshake_reply``
(``status: ok``) and connects. Nobody else can take the ports in between,
because they were bound before anyone learned them. For an encrypted kernel
the socket is a Curve server with the kernel's key pair, so the handshake is
encrypted too.
"""

from __future__ import annotations

from typing import TypeGuard

import zmq

from kernelyard.errors import RemoteProtocolError
from kernelyard.transport.curve import secure_server
from kernelyard.transport.sockets import context
from kernelyard.transport.stream import ChannelStream, map_zmq_errors
from kernelyard.wire.channel import Channel
from kernelyard.wire.codec import decode, encode
from kernelyard.wire.connection import PORT_FIELDS, CurveKeys
from kernelyard.wire.message import Message, MessageFactory
from kernelyard.wire.signing import Signer

__all__ = ["RegistrationSocket"]


class RegistrationSocket:
    """A ROUTER on a random tcp port of ``ip`` that takes one kernel's registration."""

    def __init__(self, ip: str, *, curve_keys: CurveKeys | None = None) -> None:
        with map_zmq_errors(Channel.CONTROL):
            socket: zmq.Socket[bytes] = context().socket(zmq.ROUTER)
            socket.linger = 0
            host = f"[{ip}]" if ":" in ip else ip
            try:
                secure_server(socket, curve_keys)
                self.port = socket.bind_to_random_port(f"tcp://{host}", max_tries=1000)
            except BaseException:
                socket.close(linger=0)
                raise
        self._stream = ChannelStream(socket, Channel.CONTROL)

    async def receive(self, signer: Signer, factory: MessageFactory) -> dict[str, int]:
        """Wait for a valid ``handshake_request``, acknowledge it, return its ports.

        Messages that are malformed, badly signed or not a handshake are
        ignored (a stray peer cannot end the wait with garbage).
        """
        while True:
            frames = await self._stream.receive()
            try:
                identities, msg = decode(frames, signer, channel=Channel.CONTROL)
            except RemoteProtocolError:
                continue
            ports = _ports(msg)
            if ports is None:
                continue
            reply = factory.message("handshake_reply", {"status": "ok"}, parent=msg)
            await self._stream.send(encode(reply, signer, identities=identities))
            return ports

    def close(self) -> None:
        self._stream.close()


def _ports(msg: Message) -> dict[str, int] | None:
    """The five ports of a ``handshake_request``, or None if it is not one with valid ports."""
    if msg.msg_type != "handshake_request":
        return None
    ports: dict[str, int] = {}
    for name in PORT_FIELDS.values():
        port = msg.content.get(name)
        if not _is_port(port):
            return None
        ports[name] = port
    return ports


def _is_port(value: object) -> TypeGuard[int]:
    """A TCP port number (an int, not a bool, in 1..65535)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
