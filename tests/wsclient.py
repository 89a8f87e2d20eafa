"""A kernel WebSocket client for tests, speaking either framing, for any server
(a ``kernelyard serve`` process or one in the test's process).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from kernelyard.wire import (
    V1_SUBPROTOCOL,
    Channel,
    Message,
    MessageFactory,
    from_legacy,
    from_v1,
    to_legacy,
    to_v1,
)


class Endpoint(Protocol):
    """Where a server listens, and its token."""

    @property
    def ws_url(self) -> str: ...

    @property
    def token(self) -> str: ...


def _now() -> datetime:
    return datetime.now(UTC)


class KernelSocket:
    """A kernel WebSocket client speaking either framing."""

    def __init__(self, ws: ClientConnection, session: str) -> None:
        self.ws = ws
        self.session = session
        self.factory = MessageFactory(session=session, clock=_now)
        self.v1 = ws.subprotocol == V1_SUBPROTOCOL

    def message(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        *,
        channel: Channel = Channel.SHELL,
    ) -> Message:
        return self.factory.message(msg_type, content or {}, channel=channel)

    async def send(self, msg: Message) -> None:
        await self.ws.send(to_v1(msg) if self.v1 else to_legacy(msg))

    async def receive(self) -> Message:
        data = await self.ws.recv()
        if self.v1:
            assert isinstance(data, bytes)
            return from_v1(data)
        return from_legacy(data)

    async def execute(self, code: str, **content: Any) -> tuple[Message, list[Message]]:
        """Run ``code``; returns the reply and the IOPub messages of the request."""
        msg = self.message("execute_request", {"code": code, "silent": False, **content})
        await self.send(msg)
        outputs: list[Message] = []
        reply: Message | None = None
        idle = False
        while reply is None or not idle:
            got = await self.receive()
            if got.parent_header.get("msg_id") != msg.msg_id:
                continue
            if got.channel is Channel.SHELL:
                reply = got
            elif got.msg_type == "status" and got.content["execution_state"] == "idle":
                idle = True
            elif got.channel is Channel.IOPUB:
                outputs.append(got)
        return reply, outputs


@asynccontextmanager
async def kernel_socket(
    server: Endpoint,
    kernel_id: str,
    *,
    session: str | None = None,
    v1: bool = False,
    query: str = "",
    subprotocols: Sequence[str] | None = None,
) -> AsyncIterator[KernelSocket]:
    session = session or uuid.uuid4().hex
    url = (
        f"{server.ws_url}api/kernels/{kernel_id}/channels?session_id={session}"
        f"&token={server.token}{query}"
    )
    offered = list(subprotocols) if subprotocols is not None else ([V1_SUBPROTOCOL] if v1 else [])
    async with websockets.connect(
        url,
        subprotocols=offered or None,
        max_size=None,  # type: ignore[arg-type]
        # Unbounded: with unread messages queued (other clients' IOPub) the client would
        # stop reading and wait out close_timeout (10 s) in the closing handshake.
        max_queue=None,
    ) as ws:
        yield KernelSocket(ws, session)


def stream_text(outputs: list[Message], name: str = "stdout") -> str:
    return "".join(
        m.content["text"] for m in outputs if m.msg_type == "stream" and m.content["name"] == name
    )


async def start_kernel(
    http: httpx.AsyncClient, name: str | None = None, *, settle: bool = True
) -> dict[str, Any]:
    """Start a kernel over REST; its model once the start ended (kernelyard's POST
    answers while it starts), ``execution_state`` "dead" with the ``reason`` if it
    failed. ``settle=False``: the POST's own answer (jupyter_server's says
    "starting" until a client connects).
    """
    body = {"name": name} if name else {}
    with anyio.fail_after(60):
        response = await http.post("api/kernels", json=body)
        assert response.status_code == 201, response.text
        model: dict[str, Any] = response.json()
        if not settle:
            return model
        assert model["execution_state"] == "starting", model
        return await settled_model(http, model["id"])


async def settled_model(http: httpx.AsyncClient, kernel_id: str) -> dict[str, Any]:
    """The kernel's model once it is no longer starting (polled every 10 ms)."""
    while True:
        response = await http.get(f"api/kernels/{kernel_id}")
        assert response.status_code == 200, response.text
        model: dict[str, Any] = response.json()
        if model["execution_state"] != "starting":
            return model
        await anyio.sleep(0.01)


#: JSON text frames a v1 client might send by mistake: a field missing, wrong types.
MALFORMED_TEXT_FRAMES = (
    '{"channel": "shell", "header": {"msg_id": "m"}, "content": {}}',
    '{"channel": "shell", "header": {"msg_id": 1, "msg_type": []}, "content": 5}',
    '{"header": "not an object"}',
)


@dataclass(frozen=True)
class Handshakes:
    """What :func:`close_handshakes_under_load` saw."""

    answered: int  # connections whose closing handshake the server completed
    unanswered: list[str]  # how each of the others ended
    slowest_close: float  # seconds, from the client's close to the end
    busy_replies: int  # execute replies the busy client got meanwhile


async def close_handshakes_under_load(
    server: Endpoint, kernel_id: str, *, connections: int = 50, concurrency: int = 10
) -> Handshakes:
    """While one client executes ``1+1`` every 20 ms, ``connections`` v1 clients each
    send one malformed JSON text frame, wait 0.2 s and close. Every close must be
    answered (a close frame received, not 1006 after the client's close timeout).

    The clients read everything (``max_queue=None``): websockets' default of 16
    stops reading once 16 frames wait, and the server's close frame then sits
    unread behind other clients' IOPub, which looks like an unanswered close
    but is the client's own doing.
    """
    base = f"{server.ws_url}api/kernels/{kernel_id}/channels?token={server.token}"
    answered, unanswered, slowest = 0, [], 0.0
    busy_replies = 0
    limiter = anyio.CapacityLimiter(concurrency)

    async def busy(stop: anyio.Event) -> None:
        nonlocal busy_replies
        async with kernel_socket(server, kernel_id) as ws:
            while not stop.is_set():
                reply, _ = await ws.execute("1+1")
                assert reply.content["status"] == "ok"
                busy_replies += 1
                await anyio.sleep(0.02)

    async def one(index: int) -> None:
        nonlocal answered, slowest
        async with limiter:
            ws = await websockets.connect(
                f"{base}&session_id=handshake-{index}",
                subprotocols=[V1_SUBPROTOCOL],  # type: ignore[list-item]
                max_queue=None,
                close_timeout=3,
            )
            await ws.send(MALFORMED_TEXT_FRAMES[index % len(MALFORMED_TEXT_FRAMES)])
            await anyio.sleep(0.2)
            started = time.monotonic()
            await ws.close()
            slowest = max(slowest, time.monotonic() - started)
            if ws.protocol.close_rcvd is not None:
                answered += 1
            else:
                unanswered.append(f"{index}: {ws.close_code} {ws.close_reason!r}")

    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(busy, stop)
        await anyio.sleep(0.1)
        async with anyio.create_task_group() as clients:
            for index in range(connections):
                clients.start_soon(one, index)
        stop.set()
    return Handshakes(answered, unanswered, slowest, busy_replies)
