"""Output through the server, in process on a FakeBackend: rate limits (paced, never
dropped), the replay log's bounds and its notice, stream merging, traceback scrubbing.
"""

from __future__ import annotations

import anyio
import pytest

from kernelyard.wire import Message

from ..wsclient import KernelSocket, kernel_socket, stream_text
from .conftest import Served, serving
from .test_channels import first_output, output_and_reply

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


async def idle(served: Served, kid: str) -> None:
    """Wait until the kernel is idle again, as the REST model shows it."""
    async with served.http() as http:
        with anyio.fail_after(5):
            while (await http.get(f"api/kernels/{kid}")).json()["execution_state"] != "idle":
                await anyio.sleep(0.01)


async def everything(ws: KernelSocket, code: str) -> tuple[Message, list[Message]]:
    """Run ``code``; its reply and every IOPub message until its idle, the server's
    own notices (which answer no request) included.
    """
    request = ws.message("execute_request", {"code": code})
    await ws.send(request)
    reply, seen = None, []
    with anyio.fail_after(5):
        while reply is None or seen[-1].content != {"execution_state": "idle"}:
            msg = await ws.receive()
            if msg.msg_type == "execute_reply":
                reply = msg
            else:
                seen.append(msg)
    return reply, seen


async def test_rate_limits_pace_output_and_lose_none_of_it() -> None:
    knobs = {"iopub_msg_rate_limit": 20.0, "rate_limit_window": 0.5}
    async with serving(**knobs) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            reply, outputs = await everything(
                ws, "for i in range(60):\n    print(i)\n    sleep(0.005)"
            )
    assert reply.content["status"] == "ok"
    assert [int(n) for n in stream_text(outputs).split()] == list(range(60))
    notices = stream_text(outputs, "stderr")
    assert "IOPub rate limit reached" in notices
    assert notices.count("rate limit") == 1  # said once per request
    assert len([m for m in outputs if m.msg_type == "stream"]) < 60  # held back and merged


async def test_the_data_rate_limit_paces_large_output_too() -> None:
    knobs = {"iopub_data_rate_limit": 20_000.0, "rate_limit_window": 0.2}
    async with serving(**knobs) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            reply, outputs = await everything(
                ws, "for i in range(8):\n    print(str(i) * 2000)\n    sleep(0.01)"
            )
    assert reply.content["status"] == "ok"
    assert stream_text(outputs).split() == [str(i) * 2000 for i in range(8)]
    assert "rate limit reached" in stream_text(outputs, "stderr")


async def test_without_rate_limits_nothing_is_held_back() -> None:
    async with serving(limit_rate=False) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            _, outputs = await ws.execute("for i in range(200):\n    print(i)")
    assert [int(n) for n in stream_text(outputs).split()] == list(range(200))
    assert stream_text(outputs, "stderr") == ""


async def test_a_reader_that_fell_behind_the_log_is_told_what_it_lost() -> None:
    async with serving(replay_max_messages=10) as served:
        kid = await served.start()
        code = "print('start')\nsleep(0.05)\nfor i in range(30):\n    display(i)"
        async with kernel_socket(served, kid, session="s") as ws:
            request = await first_output(ws, code)
        await idle(served, kid)  # everything was sent while nobody listened
        async with kernel_socket(served, kid, session="s") as ws:
            got = []
            while not got or got[-1].msg_type != "execute_reply":
                got.append(await ws.receive())
    assert "earlier messages were dropped" in stream_text(got, "stderr")
    shown = [m.content["data"]["text/plain"] for m in got if m.msg_type == "display_data"]
    assert shown == [str(i) for i in range(30 - len(shown), 30)]  # the newest are kept
    assert got[-1].parent_header["msg_id"] == request.msg_id


async def test_a_flood_nobody_reads_is_merged_not_lost() -> None:
    async with serving(replay_max_messages=50, limit_rate=False) as served:
        kid = await served.start()
        async with kernel_socket(served, kid, session="s") as ws:
            request = await first_output(
                ws, "print('a')\nsleep(0.05)\nfor i in range(500):\n    print(i)"
            )
        await idle(served, kid)
        async with kernel_socket(served, kid, session="s") as ws:
            text, reply = await output_and_reply(ws, request)
    assert reply.content["status"] == "ok"
    assert [int(n) for n in text.split()] == list(range(500))


async def test_tracebacks_can_be_kept_from_clients() -> None:
    async with serving(allow_tracebacks=False) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            reply, outputs = await ws.execute("secret = 'hunter2'\nraise ValueError(secret)")
        error = next(m for m in outputs if m.msg_type == "error")
        for content in (reply.content, error.content):
            assert (content["ename"], content["evalue"]) == ("ExecutionError", "Execution error")
            assert "hunter2" not in str(content)
            assert "not shown due to security reasons" in content["traceback"][0]


async def test_tracebacks_reach_clients_by_default() -> None:
    async with serving() as served:
        kid = await served.start()
        async with kernel_socket(served, kid, v1=True) as ws:
            reply, outputs = await ws.execute("raise ValueError('shown')")
    assert (reply.content["ename"], reply.content["evalue"]) == ("ValueError", "shown")
    error = next(m for m in outputs if m.msg_type == "error")
    assert any("ValueError: shown" in line for line in error.content["traceback"])
