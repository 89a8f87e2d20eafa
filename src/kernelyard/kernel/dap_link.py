"""One Debug Adapter Protocol connection to debugpy's adapter (asyncio, one loop).

:meth:`DapLink.request` sends a request and returns its response. The
adapter sees the link's own sequence numbers, so requests the kernel makes
itself (``configurationDone`` during ``attach``, ``threads`` after a stop)
never clash with the frontend's; the response goes back with the
frontend's ``request_seq``. Events go to the callback given at construction.
When the adapter closes the connection, or sends something that is not
DAP, every pending request fails with DebuggerError and the link is closed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kernelyard.errors import DebuggerError, MalformedMessage
from kernelyard.kernel.dap import DapDecoder, encode_dap

__all__ = ["DapLink"]

log = logging.getLogger(__name__)

DapMessage = dict[str, Any]


class DapLink:
    """A DAP client connection; use it from the loop that connected it."""

    def __init__(self, on_event: Callable[[DapMessage], None], *, timeout: float = 60.0) -> None:
        self._on_event = on_event
        self._timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[DapMessage]] = {}
        self._seq = itertools.count(1)

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self, host: str, port: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise DebuggerError(f"cannot reach debugpy's adapter at {host}:{port}: {exc}") from exc
        self._writer = writer
        self._reader = asyncio.get_running_loop().create_task(self._read(reader))

    async def request(self, message: Mapping[str, Any]) -> DapMessage:
        """Send the DAP request ``message``; its response, with ``message``'s own seq."""
        writer = self._writer
        if writer is None:
            raise DebuggerError("the debugger is not started (send 'initialize' first)")
        seq = next(self._seq)
        future: asyncio.Future[DapMessage] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        command = message.get("command")
        try:
            writer.write(encode_dap({**message, "seq": seq}))
            async with asyncio.timeout(self._timeout):
                await writer.drain()
                response = await future
        except TimeoutError:
            raise DebuggerError(
                f"debugpy's adapter did not answer {command!r} within {self._timeout:g} s"
            ) from None
        except ConnectionError as exc:
            raise DebuggerError(f"the connection to debugpy's adapter broke: {exc}") from exc
        finally:
            self._pending.pop(seq, None)
        return {**response, "request_seq": message.get("seq")}

    def close(self, reason: str = "the debugger was stopped") -> None:
        """Close the connection; pending requests fail with ``reason`` (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DebuggerError(reason))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = DapDecoder()
        reason = "debugpy's adapter closed the connection"
        try:
            while data := await reader.read(1 << 16):
                for message in decoder.feed(data):
                    self._dispatch(message)
        except MalformedMessage as exc:
            reason = f"debugpy's adapter sent something that is not DAP: {exc}"
            log.warning("%s", reason)
        except OSError as exc:
            reason = f"the connection to debugpy's adapter broke: {exc}"
        self.close(reason)

    def _dispatch(self, message: DapMessage) -> None:
        kind = message.get("type")
        if kind == "event":
            try:
                self._on_event(message)
            except Exception:  # a bug in event handling must not end the link
                log.exception("error handling the debug event %r", message.get("event"))
        elif kind == "response":
            seq = message.get("request_seq")
            future = self._pending.get(seq) if isinstance(seq, int) else None
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "request" and self._writer is not None:
            # A reverse request (runInTerminal, startDebugging): refused, so it does not wait.
            command = message.get("command")
            log.warning("refusing the reverse request %r from debugpy's adapter", command)
            self._writer.write(
                encode_dap(
                    {
                        "type": "response",
                        "seq": next(self._seq),
                        "request_seq": message.get("seq"),
                        "success": False,
                        "command": command,
                        "message": "the kernel does not run reverse requests",
                    }
                )
            )
