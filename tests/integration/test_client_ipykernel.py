"""Our KernelClient driving a real ipykernel, over tcp and ipc."""

from __future__ import annotations

import uuid

import anyio
import pytest

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.errors import ChannelClosed, InvalidState, ReplyTimeout
from kernelyard.manager import KernelManager
from kernelyard.provisioning import LaunchOptions
from kernelyard.wire import Channel, Message

from ..helpers import Collect, wait_for_output, wait_until_running

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(params=["tcp", "ipc"])
async def manager(request: pytest.FixtureRequest, finder: KernelFinder):
    async with KernelManager(
        "python3", finder=finder, options=LaunchOptions(transport=request.param, stderr=None)
    ) as km:
        yield km


@pytest.fixture
async def client(manager: KernelManager):
    async with manager.client() as kc:
        await kc.wait_for_ready(timeout=30)
        yield kc


async def test_kernel_info_on_shell_and_control(client: KernelClient) -> None:
    shell = await client.kernel_info()
    control = await client.kernel_info(channel=Channel.CONTROL)
    assert shell.content["implementation"] == "ipython"
    assert control.content["language_info"]["name"] == "python"
    assert shell.channel is Channel.SHELL
    assert control.channel is Channel.CONTROL


async def test_the_first_output_of_the_first_execute_arrives(finder: KernelFinder) -> None:
    async with (
        KernelManager("python3", finder=finder, options=LaunchOptions(stderr=None)) as km,
        km.client() as kc,
    ):
        await kc.wait_for_ready(timeout=30)
        out = Collect()
        reply = await kc.execute_interactive("print('first')", output_hook=out, timeout=30)
    assert reply.content["status"] == "ok"
    assert [m.content["text"] for m in out.of("stream")] == ["first\n"]


async def test_execute_interactive_collects_every_kind_of_output(client: KernelClient) -> None:
    out = Collect()
    code = (
        "import sys\n"
        "from IPython.display import display, HTML\n"
        "print('to stdout')\n"
        "print('to stderr', file=sys.stderr)\n"
        "display(HTML('<b>x</b>'))\n"
        "40 + 2"
    )
    reply = await client.execute_interactive(code, output_hook=out, timeout=30)
    assert reply.content["status"] == "ok"
    streams = {m.content["name"]: m.content["text"] for m in out.of("stream")}
    assert streams == {"stdout": "to stdout\n", "stderr": "to stderr\n"}
    assert out.of("display_data")[0].content["data"]["text/html"] == "<b>x</b>"
    assert out.of("execute_result")[0].content["data"]["text/plain"] == "42"
    assert client.execution_state == "idle"


async def test_errors_come_back_in_reply_and_output(client: KernelClient) -> None:
    out = Collect()
    reply = await client.execute_interactive("1/0", output_hook=out, timeout=30)
    assert reply.content["status"] == "error"
    assert reply.content["ename"] == "ZeroDivisionError"
    assert out.of("error")[0].content["ename"] == "ZeroDivisionError"


async def test_user_expressions_and_silent(client: KernelClient) -> None:
    reply = await client.execute("a = 6", user_expressions={"b": "a * 7"}, timeout=30)
    assert reply.content["user_expressions"]["b"]["data"]["text/plain"] == "42"
    silent = await client.execute("a", silent=True, timeout=30)
    assert silent.content["status"] == "ok"


async def test_complete_inspect_is_complete_history_comm_info(client: KernelClient) -> None:
    await client.execute("import collections\nzebra_value = 1", timeout=30)
    complete = await client.complete("zebra_v")
    assert "zebra_value" in complete.content["matches"]
    inspect = await client.inspect("collections.OrderedDict", detail_level=0)
    assert inspect.content["found"] is True
    assert (await client.is_complete("for x in y:")).content["status"] == "incomplete"
    assert (await client.is_complete("x = 1")).content["status"] == "complete"
    history = await client.history(hist_access_type="tail", n=5)
    assert any("zebra_value" in entry[2] for entry in history.content["history"])
    assert (await client.comm_info()).content["status"] == "ok"


async def test_input_goes_through_the_stdin_hook(client: KernelClient) -> None:
    prompts: list[str] = []

    def answer(request: Message) -> str:
        prompts.append(request.content["prompt"])
        return "Ada"

    out = Collect()
    reply = await client.execute_interactive(
        "name = input('who? ')\nprint('hi', name)", output_hook=out, stdin_hook=answer, timeout=30
    )
    assert reply.content["status"] == "ok"
    assert prompts == ["who? "]
    assert out.of("stream")[0].content["text"] == "hi Ada\n"


async def test_async_stdin_hook(client: KernelClient) -> None:
    async def answer(request: Message) -> str:
        await anyio.sleep(0)
        return "typed"

    out = Collect()
    await client.execute_interactive(
        "print(input())", output_hook=out, stdin_hook=answer, timeout=30
    )
    assert out.of("stream")[0].content["text"] == "typed\n"


async def test_input_request_without_a_route_goes_to_stdin_requests(client: KernelClient) -> None:
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            reply = await client.execute("x = input('?')", allow_stdin=True, timeout=30)
            assert reply.content["status"] == "ok"

        tg.start_soon(run)
        request = await client.stdin_requests()
        assert request.content["prompt"] == "?"
        await client.input("answer", parent=request)
    assert (await client.execute("x", user_expressions={"x": "x"})).content["user_expressions"][
        "x"
    ]["data"]["text/plain"] == "'answer'"


async def test_many_concurrent_requests_each_get_their_reply(client: KernelClient) -> None:
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        if i % 3 == 0:
            reply = await client.execute(f"v{i} = {i}", timeout=60)
            results[i] = reply.content["status"]
        elif i % 3 == 1:
            reply = await client.complete(f"v{i}")
            results[i] = reply.msg_type
        else:
            reply = await client.kernel_info(channel=Channel.CONTROL)
            results[i] = reply.msg_type

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(one, i)
    assert len(results) == 60
    assert {results[i] for i in range(0, 60, 3)} == {"ok"}
    assert {results[i] for i in range(1, 60, 3)} == {"complete_reply"}
    assert {results[i] for i in range(2, 60, 3)} == {"kernel_info_reply"}


async def test_iopub_subscription_sees_everything_in_order(client: KernelClient) -> None:
    async with client.iopub() as messages:
        reply = await client.execute("for i in range(50): print(i, flush=True)", timeout=30)
        text = ""
        while not text.endswith("49\n"):
            msg = await messages.receive()
            if msg.msg_type == "stream" and msg.parent_msg_id == reply.parent_msg_id:
                text += msg.content["text"]
    assert text == "".join(f"{i}\n" for i in range(50))


async def test_subshells(client: KernelClient) -> None:
    info = await client.kernel_info()
    if "kernel subshells" not in info.content.get("supported_features", []):
        pytest.skip("this ipykernel has no subshells")
    created = await client.create_subshell()
    subshell_id = created.content["subshell_id"]
    assert subshell_id in (await client.list_subshell()).content["subshell_id"]
    out = Collect()
    reply = await client.execute_interactive(
        "print('in subshell')", subshell_id=subshell_id, output_hook=out, timeout=30
    )
    assert reply.content["status"] == "ok"
    assert (
        reply.header.get("subshell_id") == subshell_id
        or reply.parent_header["subshell_id"] == subshell_id
    )
    assert out.of("stream")[0].content["text"] == "in subshell\n"
    # The subshell answers while the main shell is busy.
    busy = "import time\nprint('main busy', flush=True)\ntime.sleep(2)"
    async with client.iopub() as messages, anyio.create_task_group() as tg:
        tg.start_soon(client.execute, busy)
        await wait_for_output(messages, "main busy")
        with anyio.fail_after(1.5):
            quick = await client.execute("1", subshell_id=subshell_id)
        assert quick.content["status"] == "ok"
    deleted = await client.delete_subshell(subshell_id)
    assert deleted.content["status"] == "ok"
    unknown = await client.execute("1", subshell_id=str(uuid.uuid4()), timeout=30)
    assert unknown.content["status"] == "error"


async def test_comm_messages_reach_the_kernel(client: KernelClient) -> None:
    await client.execute(
        "seen = []\n"
        "def target(comm, msg):\n"
        "    seen.append(msg['content']['data'])\n"
        "    comm.on_msg(lambda m: seen.append(m['content']['data']))\n"
        "get_ipython().kernel.comm_manager.register_target('probe', target)",
        timeout=30,
    )
    await client.comm_open("probe", {"hello": 1}, comm_id="c1")
    await client.comm_msg("c1", {"n": 2})
    await client.comm_close("c1")
    reply = await client.execute("", user_expressions={"s": "seen"}, timeout=30)
    assert (
        reply.content["user_expressions"]["s"]["data"]["text/plain"] == "[{'hello': 1}, {'n': 2}]"
    )
    info = await client.comm_info("probe")
    assert info.content["comms"] == {}


async def test_debug_request(client: KernelClient) -> None:
    reply = await client.debug_request(
        {"type": "request", "seq": 1, "command": "debugInfo", "arguments": {}}, timeout=30
    )
    assert reply.msg_type == "debug_reply"


async def test_reply_timeout(client: KernelClient) -> None:
    with pytest.raises(ReplyTimeout) as info:
        await client.execute("import time; time.sleep(3)", timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert info.value.msg_type == "execute_request"


async def test_closed_and_unopened_clients(manager: KernelManager) -> None:
    client = manager.client()
    with pytest.raises(InvalidState, match="not open"):
        await client.kernel_info()
    outcome: list[BaseException] = []
    code = "import time; time.sleep(10)"

    async def wait_forever() -> None:
        try:
            await client.execute(code)
        except ChannelClosed as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg, client, client.iopub() as messages:
        await client.wait_for_ready(timeout=30)  # IOPub delivers: the cell's start is seen
        tg.start_soon(wait_forever)
        await wait_until_running(messages, code)
        # closing the client fails the call still waiting in the other task
    assert len(outcome) == 1
    with pytest.raises(InvalidState):
        await client.kernel_info()
    await manager.interrupt()  # the sleeping cell, so the fixture's shutdown is quick


async def test_messages_with_a_wrong_signature_are_dropped(manager: KernelManager) -> None:
    import dataclasses

    assert manager.connection_info is not None
    wrong = dataclasses.replace(manager.connection_info, key=b"not-the-key")
    async with KernelClient(wrong, heartbeat=False) as kc:
        with pytest.raises(ReplyTimeout):
            await kc.kernel_info(timeout=1)


async def test_bad_requests_are_named_errors(client: KernelClient) -> None:
    from kernelyard.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError, match="channel"):
        await client.send(client.message("status", channel=Channel.IOPUB))
    with pytest.raises(LocalProtocolError, match="detail_level"):
        await client.inspect("x", detail_level=5)
    with pytest.raises(LocalProtocolError, match="hist_access_type"):
        await client.history(hist_access_type="all")
    # the client still works
    assert (await client.kernel_info()).content["status"] == "ok"


async def test_a_client_can_be_reopened(manager: KernelManager) -> None:
    client = manager.client()
    for _ in range(2):
        async with client:
            await client.wait_for_ready(timeout=30)
            out = Collect()
            await client.execute_interactive("print('again')", output_hook=out, timeout=30)
            assert [m.content["text"] for m in out.of("stream")] == ["again\n"]


async def test_a_failing_output_hook_surfaces_and_the_client_survives(client: KernelClient) -> None:
    def broken(msg: Message) -> None:
        raise RuntimeError("hook bug")

    with pytest.raises(RuntimeError, match="hook bug"):
        await client.execute_interactive("print('x')", output_hook=broken, timeout=30)
    out = Collect()
    reply = await client.execute_interactive("print('still here')", output_hook=out, timeout=30)
    assert reply.content["status"] == "ok"
    assert out.of("stream")[-1].content["text"] == "still here\n"
