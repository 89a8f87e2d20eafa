"""The kernel WebSocket: ``/api/kernels/{id}/channels?session_id=...``.

Framing: ``v1.kernel.websocket.jupyter.org`` when the client offers it (and
the settings allow it), the legacy JSON framing otherwise; see
:mod:`kernelyard.wire.websocket`. v1 parts go to the kernel as they came.

Each connection runs two tasks: one forwards the client's messages to the
kernel's shared channels (:class:`~kernelyard.server.bridge.KernelBridge`),
the other sends the kernel's log from the connection's
:class:`~kernelyard.server.bridge.Reader`, merging consecutive stream chunks
and pacing IOPub when rate limits are on (nothing is ever dropped for rate).
When either ends, so does the other. On disconnect the session's cursor is
kept, so a reconnect with the same ``session_id`` gets everything it missed;
one that also says ``resume_after=MSG_ID`` (the last message it got; our
gateway client does) gets again what was written after that message but
lost with the old connection.

A connection to a kernel that is still starting is accepted at once and
waits for it, keeping what the client sends meanwhile (JupyterLab's first
``kernel_info_request``) to forward once the kernel answers; if the start
fails, the client gets ``status: dead`` and a final close with the reason.

What a frame may be, and every close code, is decided in
:mod:`kernelyard.server.policy`; when the connection closes for the
kernel's sake (gone, replaced, server stopping), the bridge says so through
the reader.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket, WebSocketDisconnect

from kernelyard.errors import ChannelClosed, MalformedMessage
from kernelyard.server.bridge import KernelBridge, Reader
from kernelyard.server.policy import (
    CloseCode,
    Refusal,
    bad_data,
    check_client_message,
    close_reason,
    kernel_unavailable,
)
from kernelyard.server.ratelimit import EXEMPT_MESSAGE_TYPES, RatePacer
from kernelyard.server.replay import LogEntry, merge_streams
from kernelyard.server.served import ServedKernel
from kernelyard.server.settings import ServerSettings
from kernelyard.wire import (
    V1_SUBPROTOCOL,
    Channel,
    MessageFactory,
    choose_subprotocol,
    client_frame,
    legacy_from_parts,
    message_parts,
    pack_v1,
)

__all__ = ["EARLY_FRAMES", "KernelSocket"]

log = logging.getLogger(__name__)

#: Frames read ahead of the relay for a socket that waited for its kernel (what a
#: client may send before the kernel answers); then reading pauses until the relay
#: takes them, so a client cannot pile up memory.
EARLY_FRAMES = 16


class KernelSocket:
    """One WebSocket connection to one kernel; :meth:`serve` runs it to the end."""

    def __init__(
        self,
        websocket: WebSocket,
        kernel: ServedKernel,
        settings: ServerSettings,
        factory: MessageFactory,
    ) -> None:
        self.websocket = websocket
        self.kernel = kernel
        self.settings = settings
        #: The client's frames, when a pump reads them (the kernel was starting).
        self._incoming: MemoryObjectReceiveStream[str | bytes] | None = None
        self._left = anyio.Event()  # set when the pump saw the client go
        self._factory = factory
        offered = websocket.scope.get("subprotocols") or []
        self.subprotocol = choose_subprotocol(offered, settings.kernel_ws_protocol)
        self.framing = "v1" if self.subprotocol == V1_SUBPROTOCOL else "legacy"
        session = websocket.query_params.get("session_id")
        if not session:
            log.warning("kernel %s: connection without session_id", kernel.id)
            session = uuid.uuid4().hex
        self.session = session
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
        """Accept, wait for the kernel if it is starting, relay both ways until either
        side ends, and account for the session.
        """
        await self.websocket.accept(subprotocol=self.subprotocol)
        async with anyio.create_task_group() as connection:
            if self.kernel.bridge is None:
                # Read the client all along from now on (it may send at once, and it may
                # leave): one reader for the connection's life, so no frame is lost
                # between the wait and the relay (EARLY_FRAMES bounds its read-ahead).
                send, incoming = anyio.create_memory_object_stream[str | bytes](EARLY_FRAMES)
                self._incoming = incoming
                connection.start_soon(self._pump, send)
                with incoming:
                    bridge = await self._wait_for_start()
                    if bridge is not None:
                        await self._relay(bridge)
            else:
                await self._relay(self.kernel.bridge)
            connection.cancel_scope.cancel()

    async def _relay(self, bridge: KernelBridge) -> None:
        self.bridge: KernelBridge = bridge
        query = self.websocket.query_params
        reader = bridge.attach(
            self.session,
            replay_all=query.get("replay") == "all",
            resume_after=query.get("resume_after") or None,
        )
        try:
            async with anyio.create_task_group() as tg:

                async def run_and_cancel(part: Callable[[Reader], Awaitable[None]]) -> None:
                    try:
                        await part(reader)
                    except WebSocketDisconnect:
                        pass  # the client went away while we wrote to it: the end, too
                    finally:
                        tg.cancel_scope.cancel()

                tg.start_soon(run_and_cancel, self._from_client)
                tg.start_soon(run_and_cancel, self._to_client)
        finally:
            bridge.detach(reader)

    async def _pump(self, send: MemoryObjectSendStream[str | bytes]) -> None:
        """The client's frames into ``send``, until it leaves (then the stream ends)."""
        try:
            async with send:
                while (frame := await self._receive_frame()) is not None:
                    await send.send(frame)
        finally:
            self._left.set()

    async def _receive_frame(self) -> str | bytes | None:
        """The client's next frame, straight from the socket; None once it left."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is not None:
                return data  # type: ignore[no-any-return]

    async def _next_frame(self) -> str | bytes | None:
        """The client's next frame (through the pump if the kernel was starting)."""
        if self._incoming is None:
            return await self._receive_frame()
        try:
            return await self._incoming.receive()
        except anyio.EndOfStream:
            return None

    async def _wait_for_start(self) -> KernelBridge | None:
        """The kernel's bridge once it answers; None when the client left meanwhile or
        the start failed (the client was told: ``status: dead``, a final close).
        """
        kernel = self.kernel
        kernel.waiting += 1
        try:
            async with anyio.create_task_group() as race:

                async def until(event: anyio.Event) -> None:
                    await event.wait()
                    race.cancel_scope.cancel()

                race.start_soon(until, kernel.settled)
                race.start_soon(until, kernel.closed)
                race.start_soon(until, self._left)
        finally:
            kernel.waiting -= 1
        if self._left.is_set():
            return None  # it left (what it sent is moot)
        if kernel.closing is not None and kernel.bridge is None:
            await self._close(*kernel.closing)  # the server stops: the client comes back
            return None
        if kernel.bridge is None:
            dead = self._factory.message(
                "status", {"execution_state": "dead"}, channel=Channel.IOPUB
            )
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self._send_entry(LogEntry(Channel.IOPUB, message_parts(dead), "status"))
            await self._close(CloseCode.FINAL, close_reason(kernel.failure))
            return None
        return kernel.bridge

    # -- client -> kernel ---------------------------------------------------------------

    async def _from_client(self, reader: Reader) -> None:
        while (data := await self._next_frame()) is not None:
            refusal = await self._forward(reader, data)
            if refusal is not None and refusal.code is not None:
                log.warning(
                    "kernel %s: closing a client: %s", self.bridge.kernel_id, refusal.reason
                )
                await self._close(refusal.code, refusal.reason)
                return

    async def _forward(self, reader: Reader, data: str | bytes) -> Refusal | None:
        """Send one client frame to the kernel, or refuse it (the refusal says how)."""
        try:
            channel, parts, header = client_frame(data, v1=self.framing == "v1")
        except MalformedMessage as exc:
            return bad_data(exc)
        refusal = check_client_message(channel, header, self.settings.allowed_message_types)
        if refusal is None:
            try:
                await self.bridge.send(reader, channel, parts, header["msg_id"], header["msg_type"])
            except ChannelClosed as exc:
                return kernel_unavailable(exc, gone=self.bridge.closing is not None)
            return None
        log.warning("kernel %s: refused: %s", self.bridge.kernel_id, refusal.reason)
        if refusal.reply is not None:
            msg_type, content = refusal.reply
            reply = self._factory.message(msg_type, content, parent=header, channel=channel)
            entry = LogEntry(
                channel, message_parts(reply), msg_type, reader.session, msg_id=reply.msg_id
            )
            self.bridge.publish(entry)
        return refusal

    # -- kernel -> client ---------------------------------------------------------------

    async def _to_client(self, reader: Reader) -> None:
        bridge, pacer = self.bridge, self._pacer
        while True:
            await bridge.wait(reader)
            closing = bridge.closing_of(reader)
            if reader.closing is not None and closing is not None:  # replaced: at once
                await self._close(*closing)
                return
            if pacer is not None and (delay := pacer.delay(time.monotonic())):
                await self._rate_notice(reader)
                await anyio.sleep(delay)
                continue
            lost, entries, cursor = bridge.log.read(reader.cursor, reader.session)
            if lost:
                await self._notice(
                    reader,
                    f"kernelyard: {lost} earlier messages were dropped from the server's "
                    "replay log before this connection could read them\n",
                )
            for entry in merge_streams(entries):
                await self._send_entry(entry)
                reader.cursor = entry.seq
                reader.wrote(entry.msg_id, entry.seq)
            reader.cursor = cursor
            closing = bridge.closing_of(reader)
            if closing is not None:
                await self._close(*closing)
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

    async def _rate_notice(self, reader: Reader) -> None:
        if not self._rate_noticed:
            self._rate_noticed = True
            await self._notice(
                reader,
                "kernelyard: IOPub rate limit reached; output is held back and merged, "
                "not dropped (ServerSettings.iopub_msg_rate_limit / iopub_data_rate_limit)\n",
            )

    async def _notice(self, reader: Reader, text: str) -> None:
        msg = self._factory.message(
            "stream", {"name": "stderr", "text": text}, channel=Channel.IOPUB
        )
        await self._send_entry(LogEntry(Channel.IOPUB, message_parts(msg), "stream"))
        reader.wrote(msg.msg_id, reader.cursor)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.close(code, reason)  # may be closed from the other side
