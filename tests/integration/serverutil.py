"""A real ``kernelyard serve`` process and a small kernel WebSocket client for tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

TOKEN = "test-token"


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT/
    process: subprocess.Popen[str]
    token: str = TOKEN
    log: deque[str] = field(default_factory=lambda: deque(maxlen=500))  # its stderr, last lines

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=60
        )


def server_env(home: Path) -> dict[str, str]:
    """An environment whose Jupyter paths are private to the test."""
    env = dict(os.environ)
    env.update(
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    env.pop("JUPYTER_TOKEN", None)
    return env


@contextmanager
def running_server(home: Path, *args: str, token: str | None = TOKEN) -> Iterator[Server]:
    """Start ``kernelyard serve`` on a random port; stop it (SIGTERM) and check it exits."""
    argv = [sys.executable, "-m", "kernelyard", "serve", "--port", "0", "--root-dir", str(home)]
    argv += ["--token", token] if token is not None else ["--no-token"]
    process = subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(home),
    )
    log: deque[str] = deque(maxlen=500)
    # Read its stderr all along: kernels write there too, and a full pipe would
    # block the server's event loop on its next log line.
    drain = threading.Thread(target=log.extend, args=(process.stderr,), daemon=True)
    drain.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if match is None:
            process.kill()
            process.wait()
            drain.join(5)
            raise AssertionError(f"the server did not start: {line!r} {''.join(log)[-2000:]}")
        yield Server(match.group(1), process, token or "", log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError("the server did not stop within 30 s of SIGTERM") from None
        drain.join(5)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()


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
    server: Server,
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


async def start_kernel(http: httpx.AsyncClient, name: str | None = None) -> dict[str, Any]:
    body = {"name": name} if name else {}
    with anyio.fail_after(60):
        response = await http.post("api/kernels", json=body)
    assert response.status_code == 201, response.text
    model: dict[str, Any] = response.json()
    return model
