"""Port reservation: TCP ports held for a kernel until it has bound them.

A reservation binds one socket per port with ``SO_REUSEADDR`` and never
listens on it. While it is held, no other process's ``bind(port 0)`` (ours,
jupyter_client's, anyone's) can be given those ports, yet the kernel can bind
them, because ZeroMQ sets ``SO_REUSEADDR`` too and Linux lets such sockets
share a port as long as only one listens. Releasing the reservation after the
kernel answered therefore leaves no window in which two kernels started at the
same moment can collide (jupyter_client#487).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Self

__all__ = ["PortReservation"]


class PortReservation:
    """TCP ports on one address, held by bound, non-listening sockets."""

    def __init__(self, sockets: Sequence[socket.socket]) -> None:
        self._sockets = list(sockets)
        self.ports: list[int] = [s.getsockname()[1] for s in self._sockets]

    @staticmethod
    def _bind(ip: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
        except BaseException:
            sock.close()
            raise
        return sock

    @classmethod
    def new(cls, ip: str, count: int = 5) -> PortReservation:
        """Reserve ``count`` fresh ports chosen by the OS. Raises OSError if it cannot."""
        sockets: list[socket.socket] = []
        try:
            for _ in range(count):
                sockets.append(cls._bind(ip, 0))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(sockets)

    @classmethod
    def exact(cls, ip: str, ports: Sequence[int]) -> PortReservation:
        """Reserve exactly ``ports`` (a restart keeping its ports); OSError if one is taken."""
        sockets: list[socket.socket] = []
        try:
            for port in ports:
                sockets.append(cls._bind(ip, port))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(sockets)

    @property
    def held(self) -> bool:
        return bool(self._sockets)

    def release(self) -> None:
        """Let go of the ports (idempotent)."""
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
