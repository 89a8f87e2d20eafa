"""UpstreamSocket against real WebSocket servers (websockets' asyncio server, and raw
TCP servers that misbehave): messages whole and in order, fragments, pings both ways,
closing handshakes, refusals and timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.http11 import Request, Response

from kernelyard.gateway.upstream import UpstreamSocket

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

Handler = Callable[[ServerConnection], Any]


@asynccontextmanager
async def ws_server(handler: Handler, **options: Any) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, **options) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/api/kernels/k/channels?session_id=s"


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@asynccontextmanager
async def raw_server(on_connect: RawHandler) -> AsyncIterator[str]:
    """A TCP server that runs ``on_connect`` for each connection, then holds it open
    (reading and answering nothing) until the server stops.
    """
    writers: list[asyncio.StreamWriter] = []
    stopping = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await on_connect(reader, writer)
        await stopping.wait()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/channels"
    finally:
        stopping.set()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def open_socket(url: str, got: list[bytes | str], **options: Any) -> UpstreamSocket:
    settings: dict[str, Any] = {
        "headers": {"Authorization": "token t"},
        "subprotocols": ["v1.kernel.websocket.jupyter.org"],
        "on_message": got.append,
        "ssl": None,
        "open_timeout": 5,
        "max_size": 1 << 20,
        "ping_interval": None,
        "ping_timeout": 5,
    }
    settings.update(options)
    return await UpstreamSocket.open(url, **settings)


async def wait_for(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.01)


async def test_messages_arrive_whole_and_in_order_with_headers_and_subprotocol() -> None:
    seen: dict[str, Any] = {}

    async def echo(ws: ServerConnection) -> None:
        seen["auth"] = ws.request.headers["Authorization"] if ws.request else None
        async for message in ws:
            await ws.send(message)

    got: list[bytes | str] = []
    async with ws_server(echo, subprotocols=["v1.kernel.websocket.jupyter.org"]) as url:
        upstream = await open_socket(url, got)
        assert upstream.subprotocol == "v1.kernel.websocket.jupyter.org"
        assert upstream.response is not None
        assert upstream.response.status_code == 101
        sent: list[bytes | str] = [b"\x00binary", "text \u00e9", b"x" * 200_000]
        for message in sent:
            assert await upstream.send(message)
        await wait_for(lambda: len(got) == 3)
        assert got == sent
        assert seen["auth"] == "token t"
        await upstream.close()
        assert upstream.close_code == 1000
        assert not await upstream.send(b"after close")


async def test_a_fragmented_message_is_delivered_once_whole() -> None:
    async def fragments(ws: ServerConnection) -> None:
        await ws.send([b"one-", b"two-", b"three"])
        await ws.send(["a", "b"])
        await ws.wait_closed()

    got: list[bytes | str] = []
    async with ws_server(fragments) as url:
        upstream = await open_socket(url, got)
        await wait_for(lambda: len(got) == 2)
        assert got == [b"one-two-three", "ab"]
        await upstream.close()


async def test_the_servers_pings_are_answered() -> None:
    async def idle(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ws_server(idle, ping_interval=0.1, ping_timeout=0.3) as url:
        upstream = await open_socket(url, [])
        await anyio.sleep(1.0)  # ten pings: unanswered ones would have closed it
        assert upstream.close_code is None
        await upstream.close()
        assert upstream.close_code == 1000


async def test_our_pings_keep_a_live_connection_open() -> None:
    async def idle(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ws_server(idle, ping_interval=None) as url:
        upstream = await open_socket(url, [], ping_interval=0.1, ping_timeout=0.5)
        with anyio.move_on_after(1.0):
            await upstream.wait_closed()
        assert upstream.close_code is None
        assert await upstream.send(b"still open")
        await upstream.close()


async def test_a_server_that_stops_answering_pings_counts_as_cut() -> None:
    async def silent_after_handshake(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + _accept(key) + b"\r\n\r\n"
        )

    async with raw_server(silent_after_handshake) as url:
        upstream = await open_socket(url, [], ping_interval=0.1, ping_timeout=0.3)
        with anyio.fail_after(3):
            await upstream.wait_closed()
        assert upstream.close_code == 1006  # cut, not closed


async def test_the_servers_close_code_is_kept() -> None:
    async def close_4001(ws: ServerConnection) -> None:
        await ws.close(4001, "go away")

    async with ws_server(close_4001) as url:
        upstream = await open_socket(url, [])
        with anyio.fail_after(3):
            await upstream.wait_closed()
        assert upstream.close_code == 4001


async def test_a_refusal_raises_invalid_status_with_the_body() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "no such token\n")

    async def never(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    async with ws_server(never, process_request=refuse) as url:
        with pytest.raises(InvalidStatus) as info:
            await open_socket(url, [])
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"no such token\n"


async def test_a_server_that_never_answers_the_handshake_times_out() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    async with raw_server(mute) as url:
        with pytest.raises(TimeoutError):
            await open_socket(url, [], open_timeout=0.3)


async def test_a_connection_closed_during_the_handshake_is_invalid() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with raw_server(hang_up) as url:
        with pytest.raises(InvalidMessage, match="did not receive a valid HTTP response"):
            await open_socket(url, [])


async def test_a_failing_consumer_is_logged_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def two(ws: ServerConnection) -> None:
        await ws.send(b"first")
        await ws.send(b"second")
        await ws.wait_closed()

    got: list[bytes | str] = []

    def consumer(message: bytes | str) -> None:
        if message == b"first":
            raise ValueError("the consumer's bug")
        got.append(message)

    caplog.set_level(logging.ERROR, "kernelyard.gateway.upstream")
    async with ws_server(two) as url:
        upstream = await open_socket(url, [], on_message=consumer)
        await wait_for(lambda: got == [b"second"])
        assert "the consumer's bug" in caplog.text
        await upstream.close()


def _accept(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept of ``key`` (RFC 6455 section 4.2.2)."""
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key + guid).digest())


async def test_sends_wait_while_the_server_reads_nothing_then_all_arrive() -> None:
    received: list[int] = []
    reading = asyncio.Event()

    async def slow_reader(ws: ServerConnection) -> None:
        await reading.wait()
        async for message in ws:
            received.append(len(message))

    async with ws_server(slow_reader, max_size=None) as url:
        upstream = await open_socket(url, [])
        chunk = b"x" * (1 << 20)

        async def send_all() -> None:
            for _ in range(40):  # 40 MiB: far more than the socket buffers hold
                assert await upstream.send(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_all)
            await wait_for(lambda: upstream.paused)
            reading.set()
        await wait_for(lambda: len(received) == 40)
        assert set(received) == {1 << 20}
        await upstream.close()
