"""DapLink against a scripted DAP peer on a real local TCP socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kernelyard.errors import DebuggerError
from kernelyard.kernel.dap import DapDecoder, encode_dap
from kernelyard.kernel.dap_link import DapLink

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Incoming:
    """What the link sends the peer, a message at a time, however it was chunked."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._decoder = DapDecoder()
        self._backlog: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        while not self._backlog:
            data = await self._reader.read(1 << 16)
            assert data, "the link closed the connection"
            self._backlog += self._decoder.feed(data)
        return self._backlog.pop(0)


@asynccontextmanager
async def peer(script: Peer) -> AsyncIterator[tuple[str, int]]:
    """A DAP peer running ``script`` for the one connection it accepts."""

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        yield host, port


async def test_requests_carry_the_links_seq_and_answers_the_callers() -> None:
    seen: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    async def adapter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        incoming = Incoming(reader)
        for _ in range(2):
            request = await incoming.next()
            seen.append(request)
            writer.write(encode_dap({"type": "event", "event": "output", "body": {}}))
            writer.write(
                encode_dap(
                    {
                        "type": "response",
                        "seq": 100,
                        "request_seq": request["seq"],
                        "success": True,
                        "command": request["command"],
                    }
                )
            )
        await reader.read()

    async with peer(adapter) as address:
        link = DapLink(events.append)
        await link.connect(*address)
        assert link.connected
        first = await link.request({"type": "request", "seq": 7, "command": "threads"})
        second = await link.request({"type": "request", "seq": 7, "command": "threads"})
        link.close()
    assert [r["seq"] for r in seen] == [1, 2]  # the link's own numbers on the wire
    assert first["request_seq"] == second["request_seq"] == 7  # the caller's back
    assert [e["event"] for e in events] == ["output", "output"]


async def test_an_adapter_that_does_not_answer_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with peer(silent) as address:
        link = DapLink(lambda event: None, timeout=0.2)
        await link.connect(*address)
        with pytest.raises(DebuggerError, match="did not answer 'evaluate'"):
            await link.request({"type": "request", "seq": 1, "command": "evaluate"})
        link.close()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [(b"", "closed the connection"), (b"Content-Length: x\r\n\r\n", "not DAP")],
)
async def test_a_broken_adapter_fails_what_is_pending(reply: bytes, reason: str) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Incoming(reader).next()
        writer.write(reply)

    async with peer(broken) as address:
        link = DapLink(lambda event: None)
        await link.connect(*address)
        with pytest.raises(DebuggerError, match=reason):
            await link.request({"type": "request", "seq": 1, "command": "stackTrace"})
        assert not link.connected
        with pytest.raises(DebuggerError, match="not started"):
            await link.request({"type": "request", "seq": 2, "command": "stackTrace"})


async def test_reverse_requests_are_refused_and_event_errors_do_not_end_the_link() -> None:
    answers: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def adapter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        incoming = Incoming(reader)
        writer.write(encode_dap({"type": "event", "event": "boom"}))
        writer.write(encode_dap({"type": "request", "seq": 5, "command": "runInTerminal"}))
        answers.append(await incoming.next())
        answered.set()
        request = await incoming.next()
        writer.write(
            encode_dap({"type": "response", "request_seq": request["seq"], "success": True})
        )
        await reader.read()

    def explode(event: dict[str, Any]) -> None:
        raise RuntimeError("a bug in event handling")

    async with peer(adapter) as address:
        link = DapLink(explode)
        await link.connect(*address)
        await answered.wait()  # the refusal went out, and the link still serves
        response = await link.request({"type": "request", "seq": 1, "command": "threads"})
        link.close()
    assert response["success"] is True
    assert answers[0]["request_seq"] == 5
    assert answers[0]["success"] is False


async def test_an_unreachable_adapter_is_a_debugger_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        link = DapLink(lambda event: None)
        with pytest.raises(DebuggerError, match="cannot reach"):
            await link.connect("127.0.0.1", port)
    assert not link.connected
