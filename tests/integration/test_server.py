"""``kernelyard serve`` as a real process, driven over real HTTP and WebSockets."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import jsonschema
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from kernelyard.server.openapi import openapi_document
from kernelyard.wire import V1_SUBPROTOCOL, Channel, Message

from .serverutil import (
    KernelSocket,
    Server,
    kernel_socket,
    running_server,
    settled_model,
    start_kernel,
    stream_text,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(120)]

TIME_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("server")
    (home / "notebooks" / "sub").mkdir(parents=True)
    yield home
    runtime = home / "runtime"
    leftovers = sorted(p.name for p in runtime.iterdir()) if runtime.exists() else []
    assert leftovers == [], f"the server left files in its runtime dir: {leftovers}"


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    with running_server(home) as server:
        yield server


@pytest.fixture
async def http(server: Server) -> httpx.AsyncClient:
    async with server.http() as client:
        yield client  # type: ignore[misc]


@pytest.fixture
async def kernel(http: httpx.AsyncClient) -> str:
    model = await start_kernel(http)
    yield model["id"]  # type: ignore[misc]
    await http.delete(f"api/kernels/{model['id']}")


# -- REST ------------------------------------------------------------------------------


async def test_kernel_lifecycle_over_rest(http: httpx.AsyncClient, server: Server) -> None:
    response = await http.post("api/kernels", json={"path": "notebooks/sub/x.ipynb"})
    assert response.status_code == 201
    model = response.json()
    kid = model["id"]
    assert response.headers["location"] == f"/api/kernels/{kid}"
    assert model["name"] == "kernelyard"
    assert model["execution_state"] == "starting"  # the answer does not wait for the kernel
    assert re.match(TIME_PATTERN, model["last_activity"])
    with anyio.fail_after(60):
        model = await settled_model(http, kid)
    assert model["execution_state"] == "idle"
    assert model["connections"] == 0
    assert "reason" not in model
    assert re.match(TIME_PATTERN, model["last_activity"])
    assert (await http.get(f"api/kernels/{kid}")).json()["id"] == kid
    assert kid in [k["id"] for k in (await http.get("api/kernels")).json()]
    async with kernel_socket(server, kid) as ws:
        reply, outputs = await ws.execute("import os; print(os.getcwd())")
        assert reply.content["status"] == "ok"
        assert stream_text(outputs).strip().endswith("notebooks/sub")
    interrupt = await http.post(f"api/kernels/{kid}/interrupt")
    assert interrupt.status_code == 204
    restart = await http.post(f"api/kernels/{kid}/restart")
    assert restart.status_code == 200
    assert restart.json()["id"] == kid
    delete = await http.delete(f"api/kernels/{kid}")
    assert delete.status_code == 204
    missing = await http.get(f"api/kernels/{kid}")
    assert missing.status_code == 404
    assert missing.json() == {"message": f"Kernel does not exist: {kid}", "reason": None}


async def test_bad_requests_get_json_errors(http: httpx.AsyncClient) -> None:
    unknown = await http.post("api/kernels", json={"name": "no-such-kernel"})
    assert unknown.status_code == 404
    assert "no-such-kernel" in unknown.json()["message"]
    assert (await http.post("api/kernels", content=b"{not json")).status_code == 400
    assert (await http.post("api/kernels", json=[1])).status_code == 400
    outside = await http.post("api/kernels", json={"path": "../../etc"})
    assert outside.status_code == 400
    assert "outside" in outside.json()["message"]
    assert (await http.post("api/kernels", json={"path": "a\x00b"})).status_code == 400
    assert (await http.post("api/kernels", json={"path": 7})).status_code == 400
    assert (await http.post("api/kernels", json={"name": 7})).status_code == 400
    bad_env = await http.post("api/kernels", json={"env": {"KERNEL_X": 3}})
    assert bad_env.status_code == 400
    for method, path in [
        ("DELETE", "api/kernels/00000000-0000-0000-0000-000000000000"),
        ("POST", "api/kernels/00000000-0000-0000-0000-000000000000/restart"),
        ("POST", "api/kernels/00000000-0000-0000-0000-000000000000/interrupt"),
        ("GET", "api/kernelspecs/nope"),
        ("GET", "kernelspecs/nope/logo-64x64.png"),
        ("GET", "kernelspecs/kernelyard/..%2Fkernel.json"),
        ("GET", "no/such/route"),
    ]:
        response = await http.request(method, path)
        assert response.status_code == 404, (method, path)
        assert "message" in response.json()


async def test_env_allow_list_and_chosen_kernel_id(http: httpx.AsyncClient, server: Server) -> None:
    kid = str(uuid.uuid4())
    response = await http.post(
        "api/kernels",
        json={"kernel_id": kid, "env": {"KERNEL_COLOR": "blue", "LD_PRELOAD": "/evil.so"}},
    )
    assert response.status_code == 201
    assert response.json()["id"] == kid
    again = await http.post("api/kernels", json={"kernel_id": kid})
    assert again.json()["id"] == kid
    assert (await http.post("api/kernels", json={"kernel_id": "not-a-uuid"})).status_code == 400
    async with kernel_socket(server, kid) as ws:
        code = "import os; print(os.environ.get('KERNEL_COLOR'), os.environ.get('LD_PRELOAD'))"
        _, outputs = await ws.execute(code)
    assert stream_text(outputs).strip() == "blue None"
    await http.delete(f"api/kernels/{kid}")


async def test_kernelspecs_and_resources(http: httpx.AsyncClient) -> None:
    listing = (await http.get("api/kernelspecs")).json()
    assert listing["default"] == "kernelyard"
    ours = listing["kernelspecs"]["kernelyard"]
    assert ours["spec"]["language"] == "python"
    assert (await http.get("api/kernelspecs/kernelyard")).json() == ours
    logo = await http.get(ours["resources"]["logo-64x64"])
    assert logo.status_code == 200
    assert logo.headers["content-type"] == "image/png"
    assert logo.headers["cache-control"] == "max-age=2592000"
    assert logo.content.startswith(b"\x89PNG")
    head = await http.head(ours["resources"]["logo-64x64"])
    assert head.status_code == 200
    assert head.content == b""


async def test_api_and_status(http: httpx.AsyncClient, server: Server, kernel: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        version = await anonymous.get("api")
        assert version.status_code == 200
        assert "version" in version.json()
        forbidden = await anonymous.get("api/kernels")
        assert forbidden.status_code == 403
        assert forbidden.json() == {"message": "Forbidden", "reason": None}
        wrong = await anonymous.get("api/kernels", headers={"Authorization": "token wrong"})
        assert wrong.status_code == 403
    status = (await http.get("api/status")).json()
    assert sorted(status) == ["connections", "kernels", "last_activity", "started"]
    assert status["kernels"] >= 1


async def test_openapi_document_matches_real_responses(
    http: httpx.AsyncClient, kernel: str
) -> None:
    document = (await http.get("api/openapi.json")).json()
    assert document == openapi_document("/")
    schemas = {"components": document["components"]}

    def check(body: object, name: str) -> None:
        schema = {**schemas, "$ref": f"#/components/schemas/{name}"}
        jsonschema.validate(body, schema)

    check((await http.get("api/kernels")).json(), "KernelList")
    check((await http.get(f"api/kernels/{kernel}")).json(), "Kernel")
    check((await http.get("api/kernelspecs")).json(), "KernelSpecs")
    check((await http.get("api/kernelspecs/kernelyard")).json(), "KernelSpec")
    check((await http.get("api/status")).json(), "Status")
    check((await http.get("api")).json(), "Version")
    check((await http.get("api/kernels/0-0-0-0-0")).json(), "Error")
    check((await http.post(f"api/kernels/{kernel}/restart")).json(), "Kernel")
    for path, item in document["paths"].items():
        for method in item:
            if method != "parameters":
                assert item[method]["responses"], (path, method)


# -- auth --------------------------------------------------------------------------------


async def test_token_sources_cookie_and_xsrf(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("api/kernels", params={"token": server.token})).status_code == 200
        bearer = {"Authorization": f"Bearer {server.token}"}
        assert (await client.get("api/kernels", headers=bearer)).status_code == 200
        # the token request left a login cookie and an _xsrf cookie in the client
        assert (await client.get("api/kernels")).status_code == 200
        refused = await client.post("api/kernels", json={"name": "nope"})
        assert refused.status_code == 403
        assert "_xsrf" in refused.json()["message"]
        xsrf = {"X-XSRFToken": client.cookies["_xsrf"]}
        allowed = await client.post("api/kernels", json={"name": "nope"}, headers=xsrf)
        assert allowed.status_code == 404  # past auth: the kernelspec does not exist


async def test_origins_and_cors(server: Server, kernel: str) -> None:
    host = server.url.split("//")[1].rstrip("/")
    async with httpx.AsyncClient(base_url=server.url) as client:
        preflight = await client.options(
            "api/kernels",
            headers={"Origin": "http://elsewhere", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        login = await client.get("api/kernels", params={"token": server.token})
        assert login.status_code == 200
        foreign = await client.get("api/kernels", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 404  # cookie-authenticated, foreign origin
        same = await client.get("api/kernels", headers={"Origin": f"http://{host}"})
        assert same.status_code == 200
    url = f"{server.ws_url}api/kernels/{kernel}/channels?session_id=x"
    cookie = f"{login.headers['set-cookie'].split(';')[0]}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            url, additional_headers={"Cookie": cookie, "Origin": "http://evil.example"}
        ):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as anonymous:
        async with websockets.connect(url):
            pass
    assert anonymous.value.response.status_code == 403
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie, "Origin": f"http://{host}"}
    ):
        pass


# -- WebSocket -----------------------------------------------------------------------------


@pytest.mark.parametrize("v1", [False, True], ids=["legacy", "v1"])
async def test_execute_in_both_framings(server: Server, kernel: str, v1: bool) -> None:
    async with kernel_socket(server, kernel, v1=v1) as ws:
        assert (ws.ws.subprotocol == V1_SUBPROTOCOL) is v1
        reply, outputs = await ws.execute("print('hello'); 6 * 7")
        assert reply.content["status"] == "ok"
        assert stream_text(outputs) == "hello\n"
        result = next(m for m in outputs if m.msg_type == "execute_result")
        assert result.content["data"]["text/plain"] == "42"
        info = ws.message("kernel_info_request", channel=Channel.CONTROL)
        await ws.send(info)
        with anyio.fail_after(10):
            while (got := await ws.receive()).channel is not Channel.CONTROL:
                pass
        assert got.parent_header["msg_id"] == info.msg_id
        assert got.msg_type == "kernel_info_reply"
        assert got.channel is Channel.CONTROL
        assert got.content["protocol_version"] == "5.5"


async def _debug(
    ws: KernelSocket,
    seq: int,
    command: str,
    skipped: list[Message] | None = None,
    **arguments: object,
) -> Message:
    """A DAP request on control through the server; its debug_reply. What arrives
    meanwhile goes to ``skipped``."""
    request = {"type": "request", "seq": seq, "command": command, "arguments": arguments}
    msg = ws.message("debug_request", request, channel=Channel.CONTROL)
    await ws.send(msg)
    with anyio.fail_after(60):
        while (got := await ws.receive()).parent_header.get("msg_id") != msg.msg_id or (
            got.channel is not Channel.CONTROL
        ):
            if skipped is not None:
                skipped.append(got)
    assert got.msg_type == "debug_reply"
    assert got.content["success"], got.content
    return got


async def _debug_event(ws: KernelSocket, event: str) -> Message:
    with anyio.fail_after(60):
        while True:
            got = await ws.receive()
            if got.msg_type == "debug_event" and got.content.get("event") == event:
                return got


async def test_jupyterlabs_debugger_works_through_the_server(server: Server, kernel: str) -> None:
    """The visual debugger's messages: debug_request/reply on control (v1 framing, as
    JupyterLab), debug_event on IOPub to every connected client."""
    async with (
        kernel_socket(server, kernel, v1=True) as lab,
        kernel_socket(server, kernel) as other,
    ):
        await _debug(lab, 1, "initialize", clientID="jupyterlab", adapterID="kernelyard")
        await _debug(lab, 2, "attach")
        await _debug(lab, 3, "configurationDone")
        code = "total = 0\nfor i in range(3):\n    total += i\n"
        path = (await _debug(lab, 4, "dumpCell", code=code)).content["body"]["sourcePath"]
        await _debug(lab, 5, "setBreakpoints", source={"path": path}, breakpoints=[{"line": 3}])
        execute = lab.message("execute_request", {"code": code, "silent": False})
        await lab.send(execute)
        stopped = await _debug_event(lab, "stopped")
        assert stopped.content["body"]["reason"] == "breakpoint"
        seen_by_other = await _debug_event(other, "stopped")  # IOPub: every client
        assert seen_by_other.content == stopped.content
        thread = stopped.content["body"]["threadId"]
        frames = (await _debug(lab, 6, "stackTrace", threadId=thread)).content["body"]
        assert (frames["stackFrames"][0]["line"], frames["stackFrames"][0]["source"]["path"]) == (
            3,
            path,
        )
        await _debug(lab, 7, "setBreakpoints", source={"path": path}, breakpoints=[])
        skipped: list[Message] = []
        await _debug(lab, 8, "continue", skipped, threadId=thread)
        with anyio.fail_after(60):
            while not any(m.channel is Channel.SHELL for m in skipped):
                skipped.append(await lab.receive())
        [reply] = [m for m in skipped if m.channel is Channel.SHELL]
        assert reply.parent_header["msg_id"] == execute.msg_id
        assert reply.content["status"] == "ok"
        await _debug(lab, 9, "disconnect", restart=False, terminateDebuggee=False)


async def test_the_default_kernel_is_forked_from_the_servers_fork_server(
    server: Server, http: httpx.AsyncClient
) -> None:
    with anyio.fail_after(60):  # the server started its fork server at start-up
        while True:
            kernel_id = (await start_kernel(http))["id"]
            async with kernel_socket(server, kernel_id) as ws:
                _, outputs = await ws.execute("import os; print(os.getppid())")
            await http.delete(f"api/kernels/{kernel_id}")
            parent = int(stream_text(outputs))
            if parent != server.process.pid:
                break
            await anyio.sleep(0.1)
    cmdline = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1].endswith(b"zygote.py")
    assert Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(
        server.process.pid
    )


async def test_binary_buffers_pass_both_framings(server: Server, kernel: str) -> None:
    code = """
from comm import create_comm
c = create_comm(target_name='echo', data={}, buffers=[b'\\x00\\xffraw'])
"""
    for v1 in (False, True):
        async with kernel_socket(server, kernel, v1=v1) as ws:
            _, outputs = await ws.execute(code)
            opened = next(m for m in outputs if m.msg_type == "comm_open")
            assert [bytes(b) for b in opened.buffers] == [b"\x00\xffraw"]


async def test_replies_go_to_the_sender_and_iopub_to_all(server: Server, kernel: str) -> None:
    async with kernel_socket(server, kernel) as a, kernel_socket(server, kernel, v1=True) as b:
        reply, _ = await a.execute("print('from a')")
        assert reply.content["status"] == "ok"
        seen_by_b = []
        with anyio.fail_after(10):
            while True:
                msg = await b.receive()
                assert msg.channel is Channel.IOPUB, "b got a reply meant for a"
                if msg.parent_header.get("msg_id") != reply.parent_header["msg_id"]:
                    continue  # e.g. the server's own kernel_info probe at start
                seen_by_b.append(msg)
                if msg.msg_type == "status" and msg.content["execution_state"] == "idle":
                    break
        assert stream_text(seen_by_b) == "from a\n"


async def _running_cell(ws: KernelSocket, code: str) -> Message:
    """Send an execute of ``code``; return its request once the cell's first output came."""
    request = ws.message("execute_request", {"code": code})
    await ws.send(request)
    with anyio.fail_after(10):
        while (await ws.receive()).msg_type != "stream":
            pass
    return request


async def _output_and_reply(ws: KernelSocket, msg_id: str) -> tuple[str, Message]:
    """The stream text and the execute_reply of request ``msg_id``, as ``ws`` receives them."""
    text, reply = "", None
    with anyio.fail_after(20):
        while reply is None:
            msg = await ws.receive()
            if msg.parent_header.get("msg_id") != msg_id:
                continue
            if msg.msg_type == "stream":
                text += msg.content["text"]
            elif msg.msg_type == "execute_reply":
                reply = msg
    return text, reply


async def test_reconnect_with_the_same_session_loses_nothing(server: Server, kernel: str) -> None:
    session = uuid.uuid4().hex
    code = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.025)"
    async with kernel_socket(server, kernel, session=session) as ws:
        request = await _running_cell(ws, code)
    await anyio.sleep(0.3)  # the cell goes on printing while nobody listens
    async with kernel_socket(server, kernel, session=session) as ws:
        text, reply = await _output_and_reply(ws, request.msg_id)
    assert reply.content["status"] == "ok"
    numbers = [int(n) for n in text.split()]
    assert numbers == list(range(numbers[0], 40))
    assert numbers[0] <= 5  # everything after the first message it saw before dropping


async def test_a_stale_connection_is_replaced_by_the_sessions_new_one(
    server: Server, http: httpx.AsyncClient, kernel: str
) -> None:
    session = uuid.uuid4().hex
    code = "import time\nprint('early', flush=True)\ntime.sleep(0.5)\nprint('late')"
    async with kernel_socket(server, kernel, session=session) as stale:
        request = await _running_cell(stale, code)
        # The same client comes back while its old socket still looks open to the server.
        async with kernel_socket(server, kernel, session=session) as fresh:
            with anyio.fail_after(10):
                _, closed = await _states_until_closed(stale)
            assert closed.rcvd is not None
            assert closed.rcvd.code == 4002
            text, reply = await _output_and_reply(fresh, request.msg_id)
            assert "late\n" in text  # what the stale socket had not read, and the reply
            assert reply.content["status"] == "ok"
            model = (await http.get(f"api/kernels/{kernel}")).json()
            assert model["connections"] == 1


async def test_a_new_session_can_ask_for_the_log(server: Server, kernel: str) -> None:
    async with kernel_socket(server, kernel) as ws:
        await ws.execute("print('logged line')")
    async with kernel_socket(server, kernel, query="&replay=all") as fresh:
        text = ""
        with anyio.fail_after(10):
            while "logged line" not in text:
                msg = await fresh.receive()
                if msg.msg_type == "stream":
                    text += msg.content["text"]


async def test_garbage_frames_close_only_that_socket(server: Server, kernel: str) -> None:
    async with kernel_socket(server, kernel) as good:
        for junk, v1 in [
            ("{not json", False),
            (b"\x01\x02", True),
            (
                '{"channel": "iopub", '
                '"header": {"msg_id": "1", "msg_type": "x", "session": "s", '
                '"username": "u", "date": "", "version": "5.3"}, "parent_header": {}, '
                '"metadata": {}, "content": {}}',
                False,
            ),
        ]:
            async with kernel_socket(server, kernel, v1=v1) as bad:
                await bad.ws.send(junk)
                with anyio.fail_after(10):
                    _, closed = await _states_until_closed(bad)
                assert closed.rcvd is not None
                assert closed.rcvd.code in (1007, 1008)
                assert closed.rcvd.reason
        reply, _ = await good.execute("1 + 1")
        assert reply.content["status"] == "ok"


async def test_oversized_message_is_refused_with_1009(home: Path) -> None:
    with running_server(home, "--max-message-size", "10000") as server:
        async with server.http() as http:
            kid = (await start_kernel(http))["id"]
            async with kernel_socket(server, kid) as ws:
                big = ws.message("execute_request", {"code": "x = '" + "a" * 20000 + "'"})
                await ws.send(big)
                with anyio.fail_after(10):
                    _, closed = await _states_until_closed(ws)
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1009
            await http.delete(f"api/kernels/{kid}")


async def test_shutdown_and_death_reach_connected_clients(
    server: Server, http: httpx.AsyncClient
) -> None:
    kid = (await start_kernel(http))["id"]
    async with kernel_socket(server, kid) as ws:
        _, outputs = await ws.execute("import os; print(os.getpid())")
        pid = int(stream_text(outputs))
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(30):
            while True:
                msg = await ws.receive()
                if msg.msg_type == "status" and msg.content["execution_state"] == "restarting":
                    break
        assert set(msg.header) >= {"msg_id", "msg_type", "username", "session", "date", "version"}
        with anyio.fail_after(30):  # the kernel comes back and the same socket works again
            reply, _ = await ws.execute("'back'")
        assert reply.content["status"] == "ok"
        await http.delete(f"api/kernels/{kid}")
        with anyio.fail_after(10):
            states, closed = await _states_until_closed(ws)
    assert states[-1] == "dead"
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000


async def _states_until_closed(ws: KernelSocket) -> tuple[list[str], ConnectionClosed]:
    """The execution states a socket reports until the server closes it."""
    states: list[str] = []
    while True:
        try:
            msg = await ws.receive()
        except ConnectionClosed as closed:
            return states, closed
        if msg.msg_type == "status":
            states.append(msg.content["execution_state"])


async def test_a_flood_arrives_complete_through_the_server(server: Server, kernel: str) -> None:
    code = "for i in range(20000):\n    print(i, flush=True)"
    async with kernel_socket(server, kernel) as ws:
        started = time.monotonic()
        reply, outputs = await ws.execute(code)
    assert reply.content["status"] == "ok"
    assert stream_text(outputs).split() == [str(i) for i in range(20000)]
    assert time.monotonic() - started < 60


async def test_many_connect_disconnect_cycles_keep_descriptors_flat(
    server: Server, kernel: str
) -> None:
    def fds() -> int:
        return len(os.listdir(f"/proc/{server.process.pid}/fd"))

    async def cycle() -> None:
        async with kernel_socket(server, kernel):
            pass

    for _ in range(20):
        await cycle()
    await anyio.sleep(0.5)
    before = fds()
    for _ in range(200):
        await cycle()
    await anyio.sleep(0.5)
    assert fds() - before <= 3


async def test_twenty_concurrent_starts(server: Server, http: httpx.AsyncClient) -> None:
    ids: list[str] = []

    async def one() -> None:
        ids.append((await start_kernel(http))["id"])

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert len(set(ids)) == 20
    async with anyio.create_task_group() as tg:
        for kid in ids:
            tg.start_soon(http.delete, f"api/kernels/{kid}")
    assert not {k["id"] for k in (await http.get("api/kernels")).json()} & set(ids)


async def test_starts_executes_and_deletes_in_bursts_keep_the_server_up(
    server: Server, http: httpx.AsyncClient
) -> None:
    """The churn that aborted the server under uvloop (libzmq saw a descriptor it
    owned closed): kernels started, used and deleted together, round after round.
    """

    statuses: list[int] = []

    async def use(kid: str) -> None:
        async with kernel_socket(server, kid) as ws:
            reply, _ = await ws.execute("1")
            assert reply.content["status"] == "ok"

    async def delete(kid: str) -> None:
        statuses.append((await http.delete(f"api/kernels/{kid}")).status_code)

    for _ in range(4):
        ids = [(await start_kernel(http))["id"] for _ in range(8)]
        async with anyio.create_task_group() as tg:
            for kid in ids:
                tg.start_soon(use, kid)
        statuses.clear()
        async with anyio.create_task_group() as tg:
            for kid in ids:
                tg.start_soon(delete, kid)
        assert statuses == [204] * len(ids)
        assert server.process.poll() is None


# -- policies ---------------------------------------------------------------------------------


async def test_limits_filters_scrubbing_culling_and_events(home: Path) -> None:
    args = [
        "--max-kernels",
        "1",
        "--no-allow-tracebacks",
        "--allowed-message-types",
        "execute_request,kernel_info_request",
        "--cull-idle-timeout",
        "2",
        "--cull-interval",
        "0.5",
    ]
    with running_server(home, *args) as server:
        events_url = f"{server.ws_url}api/events/subscribe?token={server.token}"
        async with server.http() as http, websockets.connect(events_url) as events:
            kid = (await start_kernel(http))["id"]
            over = await http.post("api/kernels", json={})
            assert over.status_code == 403
            assert "at most 1" in over.json()["message"]
            async with kernel_socket(server, kid) as ws:
                reply, outputs = await ws.execute("1 / 0")
                error = next(m for m in outputs if m.msg_type == "error")
                for content in (reply.content, error.content):
                    assert content["ename"] == "ExecutionError"
                    assert "ZeroDivisionError" not in str(content["traceback"])
                refused = ws.message("complete_request", {"code": "pri", "cursor_pos": 3})
                await ws.send(refused)
                with anyio.fail_after(10):
                    while (answer := await ws.receive()).channel is not Channel.SHELL:
                        pass
                assert answer.msg_type == "complete_reply"
                assert answer.content["ename"] == "MessageTypeNotAllowed"
                await anyio.sleep(3)  # idle past the timeout, but connected: kept
                assert (await http.get(f"api/kernels/{kid}")).status_code == 200
            with anyio.fail_after(15):  # disconnected and idle: culled
                while (await http.get(f"api/kernels/{kid}")).status_code != 404:
                    await anyio.sleep(0.2)
            actions = []
            with anyio.fail_after(10):
                while "cull" not in actions:
                    record = json.loads(await events.recv())
                    assert record["__schema__"].endswith("kernel_actions/v1")
                    assert record["kernel_id"] == kid or record["action"] == "start"
                    actions.append(record["action"])
            assert actions[0] == "start"
