"""``kernelyard serve`` under load: floods, pacing, many clients, a restart onto new ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kernelyard.wire import Channel, Message

from ..wsclient import close_handshakes_under_load
from .serverutil import Server, kernel_socket, running_server, start_kernel, stream_text

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-load")


@pytest.fixture(scope="module")
def unpaced(home: Path) -> Iterator[Server]:
    """A server without IOPub pacing, so a client reads as fast as it can."""
    with running_server(home, "--no-limit-rate") as server:
        yield server


async def _delete(server: Server, kernel_id: str) -> None:
    async with server.http() as http:
        response = await http.delete(f"api/kernels/{kernel_id}")
    assert response.status_code == 204


async def test_a_kernel_flooding_faster_than_the_client_reads_loses_nothing(
    unpaced: Server,
) -> None:
    """30,000 display messages (none can merge) published while the client does not read."""
    count = 30_000
    async with unpaced.http() as http:
        kid = (await start_kernel(http))["id"]
    code = f"from IPython.display import display\nfor i in range({count}):\n    display(i)"
    async with kernel_socket(unpaced, kid) as ws:
        request = ws.message("execute_request", {"code": code, "silent": False})
        await ws.send(request)
        await anyio.sleep(3)  # the kernel runs ahead; the server must hold everything
        shown: list[str] = []
        with anyio.fail_after(120):
            while True:
                msg = await ws.receive()
                if msg.parent_header.get("msg_id") != request.msg_id:
                    continue
                if msg.msg_type == "display_data":
                    shown.append(msg.content["data"]["text/plain"])
                elif msg.msg_type == "status" and msg.content["execution_state"] == "idle":
                    break
    assert shown == [str(i) for i in range(count)]
    await _delete(unpaced, kid)


async def test_many_clients_on_one_kernel_under_load(unpaced: Server) -> None:
    """Ten clients execute at once: each gets its own replies, and all of everybody's output."""
    clients, executes = 10, 30
    async with unpaced.http() as http:
        kid = (await start_kernel(http))["id"]
    replies: dict[int, list[Message]] = {}
    lines: dict[int, list[str]] = {}
    connected = anyio.Event()
    ready = 0

    async def client(n: int) -> None:
        nonlocal ready
        async with kernel_socket(unpaced, kid) as ws:
            ready += 1
            if ready == clients:
                connected.set()
            await connected.wait()
            mine = [
                ws.message("execute_request", {"code": f"print('c{n}-{i}')", "silent": False})
                for i in range(executes)
            ]
            for msg in mine:
                await ws.send(msg)
            ids = {m.msg_id for m in mine}
            got, seen = replies.setdefault(n, []), lines.setdefault(n, [])
            idle: set[str] = set()
            # Until every reply, every line of everybody, and the idle after each own request
            # (which may come after the last reply).
            while len(got) < executes or len(seen) < clients * executes or not ids <= idle:
                msg = await ws.receive()
                if msg.channel is Channel.SHELL:
                    assert msg.parent_header["msg_id"] in ids, "a reply reached the wrong client"
                    got.append(msg)
                elif msg.msg_type == "stream":
                    seen.extend(msg.content["text"].split())
                elif msg.msg_type == "status" and msg.content["execution_state"] == "idle":
                    idle.add(msg.parent_header.get("msg_id", ""))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for n in range(clients):
                tg.start_soon(client, n)
    everything = sorted(f"c{n}-{i}" for n in range(clients) for i in range(executes))
    for n in range(clients):
        assert [r.content["status"] for r in replies[n]] == ["ok"] * executes
        assert sorted(lines[n]) == everything
        # One client's requests run in the order it sent them.
        own = [line for line in lines[n] if line.startswith(f"c{n}-")]
        assert own == [f"c{n}-{i}" for i in range(executes)]
    await _delete(unpaced, kid)


async def test_pacing_holds_output_back_and_loses_none(home: Path) -> None:
    """At 100 messages/s, 3,000 ipykernel prints arrive merged and complete, with one notice."""
    args = ["--iopub-msg-rate-limit", "100", "--rate-limit-window", "1"]
    with running_server(home, *args) as server:
        async with server.http() as http:
            kid = (await start_kernel(http, "python3"))["id"]
        code = "for i in range(3000):\n    print(i, flush=True)"
        async with kernel_socket(server, kid) as ws:
            request = ws.message("execute_request", {"code": code, "silent": False})
            await ws.send(request)
            chunks: list[str] = []
            notices: list[str] = []
            with anyio.fail_after(90):
                while True:
                    msg = await ws.receive()
                    if msg.msg_type == "stream" and not msg.parent_header:
                        notices.append(msg.content["text"])
                    elif msg.parent_header.get("msg_id") != request.msg_id:
                        continue
                    elif msg.msg_type == "stream":
                        chunks.append(msg.content["text"])
                    elif msg.msg_type == "status" and msg.content["execution_state"] == "idle":
                        break
                _, after = await ws.execute("print('after')")
        await _delete(server, kid)
    assert "".join(chunks).split() == [str(i) for i in range(3000)]
    assert len(chunks) < 1500  # held back and merged, not 3,000 messages at 100/s
    assert len(notices) == 1
    assert "rate limit" in notices[0]
    assert stream_text(after) == "after\n"  # the next request starts afresh


def _shell_port(home: Path, kernel_id: str) -> int:
    info = json.loads((home / "runtime" / f"kernel-{kernel_id}.json").read_text())
    return int(info["shell_port"])


def _take_port(port: int) -> socket.socket:
    """Bind and listen on ``port`` as soon as it is free (the kernel just died)."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


async def test_a_restart_onto_new_ports_keeps_the_connected_client(
    unpaced: Server, home: Path
) -> None:
    """The kernel dies and its port is taken: the restarter moves it; the same socket works."""
    async with unpaced.http() as http:
        kid = (await start_kernel(http))["id"]
    old_port = _shell_port(home, kid)
    async with kernel_socket(unpaced, kid, session=uuid.uuid4().hex) as ws:
        _, outputs = await ws.execute("import os; print(os.getpid())")
        pid = int(stream_text(outputs))
        os.kill(pid, signal.SIGKILL)
        thief: socket.socket | None = None
        with anyio.fail_after(10):
            while thief is None:
                try:
                    thief = _take_port(old_port)
                except OSError:
                    await anyio.sleep(0.001)
        try:
            with anyio.fail_after(60):
                reply, outputs = await ws.execute("print('moved')")
            assert reply.content["status"] == "ok"
            assert stream_text(outputs) == "moved\n"
            assert _shell_port(home, kid) != old_port
        finally:
            thief.close()
    await _delete(unpaced, kid)


async def test_every_close_is_answered_while_our_kernel_is_busy(unpaced: Server) -> None:
    """Clients that send a malformed frame and close, next to a busy one (see
    :func:`~tests.wsclient.close_handshakes_under_load`; tests/server runs it on the fake).
    """
    async with unpaced.http() as http:
        kid = (await start_kernel(http))["id"]
    seen = await close_handshakes_under_load(unpaced, kid, connections=100)
    assert seen.unanswered == []
    assert seen.answered == 100
    assert seen.slowest_close < 1.0
    assert seen.busy_replies >= 5
    await _delete(unpaced, kid)
