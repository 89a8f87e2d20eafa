"""UpstreamSocket: one client WebSocket to a gateway, on websockets' sans-I/O protocol.

websockets' asyncio client hands each message to a reading task through a
queue and takes each send through a lock and a drain: two task switches and a
few futures per message, which is most of what a gateway hop costs. Here the
protocol runs inside an asyncio Protocol instead: bytes from the socket are
parsed in ``data_received`` and each whole message goes, in the same call, to
the ``on_message`` callback given at :meth:`UpstreamSocket.open`; a send is
framed and written at once (it waits only when the socket's buffer is full).

What it keeps of the asyncio client: the opening handshake (the request's
headers, the subprotocol offered, TLS, a timeout; a refusal raises
websockets' ``InvalidStatus`` with the response, body included), pings every
``ping_interval`` seconds with the connection dropped when no pong comes
within ``ping_timeout``, pongs to the server's pings, messages fragmented into
several frames, and the closing handshake. No compression is offered (for
small kernel messages it costs more CPU than it saves). Proxies are not used
(as in jupyter_server's gateway client).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl as ssl_module
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import anyio
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

__all__ = ["UpstreamSocket"]

log = logging.getLogger(__name__)

#: How long the closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 1.0

#: Called with each whole message as it arrives (bytes: binary, str: text).
OnMessage = Callable[[bytes | str], None]


class UpstreamSocket(asyncio.Protocol):
    """An open client WebSocket (see the module). Make one with :meth:`open`."""

    def __init__(
        self,
        protocol: ClientProtocol,
        headers: Mapping[str, str],
        on_message: OnMessage,
        ping: tuple[float, float] | None,
    ) -> None:
        self._protocol = protocol
        self._headers = headers
        self._on_message = on_message
        self._ping = ping
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._handshake: asyncio.Future[Response] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_due: tuple[bytes, asyncio.TimerHandle] | None = None
        self._closing_timer: asyncio.TimerHandle | None = None
        #: The handshake's answer (status, headers: cookies), once open.
        self.response: Response | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        headers: Mapping[str, str],
        subprotocols: Sequence[str],
        on_message: OnMessage,
        ssl: ssl_module.SSLContext | None,
        open_timeout: float,
        max_size: int,
        ping_interval: float | None,
        ping_timeout: float,
    ) -> UpstreamSocket:
        """Connect and do the opening handshake within ``open_timeout`` (TimeoutError);
        OSError if the connection fails, websockets' InvalidHandshake (InvalidStatus
        for a refusal) if the handshake does.
        """
        uri = parse_uri(url)
        protocol = ClientProtocol(
            uri, subprotocols=[Subprotocol(s) for s in subprotocols], max_size=max_size
        )
        ping = None if not ping_interval else (ping_interval, ping_timeout)
        loop = asyncio.get_running_loop()
        transport: asyncio.Transport | None = None
        try:
            with anyio.fail_after(open_timeout):
                transport, upstream = await loop.create_connection(
                    lambda: cls(protocol, headers, on_message, ping),
                    uri.host,
                    uri.port,
                    ssl=ssl if uri.secure else None,
                    server_hostname=uri.host if uri.secure else None,
                )
                await upstream._handshake
        except BaseException:
            if transport is not None:
                transport.abort()
            raise
        upstream._keep_alive()
        return upstream

    @property
    def subprotocol(self) -> str | None:
        return self._protocol.subprotocol

    @property
    def paused(self) -> bool:
        """Whether sends wait now: the socket's buffer is full (the server reads slowly)."""
        return not self._writable.is_set()

    @property
    def close_code(self) -> int | None:
        """The close code received: None while open, 1006 if the connection was cut."""
        return self._protocol.close_code

    # -- sending ------------------------------------------------------------------------

    async def send(self, data: bytes | str) -> bool:
        """Send one message; False if the connection is no longer open (nothing sent)."""
        if not self._writable.is_set():
            await self._writable.wait()
        try:
            if isinstance(data, str):
                self._protocol.send_text(data.encode())
            else:
                self._protocol.send_binary(data)
        except InvalidState:
            return False
        self._flush()
        return True

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE) -> None:
        """The closing handshake (at most CLOSE_TIMEOUT seconds), then the socket is closed."""
        if self._protocol.state is State.OPEN:
            self._protocol.send_close(code)
            self._flush()
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await asyncio.shield(self._lost)
        if self._transport is not None and not self._lost.done():
            self._transport.abort()
            await asyncio.shield(self._lost)

    async def wait_closed(self) -> None:
        """Return once the connection is gone (closed by either side, or cut)."""
        await asyncio.shield(self._lost)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self._protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the protocol is done writing: half-close
                transport.write_eof()
            else:
                transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        request = self._protocol.connect()
        request.headers.update(Headers(self._headers))
        request.headers.setdefault("User-Agent", USER_AGENT)
        self._protocol.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._protocol.receive_data(data)
        self._handle_events()

    def eof_received(self) -> bool | None:
        self._protocol.receive_eof()
        self._handle_events()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.receive_eof()  # for its state; nothing is read any more
        self._stop_keep_alive()
        if self._closing_timer is not None:
            self._closing_timer.cancel()
        if not self._handshake.done():
            error = self._protocol.handshake_exc or exc
            self._handshake.set_exception(
                error or ConnectionError("the connection closed during the opening handshake")
            )
        if not self._lost.done():
            self._lost.set_result(None)
        self._writable.set()  # a waiting send finds the connection closed

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _handle_events(self) -> None:
        for event in self._protocol.events_received():
            if isinstance(event, Response):
                self._answered(event)
            elif isinstance(event, Frame):
                self._frame(event)
        self._flush()  # pongs, the close echoed, or the end once the server closed
        transport = self._transport
        if (
            self._closing_timer is None
            and transport is not None
            and self._protocol.close_expected()
        ):
            # The closing handshake is done on our side; the server closes TCP first
            # as RFC 6455 wants, or we do after CLOSE_TIMEOUT.
            self._closing_timer = self._loop.call_later(CLOSE_TIMEOUT, transport.abort)

    def _answered(self, response: Response) -> None:
        self.response = response
        if self._handshake.done():
            return
        if self._protocol.handshake_exc is not None:
            self._handshake.set_exception(self._protocol.handshake_exc)
        else:
            self._handshake.set_result(response)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if frame.fin:
                data = bytes(frame.data)
                self._deliver(data.decode() if opcode is Opcode.TEXT else data)
            else:
                self._fragments = [bytes(frame.data)]
                self._fragment_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                self._deliver(data.decode() if self._fragment_text else data)
        elif opcode is Opcode.PONG and self._pong_due is not None:
            payload, timer = self._pong_due
            if bytes(frame.data) == payload:
                timer.cancel()
                self._pong_due = None

    def _deliver(self, message: bytes | str) -> None:
        try:
            self._on_message(message)
        except Exception:  # the consumer's fault must not cut the connection
            log.exception("handling a message from %s failed", self._protocol.uri.host)

    # -- keepalive ------------------------------------------------------------------------

    def _keep_alive(self) -> None:
        if self._ping is not None and not self._lost.done():
            self._ping_timer = self._loop.call_later(self._ping[0], self._send_ping)

    def _send_ping(self) -> None:
        if self._ping is None or self._protocol.state is not State.OPEN:
            return
        payload = os.urandom(4)
        if self._pong_due is None:  # one ping in flight at a time: its pong is awaited
            self._protocol.send_ping(payload)
            self._flush()
            self._pong_due = (payload, self._loop.call_later(self._ping[1], self._no_pong))
        self._keep_alive()

    def _no_pong(self) -> None:
        """The server did not answer a ping in time: the connection counts as cut."""
        self._pong_due = None
        if self._transport is not None:
            self._transport.abort()

    def _stop_keep_alive(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._pong_due is not None:
            self._pong_due[1].cancel()
            self._pong_due = None
