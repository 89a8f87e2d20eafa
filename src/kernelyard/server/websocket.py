"""The kernel WebSocket: ``/api/kernels/{id}/channels?session_id=...``.

Framing: ``v1.kernel.websocket.jupyter.org`` when the client offers it (and
the settings allow it), the legacy JSON framing otherwise; see
:mod:`kernelyard.wire.websocket`. v1 parts go to the kernel as they came.

Each connection runs two tasks: one forwards the client's messages to the
kernel's shared channels (:class:`~kernelyard.server.bridge.KernelBridge`),
the other sends the kernel's log from the connection's cursor, merging
consecutive stream chunks and pacing IOPub when rate limits are on (nothing
is ever dropped for rate). On disconnect the session's cursor is kept, so a
reconnect with the same ``session_id`` gets everything it missed.

Close codes:

* 1000 when the kernel is gone for good (shut down, culled, dead): final,
  JupyterLab does not reconnect;
* 1001 when the server stops;
* 1007 for a frame that is not a kernel message, 1008 for one on a channel a
  client may not use, 1009 (from the WebSocket layer) for one over
  ``max_message_size``; the client may reconnect and nothing others hold is
  touched;
* 4002 for a connection replaced by a newer one with the same ``session_id``
  (its client reconnected before the old socket was seen to close), as
  jupyter_server replaces a stale connection; the newer one goes on from the
  old one's cursor.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from kernelyard.errors import ChannelClosed, MalformedMessage
from kernelyard.server.bridge import KernelBridge
from kernelyard.server.ratelimit import EXEMPT_MESSAGE_TYPES, RatePacer
from kernelyard.server.replay import LogEntry, merge_streams
from kernelyard.server.settings import ServerSettings
from kernelyard.wire import (
    V1_SUBPROTOCOL,
    Channel,
    MessageFactory,
    from_legacy,
    legacy_from_parts,
    message_parts,
    pack_v1,
    unpack_v1,
)

__all__ = ["CLOSE_FINAL", "CLOSE_SERVER_STOPPING", "KernelSocket", "choose_subprotocol"]

log = logging.getLogger(__name__)

CLOSE_FINAL = 1000
CLOSE_SERVER_STOPPING = 1001
CLOSE_BAD_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_REPLACED = 4002

Frame = bytes | memoryview
_CLIENT_CHANNELS = frozenset({Channel.SHELL, Channel.CONTROL, Channel.STDIN})


def choose_subprotocol(offered: Sequence[str], preference: str | None) -> str | None:
    """v1 only when the client offers it and ``preference`` (None or v1) allows it."""
    if preference == "":
        return None
    wanted = preference or V1_SUBPROTOCOL
    return wanted if wanted in offered else None


class Refused(Exception):
    """A client frame we will not forward; carries the close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _decode_v1(data: bytes) -> tuple[Channel, list[Frame], dict[str, Any]]:
    name, parts = unpack_v1(data)
    try:
        channel = Channel(name)
    except ValueError:
        raise MalformedMessage(f"unknown channel: {name!r}") from None
    if len(parts) < 4:
        raise MalformedMessage(f"v1 message has {len(parts)} parts, expected 4 or more")
    try:
        header = orjson.loads(parts[0])
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedMessage("header is not a JSON object")
    return channel, list(parts), header


def _decode_legacy(data: str | bytes) -> tuple[Channel, list[Frame], dict[str, Any]]:
    msg = from_legacy(data)
    channel = msg.channel or Channel.SHELL  # jupyter_server's default for a missing channel
    return channel, message_parts(msg), dict(msg.header)


class KernelSocket:
    """One WebSocket connection to one kernel; :meth:`serve` runs it to the end."""

    def __init__(
        self,
        websocket: WebSocket,
        bridge: KernelBridge,
        settings: ServerSettings,
        factory: MessageFactory,
    ) -> None:
        self.websocket = websocket
        self.bridge = bridge
        self.settings = settings
        self._factory = factory
        offered = websocket.scope.get("subprotocols") or []
        self.subprotocol = choose_subprotocol(offered, settings.kernel_ws_protocol)
        self.framing = "v1" if self.subprotocol == V1_SUBPROTOCOL else "legacy"
        session = websocket.query_params.get("session_id")
        if not session:
            log.warning("kernel %s: connection without session_id", bridge.kernel_id)
            session = uuid.uuid4().hex
        self.session = session
        self.cursor = 0
        self._scope: anyio.CancelScope | None = None
        self._replaced = False
        self._pacer = (
            RatePacer(
                msg_rate=settings.iopub_msg_rate_limit,
                data_rate=settings.iopub_data_rate_limit,
                window=settings.rate_limit_window,
            )
            if settings.limit_rate
            else None
        )
        self._rate_noticed = False

    async def serve(self) -> None:
        """Accept, relay both ways until either side ends, and account for the session."""
        await self.websocket.accept(subprotocol=self.subprotocol)
        replay_all = self.websocket.query_params.get("replay") == "all"
        self._scope = anyio.CancelScope()
        self.cursor = self.bridge.attach(self.session, self, replay_all=replay_all)
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:

                    async def run_and_cancel(part: Any) -> None:
                        try:
                            await part()
                        finally:
                            tg.cancel_scope.cancel()

                    tg.start_soon(run_and_cancel, self._from_client)
                    tg.start_soon(run_and_cancel, self._to_client)
            if self._replaced:
                await self._close(CLOSE_REPLACED, "replaced by a newer connection of this session")
        finally:
            self.bridge.detach(self.session, self)

    def replace(self) -> None:
        """A newer connection of this session took over (see KernelBridge.attach)."""
        log.info(
            "kernel %s: replacing a stale connection of %s", self.bridge.kernel_id, self.session
        )
        self._replaced = True
        if self._scope is not None:
            self._scope.cancel()

    # -- client -> kernel ---------------------------------------------------------------

    async def _from_client(self) -> None:
        ws = self.websocket
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is None:
                continue
            try:
                await self._forward(data)
            except Refused as exc:
                log.warning("kernel %s: closing a client: %s", self.bridge.kernel_id, exc.reason)
                await self._close(exc.code, exc.reason)
                return
            except ChannelClosed:
                return  # the kernel is gone; the sender closes with the final code

    async def _forward(self, data: str | bytes) -> None:
        try:
            if self.framing == "v1" and isinstance(data, bytes):
                channel, parts, header = _decode_v1(data)
            else:
                channel, parts, header = _decode_legacy(data)
        except MalformedMessage as exc:
            raise Refused(CLOSE_BAD_DATA, f"not a kernel message: {exc}"[:120]) from None
        if channel not in _CLIENT_CHANNELS:
            raise Refused(CLOSE_POLICY, f"clients may not send on {channel.value}")
        msg_id, msg_type = header.get("msg_id"), header.get("msg_type")
        if not isinstance(msg_id, str) or not isinstance(msg_type, str):
            raise Refused(CLOSE_BAD_DATA, "the header needs string msg_id and msg_type")
        allowed = self.settings.allowed_message_types
        if allowed and msg_type not in allowed:
            self._refuse(channel, header, msg_type)
            return
        await self.bridge.send(self.session, channel, parts, msg_id, msg_type)

    def _refuse(self, channel: Channel, header: dict[str, Any], msg_type: str) -> None:
        """A message type the server does not allow: an error reply instead of silence."""
        log.warning("kernel %s: refused a %s message", self.bridge.kernel_id, msg_type)
        if not msg_type.endswith("_request"):
            return
        content = {
            "status": "error",
            "ename": "MessageTypeNotAllowed",
            "evalue": f"the server does not allow {msg_type} messages",
            "traceback": [],
        }
        reply = self._factory.message(
            msg_type.removesuffix("_request") + "_reply", content, parent=header, channel=channel
        )
        self.bridge.publish(
            LogEntry(channel, message_parts(reply), reply.msg_type, self.session)  # type: ignore[arg-type]
        )

    # -- kernel -> client ---------------------------------------------------------------

    async def _to_client(self) -> None:
        bridge, pacer = self.bridge, self._pacer
        while True:
            await bridge.wait_beyond(self.cursor)
            if pacer is not None and (delay := pacer.delay(time.monotonic())):
                await self._rate_notice()
                await anyio.sleep(delay)
                continue
            lost, entries, cursor = bridge.log.read(self.cursor, self.session)
            if lost:
                await self._notice(
                    f"kernelyard: {lost} earlier messages were dropped from the server's "
                    "replay log before this connection could read them\n"
                )
            for entry in merge_streams(entries):
                await self._send_entry(entry)
                self.cursor = entry.seq
            self.cursor = cursor
            if bridge.closing is not None and bridge.log.last_seq <= self.cursor:
                await self._close(*bridge.closing)
                return

    async def _send_entry(self, entry: LogEntry) -> None:
        frame = entry.frames.get(self.framing)
        if frame is None:
            frame = entry.frames[self.framing] = self._encode(entry)
        if isinstance(frame, str):
            await self.websocket.send_text(frame)
        else:
            await self.websocket.send_bytes(frame)
        if self._pacer is not None and entry.channel is Channel.IOPUB:
            self._account(entry)

    def _account(self, entry: LogEntry) -> None:
        assert self._pacer is not None
        if entry.msg_type == "status" and b'"idle"' in entry.parts[3]:
            self._pacer.reset()  # like jupyter_server: a finished request starts afresh
            self._rate_noticed = False
            return
        counted = 0 if entry.msg_type in EXEMPT_MESSAGE_TYPES else 1
        data = entry.size if entry.msg_type == "stream" else 0
        self._pacer.record(time.monotonic(), counted, data)

    def _encode(self, entry: LogEntry) -> str | bytes:
        parts = entry.materialize()
        if self.framing == "v1":
            return pack_v1(entry.channel.value, parts)
        header = orjson.loads(parts[0])
        return legacy_from_parts(
            entry.channel, parts, str(header.get("msg_id", "")), entry.msg_type
        )

    async def _rate_notice(self) -> None:
        if not self._rate_noticed:
            self._rate_noticed = True
            await self._notice(
                "kernelyard: IOPub rate limit reached; output is held back and merged, "
                "not dropped (ServerSettings.iopub_msg_rate_limit / iopub_data_rate_limit)\n"
            )

    async def _notice(self, text: str) -> None:
        msg = self._factory.message(
            "stream", {"name": "stderr", "text": text}, channel=Channel.IOPUB
        )
        await self._send_entry(LogEntry(Channel.IOPUB, message_parts(msg), "stream"))  # type: ignore[arg-type]

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.close(code, reason)  # may be closed from the other side
