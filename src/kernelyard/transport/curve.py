"""CurveZMQ on a kernel's sockets, the way jupyter_client 8.10 and ipykernel 7.4 do it.

One key pair per kernel, made by the manager and carried in the connection
file (``curve_publickey``, ``curve_secretkey``). The kernel's bound sockets
are Curve servers with that pair; a client socket uses its public key as the
server key and, as jupyter_client's do, the same pair as its own (a Curve
client's own keys only encrypt; without a ZAP handler the server does not
check them), so all four pairings of our and their manager and kernel
interoperate. A peer with another server key never completes the handshake:
libzmq drops it silently, so its requests go unanswered and it times out.

Options are set before ``bind``/``connect``; libzmq applies them per
connection. Without Curve support in libzmq, asking for it is
:class:`~kernelyard.errors.EncryptionUnavailable`, never a crash.
"""

from __future__ import annotations

from typing import Any

import zmq

from kernelyard.errors import ConnectionInfoError, EncryptionUnavailable
from kernelyard.wire.connection import CurveKeys

__all__ = [
    "check_keypair",
    "curve_supported",
    "new_keypair",
    "require_curve",
    "secure_client",
    "secure_server",
]


def curve_supported() -> bool:
    """True when this libzmq can do CurveZMQ (pyzmq's wheels bundle it)."""
    return bool(zmq.has("curve"))


def require_curve(why: str) -> None:
    """Raise EncryptionUnavailable, saying ``why`` it was needed, unless Curve works here."""
    if not curve_supported():
        raise EncryptionUnavailable(
            f"{why} needs CurveZMQ, but this libzmq {zmq.zmq_version()} was built without "
            "it (zmq.has('curve') is False); install pyzmq's wheels, which include it"
        )


def new_keypair() -> CurveKeys:
    """A fresh (public, secret) pair as Z85 text; EncryptionUnavailable without Curve."""
    require_curve("transport encryption")
    public, secret = zmq.curve_keypair()
    return public, secret


def check_keypair(keys: CurveKeys | None) -> None:
    """Raise ConnectionInfoError unless ``keys``' public key belongs to its secret key.

    Called where the pair is used as a server's: a mismatched pair would make a
    kernel that no client can reach, with no error anywhere.
    """
    if keys is None:
        return
    require_curve("an encrypted connection")
    if zmq.curve_public(keys[1]) != keys[0]:
        raise ConnectionInfoError("curve_publickey is not the public key of curve_secretkey")


def secure_server(socket: zmq.Socket[Any], keys: CurveKeys | None) -> None:
    """Make ``socket`` (about to bind) a Curve server with ``keys``; nothing for None."""
    if keys is None:
        return
    require_curve("an encrypted connection")
    socket.curve_publickey, socket.curve_secretkey = keys
    socket.curve_server = True


def secure_client(socket: zmq.Socket[Any], keys: CurveKeys | None) -> None:
    """Make ``socket`` (about to connect) a Curve client of the server whose pair is
    ``keys`` (using the same pair as its own, as jupyter_client does); nothing for None.
    """
    if keys is None:
        return
    require_curve("an encrypted connection")
    socket.curve_serverkey = keys[0]
    socket.curve_publickey, socket.curve_secretkey = keys
