"""The kernel WebSocket, in process on a FakeBackend: framings, routing, replay, close codes."""

from __future__ import annotations

import uuid

import anyio
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from kernelyard.wire import V1_SUBPROTOCOL, Channel, Message, pack_v1

from ..wsclient import KernelSocket, kernel_socket, stream_text
from .conftest import Served, serving

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

COUNT_SLOWLY = "for i in range(30):\n    print(i)\n    sleep(0.01)"


async def until_closed(ws: KernelSocket) -> tuple[list[Message], ConnectionClosed]:
    """What a socket receives until the server closes it, and how it closed."""
    got: list[Message] = []
    with anyio.fail_after(5):
        while True:
            try:
                got.append(await ws.receive())
            except ConnectionClosed as closed:
                return got, closed


def close_code(closed: ConnectionClosed) -> tuple[int, str]:
    assert closed.rcvd is not None, "the server sent no close frame"
    return closed.rcvd.code, closed.rcvd.reason


async def first_output(ws: KernelSocket, code: str) -> Message:
    """Send an execute of ``code``; return its request once its first stream came."""
    request = ws.message("execute_request", {"code": code})
    await ws.send(request)
    with anyio.fail_after(5):
        while (await ws.receive()).msg_type != "stream":
            pass
    return request


async def output_and_reply(ws: KernelSocket, request: Message) -> tuple[str, Message]:
    text, reply = "", None
    with anyio.fail_after(5):
        while reply is None:
            msg = await ws.receive()
            if msg.parent_header.get("msg_id") != request.msg_id:
                continue
            if msg.msg_type == "stream":
                text += msg.content["text"]
            elif msg.msg_type == "execute_reply":
                reply = msg
    return text, reply


@pytest.mark.parametrize("v1", [False, True], ids=["legacy", "v1"])
async def test_execute_in_both_framings(served: Served, v1: bool) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid, v1=v1) as ws:
        assert (ws.ws.subprotocol == V1_SUBPROTOCOL) is v1
        reply, outputs = await ws.execute("print('hello'); 6 * 7")
    assert reply.content["status"] == "ok"
    assert stream_text(outputs) == "hello\n"
    result = next(m for m in outputs if m.msg_type == "execute_result")
    assert result.content["data"] == {"text/plain": "42"}
    assert set(reply.header) >= {"msg_id", "msg_type", "session", "username", "date", "version"}


async def test_the_server_can_be_made_to_speak_legacy_only() -> None:
    async with serving(kernel_ws_protocol="") as served:
        kid = await served.start()
        async with kernel_socket(served, kid, v1=True) as ws:
            assert ws.ws.subprotocol is None
            reply, _ = await ws.execute("1")
        assert reply.content["status"] == "ok"


async def test_replies_go_to_the_sender_and_iopub_to_all(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as a, kernel_socket(served, kid, v1=True) as b:
        reply, _ = await a.execute("print('from a')")
        seen_by_b: list[Message] = []
        with anyio.fail_after(5):
            while not seen_by_b or seen_by_b[-1].content.get("execution_state") != "idle":
                msg = await b.receive()
                assert msg.channel is Channel.IOPUB, "b got a reply meant for a"
                seen_by_b.append(msg)
    assert stream_text(seen_by_b) == "from a\n"
    assert all(m.parent_header["msg_id"] == reply.parent_header["msg_id"] for m in seen_by_b)


async def test_input_requests_go_to_the_session_that_asked(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as asker, kernel_socket(served, kid) as other:
        request = asker.message("execute_request", {"code": "print(input('name? ') * 2)"})
        await asker.send(request)
        with anyio.fail_after(5):
            while (asked := await asker.receive()).channel is not Channel.STDIN:
                pass
        assert asked.content["prompt"] == "name? "
        await asker.send(asker.message("input_reply", {"value": "ab"}, channel=Channel.STDIN))
        text, reply = await output_and_reply(asker, request)
        assert (text, reply.content["status"]) == ("abab\n", "ok")
        with anyio.fail_after(5):
            while (msg := await other.receive()).msg_type != "stream":
                assert msg.channel is Channel.IOPUB
        assert msg.content["text"] == "abab\n"


async def test_a_reconnect_with_the_same_session_loses_nothing(served: Served) -> None:
    kid = await served.start()
    session = uuid.uuid4().hex
    async with kernel_socket(served, kid, session=session) as ws:
        request = await first_output(ws, COUNT_SLOWLY)
    await anyio.sleep(0.1)  # the cell goes on printing while nobody listens
    async with kernel_socket(served, kid, session=session) as ws:
        text, reply = await output_and_reply(ws, request)
    assert reply.content["status"] == "ok"
    assert [int(n) for n in text.split()] == list(range(1, 30))  # all after the first


async def test_resume_after_sends_again_what_a_cut_lost_in_flight(served: Served) -> None:
    """Messages written to a connection but lost with it (the client never read them)
    come again when the client reconnects saying which message it got last.
    """
    kid = await served.start()
    session = uuid.uuid4().hex
    async with kernel_socket(served, kid, session=session) as ws:
        code = "for i in range(5):\n    print(i)\n    sleep(0.01)"  # apart: no merged chunks
        request = ws.message("execute_request", {"code": code})
        await ws.send(request)
        got = [await ws.receive() for _ in range(3)]  # status busy, execute_input, stream 0
        _, rest = await ws.execute("1")  # the cell's output was written (then "lost")
        assert rest
    assert got[-1].msg_type == "stream"
    resume = f"&resume_after={got[-1].msg_id}"
    async with kernel_socket(served, kid, session=session, query=resume) as ws:
        text, reply = await output_and_reply(ws, request)
    assert reply.content["status"] == "ok"
    assert text == "1\n2\n3\n4\n"  # after the one it got last: no loss, no repeat
    async with kernel_socket(served, kid, session=session, query="&resume_after=unknown") as ws:
        request = ws.message("kernel_info_request", {})
        await ws.send(request)
        first = await ws.receive()  # an unknown id: it goes on from its cursor, nothing again
    assert first.parent_header["msg_id"] == request.msg_id


async def test_a_stale_connection_is_replaced_by_the_sessions_new_one(served: Served) -> None:
    kid = await served.start()
    session = uuid.uuid4().hex
    async with kernel_socket(served, kid, session=session) as stale:
        request = await first_output(stale, COUNT_SLOWLY)
        async with kernel_socket(served, kid, session=session) as fresh:
            _, closed = await until_closed(stale)
            assert close_code(closed) == (4002, "replaced by a newer connection of this session")
            text, reply = await output_and_reply(fresh, request)
            assert reply.content["status"] == "ok"
            assert text.split()[-1] == "29"
            async with served.http() as http:
                assert (await http.get(f"api/kernels/{kid}")).json()["connections"] == 1


async def test_a_new_session_can_ask_for_the_whole_log(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as ws:
        await ws.execute("print('logged line')")
    async with kernel_socket(served, kid, query="&replay=all") as fresh:
        with anyio.fail_after(5):
            while (msg := await fresh.receive()).msg_type != "stream":
                pass
    assert msg.content["text"] == "logged line\n"
    async with kernel_socket(served, kid) as late:  # without replay=all: only what is new
        request = late.message("execute_request", {"code": "print('new')"})
        await late.send(request)
        first = await late.receive()
    assert first.parent_header["msg_id"] == request.msg_id


@pytest.mark.parametrize(
    ("frame", "v1", "code"),
    [
        ("{not json", False, 1007),
        (b"\x01\x02", True, 1007),
        ('{"channel": "shell", "header": {"msg_type": 5}, "content": {}}', False, 1007),
        (
            '{"channel": "iopub", "header": {"msg_id": "1", "msg_type": "x", "session": "s", '
            '"username": "u", "date": "", "version": "5.3"}, "parent_header": {}, '
            '"metadata": {}, "content": {}}',
            False,
            1008,
        ),
    ],
    ids=["not-json", "not-v1", "bad-header", "iopub"],
)
async def test_bad_frames_close_only_that_socket(
    served: Served, frame: str | bytes, v1: bool, code: int
) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as good:
        async with kernel_socket(served, kid, v1=v1) as bad:
            await bad.ws.send(frame)
            _, closed = await until_closed(bad)
        got, reason = close_code(closed)
        assert got == code
        assert reason
        reply, _ = await good.execute("1 + 1")
    assert reply.content["status"] == "ok"


async def test_an_oversized_message_is_refused_with_1009() -> None:
    async with serving(max_message_size=10_000) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            await ws.send(ws.message("execute_request", {"code": "x = '" + "a" * 20_000 + "'"}))
            _, closed = await until_closed(ws)
        assert close_code(closed)[0] == 1009
        assert served.backend.get(kid).messages == []


async def test_a_refused_message_type_gets_an_error_reply() -> None:
    async with serving(allowed_message_types=frozenset({"execute_request"})) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            await ws.send(ws.message("complete_request", {"code": "pri", "cursor_pos": 3}))
            with anyio.fail_after(5):
                while (answer := await ws.receive()).channel is not Channel.SHELL:
                    pass
            reply, _ = await ws.execute("'allowed'")
        assert answer.msg_type == "complete_reply"
        assert answer.content["ename"] == "MessageTypeNotAllowed"
        assert reply.content["status"] == "ok"
        received = [m.msg_type for m in served.backend.get(kid).messages]
        assert received == ["execute_request"]


async def test_binary_buffers_reach_the_kernel_through_v1(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid, v1=True) as ws:
        msg = ws.message("comm_msg", {"comm_id": "c", "data": {}})
        parts = [
            orjson.dumps(dict(msg.header)),
            b"{}",
            b"{}",
            orjson.dumps(dict(msg.content)),
            b"\x00\x01binary",
        ]
        await ws.ws.send(pack_v1("shell", parts))
        reply, _ = await ws.execute("1")  # answered after the comm_msg: it arrived first
    assert reply.content["status"] == "ok"
    comm = served.backend.get(kid).messages[0]
    assert comm.msg_type == "comm_msg"
    assert [bytes(b) for b in comm.buffers] == [b"\x00\x01binary"]


async def test_a_connection_without_session_id_still_works(served: Served) -> None:
    kid = await served.start()
    url = f"{served.ws_url}api/kernels/{kid}/channels?token={served.token}"
    async with websockets.connect(url) as raw:
        ws = KernelSocket(raw, "anonymous")
        reply, outputs = await ws.execute("print('no session')")
    assert stream_text(outputs) == "no session\n"
    assert reply.content["status"] == "ok"


async def test_an_interrupt_over_rest_stops_a_running_cell(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as ws, served.http() as http:
        request = await first_output(ws, "print('start')\nsleep(30)")
        assert (await http.post(f"api/kernels/{kid}/interrupt")).status_code == 204
        _, reply = await output_and_reply(ws, request)
    assert reply.content["ename"] == "KeyboardInterrupt"
