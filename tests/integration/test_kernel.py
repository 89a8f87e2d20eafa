"""The kernelyard kernel, driven by our client: what jupyter_kernel_test does not cover."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import pytest

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.errors import LaunchError
from kernelyard.manager import KernelManager
from kernelyard.provisioning import LaunchOptions
from kernelyard.transport import open_channel
from kernelyard.transport.registration import RegistrationSocket
from kernelyard.wire import PORT_FIELDS, Channel, Message
from kernelyard.wire.codec import encode
from kernelyard.wire.connection import REGISTRATION_FIELD
from kernelyard.wire.signing import Signer

from ..helpers import Collect, running, wait_for_output

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(params=["tcp", "ipc"])
async def manager(request: pytest.FixtureRequest, finder: KernelFinder):
    async with KernelManager(
        "kernelyard", finder=finder, options=LaunchOptions(transport=request.param)
    ) as km:
        yield km


@pytest.fixture
async def client(manager: KernelManager):
    async with manager.client() as kc:
        await kc.wait_for_ready(timeout=30)
        yield kc


async def run(kc: KernelClient, code: str, **kwargs: Any) -> tuple[Message, Collect]:
    out = Collect()
    reply = await kc.execute_interactive(code, output_hook=out, timeout=30, **kwargs)
    return reply, out


async def test_kernel_info_says_who_it_is(client: KernelClient) -> None:
    for channel in (Channel.SHELL, Channel.CONTROL):
        info = (await client.kernel_info(channel=channel)).content
        assert info["protocol_version"] == "5.5"
        assert info["implementation"] == "kernelyard"
        assert info["language_info"]["name"] == "python"
        assert info["supported_features"] == ["kernel subshells", "debugger"]
        assert info["debugger"] is True  # debugpy is installed with kernelyard


async def echoes(kc: KernelClient, code: str, **kwargs: Any) -> list[Message]:
    """The execute_input messages of running ``code``."""
    async with kc.iopub() as messages:
        reply, _ = await run(kc, code, **kwargs)
        found = []
        while (msg := messages.receive_nowait()) is not None:
            if msg.msg_type == "execute_input" and msg.parent_msg_id == reply.parent_msg_id:
                found.append(msg)
            if (
                msg.msg_type == "status"
                and msg.parent_msg_id == reply.parent_msg_id
                and msg.content["execution_state"] == "idle"
            ):
                return found
    raise AssertionError("unreachable")  # pragma: no cover


async def test_execute_results_errors_and_counts(client: KernelClient) -> None:
    reply, out = await run(client, "print('a'); 6 * 7")
    assert reply.content["status"] == "ok"
    count = reply.content["execution_count"]
    assert out.text() == "a\n"
    [result] = out.of("execute_result")
    assert result.content["data"]["text/plain"] == "42"
    assert result.content["execution_count"] == count

    reply, out = await run(client, "1/0")
    assert reply.content["status"] == "error"
    assert reply.content["ename"] == "ZeroDivisionError"
    assert any("ZeroDivisionError" in line for line in reply.content["traceback"])
    [error] = out.of("error")
    assert error.content["ename"] == "ZeroDivisionError"
    assert reply.content["execution_count"] == count + 1

    [echo] = await echoes(client, "'echoed'")
    assert echo.content == {"code": "'echoed'", "execution_count": count + 2}
    assert await echoes(client, "x = 1", silent=True) == []
    reply, _ = await run(client, "pass")
    assert reply.content["execution_count"] == count + 3  # silent did not count


async def test_user_expressions_and_payloads(client: KernelClient) -> None:
    reply, _ = await run(client, "y = 5", user_expressions={"double": "y * 2", "bad": "1/0"})
    expressions = reply.content["user_expressions"]
    assert expressions["double"]["data"]["text/plain"] == "10"
    assert expressions["bad"]["status"] == "error"
    reply, _ = await run(client, "get_ipython().set_next_input('next cell')")
    [payload] = reply.content["payload"]
    assert payload["source"] == "set_next_input"
    assert payload["text"] == "next cell"
    reply, _ = await run(client, "len?")
    assert reply.content["payload"][0]["source"] == "page"


async def test_top_level_await_and_magics(client: KernelClient) -> None:
    reply, out = await run(client, "import asyncio\nawait asyncio.sleep(0.01)\n'done'")
    assert out.of("execute_result")[0].content["data"]["text/plain"] == "'done'"
    reply, out = await run(client, "%timeit -n1 -r1 pass")
    assert reply.content["status"] == "ok"
    assert "loop" in out.text()


async def test_post_run_cell_fires_for_plain_and_awaiting_cells(client: KernelClient) -> None:
    """Extensions (matplotlib's inline backend) hook post_execute and post_run_cell."""
    setup = (
        "ran = []\n"
        "get_ipython().events.register('post_execute', lambda: ran.append('exec'))\n"
        "get_ipython().events.register('post_run_cell', lambda r: ran.append(r.info.raw_cell))"
    )
    await run(client, setup)
    await run(client, "1 + 1")
    await run(client, "import asyncio; await asyncio.sleep(0)")
    reply, out = await run(client, "print(ran[-4:])")
    assert reply.content["status"] == "ok"
    assert (
        out.text()
        == str(["exec", "1 + 1", "exec", "import asyncio; await asyncio.sleep(0)"]) + "\n"
    )


@pytest.mark.parametrize("in_subshell", [False, True], ids=["main shell", "deleted subshell"])
async def test_input_history_reaches_sqlite_after_a_quiet_second(
    client: KernelClient, in_subshell: bool
) -> None:
    marker = f"history_marker_{uuid.uuid4().hex} = 1"
    if in_subshell:  # the write is still due after the subshell that ran the cell is gone
        subshell = (await client.create_subshell()).content["subshell_id"]
        await run(client, marker, subshell_id=subshell)
        assert (await client.delete_subshell(subshell)).content["status"] == "ok"
    else:
        await run(client, marker)
    query = (
        "import sqlite3\n"
        "db = sqlite3.connect(str(get_ipython().history_manager.hist_file))\n"
        f"print(db.execute('select count(*) from history where source = ?', ({marker!r},))"
        ".fetchone()[0])\n"
        "db.close()"
    )
    _, out = await run(client, query, store_history=False)
    assert out.text() == "0\n"  # cached, not written after every cell
    with anyio.fail_after(15):  # written once a second passes without a new cell
        while out.text() != "1\n":
            await anyio.sleep(0.2)
            _, out = await run(client, query, store_history=False)
    reply = await client.history(hist_access_type="search", pattern=marker, timeout=30)
    assert [entry[2] for entry in reply.content["history"]] == [marker]


async def test_displays_updates_and_clear_output(client: KernelClient) -> None:
    code = (
        "from IPython.display import display, update_display, clear_output\n"
        "display('one', display_id='d1')\n"
        "update_display('two', display_id='d1')\n"
        "clear_output(wait=True)\n"
    )
    _, out = await run(client, code)
    [shown] = out.of("display_data")
    assert shown.content["transient"] == {"display_id": "d1"}
    [updated] = out.of("update_display_data")
    assert updated.content["data"]["text/plain"] == "'two'"
    [cleared] = out.of("clear_output")
    assert cleared.content == {"wait": True}


async def test_output_from_threads_goes_to_the_cell_that_started_them(client: KernelClient) -> None:
    code = (
        "import threading\n"
        "t = threading.Thread(target=lambda: print('from a thread', flush=True))\n"
        "t.start(); t.join()\n"
    )
    reply, out = await run(client, code)
    assert out.text() == "from a thread\n"
    assert all(m.parent_msg_id == reply.parent_msg_id for m in out.of("stream"))


async def test_stop_on_error_aborts_the_queued_requests(client: KernelClient) -> None:
    fails = "import time\nprint('started', flush=True)\ntime.sleep(0.5)\n1/0"
    async with running(client, fails) as (_, replies):
        queued = await client.execute("print('never')", timeout=30)  # sent while `fails` runs
    assert replies[0].content["status"] == "error"
    assert queued.content["status"] == "aborted"
    reply, _ = await run(client, "'after'")
    assert reply.content["status"] == "ok"  # the queue runs again


async def test_stdin_input_and_getpass(client: KernelClient) -> None:
    prompts: list[Message] = []

    def answer(request: Message) -> str:
        prompts.append(request)
        return "secret" if request.content["password"] else "Ada"

    code = "import getpass\nname = input('name? ')\npw = getpass.getpass('pw? ')\nprint(name, pw)"
    reply, out = await run(client, code, stdin_hook=answer)
    assert reply.content["status"] == "ok"
    assert out.text() == "Ada secret\n"
    assert [(p.content["prompt"], p.content["password"]) for p in prompts] == [
        ("name? ", False),
        ("pw? ", True),
    ]


async def test_input_without_allow_stdin_is_an_error(client: KernelClient) -> None:
    reply, _ = await run(client, "input('x')", allow_stdin=False)
    assert reply.content["status"] == "error"
    assert reply.content["ename"] == "StdinNotImplementedError"


async def _interrupt_during(client: KernelClient, manager: KernelManager, code: str) -> Message:
    async with running(client, code) as (_, replies):
        with anyio.fail_after(10):
            await manager.interrupt()
    return replies[0]


@pytest.mark.parametrize("spec", ["kernelyard", "kernelyard-signal"])
@pytest.mark.parametrize(
    "code",
    [
        "import time\nprint('started', flush=True)\ntime.sleep(60)",
        "import asyncio\nprint('started', flush=True)\nawait asyncio.sleep(60)",
    ],
    ids=["blocking", "awaiting"],
)
async def test_interrupt_stops_blocking_and_awaiting_cells(
    finder: KernelFinder, spec: str, code: str
) -> None:
    async with KernelManager(spec, finder=finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        with anyio.fail_after(20):
            reply = await _interrupt_during(kc, km, code)
        assert reply.content["status"] == "error"
        assert reply.content["ename"] == "KeyboardInterrupt"
        after, _ = await run(kc, "'still alive'")
        assert after.content["status"] == "ok"


async def test_an_interrupt_right_after_the_first_output_is_never_late(
    finder: KernelFinder,
) -> None:
    """The signal may land before ``time.sleep`` starts its syscall (the handler then runs
    only after it); the kernel sends it again, so each interrupt takes at most a moment.
    """
    code = "import time\nprint('started', flush=True)\ntime.sleep(20)"
    async with KernelManager("kernelyard", finder=finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        for _ in range(15):
            with anyio.fail_after(3):  # never the 20 s of the sleep
                reply = await _interrupt_during(kc, km, code)
            assert reply.content["ename"] == "KeyboardInterrupt"


COMM_TARGET = """
import asyncio
def target(comm, open_msg):
    @comm.on_msg
    def _echo(msg):
        print('handled', msg['content']['data']['n'], flush=True)
        comm.send({'echo': msg['content']['data']['n']})
    comm.send({'opened': open_msg['content']['data']})
get_ipython().kernel.comms.register_target('echo', target)
"""


async def test_comms_open_message_info_and_close(client: KernelClient) -> None:
    await run(client, COMM_TARGET)
    comm_id = uuid.uuid4().hex
    async with client.iopub() as messages:
        await client.comm_open("echo", {"hello": 1}, comm_id=comm_id)
        await client.comm_msg(comm_id, {"n": 7})
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(10):
            while len(seen) < 2:
                msg = await messages.receive()
                if msg.msg_type == "comm_msg" and msg.content["comm_id"] == comm_id:
                    seen.append(msg.content["data"])
    assert seen == [{"opened": {"hello": 1}}, {"echo": 7}]
    info = (await client.comm_info(target_name="echo")).content
    assert info["comms"] == {comm_id: {"target_name": "echo"}}
    await client.comm_close(comm_id)
    with anyio.fail_after(10):
        while (await client.comm_info()).content["comms"]:
            await anyio.sleep(0.05)


async def test_a_comm_message_is_handled_while_a_cell_awaits(client: KernelClient) -> None:
    await run(client, COMM_TARGET)
    comm_id = uuid.uuid4().hex
    await client.comm_open("echo", {}, comm_id=comm_id)
    code = "import asyncio\nprint('started', flush=True)\nawait asyncio.sleep(5)\n'slept'"
    async with running(client, code) as (messages, replies):
        await client.comm_msg(comm_id, {"n": 1})
        with anyio.fail_after(3):  # well before the cell's 5 s are up
            while True:
                msg = await messages.receive()
                if msg.msg_type == "comm_msg" and msg.content["data"] == {"echo": 1}:
                    break
        assert replies == []  # the cell is still awaiting
    assert replies[0].content["status"] == "ok"


async def test_subshell_runs_while_the_main_shell_blocks(client: KernelClient) -> None:
    created = (await client.create_subshell()).content
    subshell = created["subshell_id"]
    assert (await client.list_subshell()).content["subshell_id"] == [subshell]
    main_cell = "import time\nprint('started', flush=True)\ntime.sleep(3)"
    async with running(client, main_cell) as (_, main_replies):
        with anyio.fail_after(2):  # long before the main shell's 3 s sleep ends
            reply = await client.execute("shared = 'from the subshell'", subshell_id=subshell)
            info = await client.kernel_info(channel=Channel.CONTROL)
        assert main_replies == []  # the subshell answered first: the main shell still runs
        assert reply.content["status"] == "ok"
        assert reply.header.get("subshell_id") == subshell
        assert info.content["status"] == "ok"
    assert main_replies[0].content["status"] == "ok"
    reply, out = await run(client, "print(shared)")  # subshells share the namespace
    assert out.text() == "from the subshell\n"
    assert (await client.delete_subshell(subshell)).content["status"] == "ok"
    assert (await client.list_subshell()).content["subshell_id"] == []


async def test_unknown_subshells_and_message_types_get_error_replies(client: KernelClient) -> None:
    reply = await client.execute("1", subshell_id="no-such-subshell", timeout=10)
    assert reply.content["status"] == "error"
    assert reply.content["ename"] == "SubshellNotFound"
    deleted = await client.delete_subshell("no-such-subshell")
    assert deleted.content["status"] == "error"
    msg = client.message("no_such_request", {})
    reply = await client.request(msg, timeout=10)
    assert reply.msg_type == "no_such_reply"
    assert reply.content["ename"] == "UnknownMessageType"


async def test_shutdown_while_a_cell_blocks_is_prompt(finder: KernelFinder) -> None:
    async with KernelManager("kernelyard", finder=finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        async with kc.iopub() as messages:
            await kc.send(
                kc.message(
                    "execute_request",
                    {"code": "import time\nprint('started', flush=True)\ntime.sleep(60)"},
                )
            )
            await wait_for_output(messages, "started")
        with anyio.fail_after(10):
            await km.shutdown()
        assert not km.is_alive()


async def test_restart_gives_a_fresh_namespace(
    manager: KernelManager, client: KernelClient
) -> None:
    await run(client, "before = 1")
    await manager.restart()
    async with manager.client() as kc:
        await kc.wait_for_ready(timeout=30)
        reply, _ = await run(kc, "before")
    assert reply.content["ename"] == "NameError"


@pytest.mark.timeout(120)
async def test_a_flood_of_flushed_prints_arrives_complete_and_in_order(
    client: KernelClient,
) -> None:
    code = "for i in range(20000):\n    print(i, flush=True)"
    reply, out = await run(client, code)
    assert reply.content["status"] == "ok"
    assert out.text() == "".join(f"{i}\n" for i in range(20000))
    assert len(out.of("stream")) < 20000  # coalesced, not one message per line


@pytest.mark.timeout(120)
async def test_a_hundred_thousand_lines_arrive_complete(client: KernelClient) -> None:
    reply, out = await run(client, "for i in range(100000):\n    print(i)")
    assert reply.content["status"] == "ok"
    assert out.text() == "".join(f"{i}\n" for i in range(100000))


async def test_the_handshake_reports_the_ports_the_kernel_bound(
    finder: KernelFinder, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[dict[str, int]] = []
    receive = RegistrationSocket.receive

    async def spy(self: RegistrationSocket, *args: Any) -> dict[str, int]:
        registered.append(await receive(self, *args))
        return registered[-1]

    monkeypatch.setattr(RegistrationSocket, "receive", spy)
    async with KernelManager("kernelyard", finder=finder) as km:
        info = km.connection_info
        assert info is not None
        assert info.all_ports_bound
        assert km.process is not None
        on_disk = json.loads(km.process.connection_file.read_text())
        assert REGISTRATION_FIELD not in on_disk  # a restart must not register again
        [ports] = registered
        assert {name: on_disk[name] for name in PORT_FIELDS.values()} == ports
        assert {name: getattr(info, name) for name in PORT_FIELDS.values()} == ports
        async with km.client() as kc:
            reply, _ = await run(kc, "'registered'")
        assert reply.content["status"] == "ok"


async def test_a_kernel_that_exits_before_registering_is_a_launch_error(
    finder: KernelFinder,
) -> None:
    with anyio.fail_after(10), pytest.raises(LaunchError, match="no ports for you") as caught:
        async with KernelManager(
            "exits-before-registering", finder=finder, options=LaunchOptions(stderr=None)
        ):
            pass
    assert caught.value.exit_code == 1


async def test_garbage_and_forged_messages_are_dropped_and_the_kernel_goes_on(
    manager: KernelManager, client: KernelClient
) -> None:
    info = manager.connection_info
    assert info is not None
    assert manager.process is not None
    stream = open_channel(info, Channel.SHELL)
    async with client.iopub() as messages:
        try:
            await stream.send([b"not a jupyter message"])
            await stream.send([b"<IDS|MSG>", b"bad", b"{}", b"{}", b"{}", b"{}"])
            forged = client.message("execute_request", {"code": "forged = True"})
            await stream.send(encode(forged, Signer(b"not the key")))
            # The kernel logs each message it drops to its own stderr (not to the frontend).
            with anyio.fail_after(10):
                while (await manager.process.stderr_tail(settle=0.1)).count("dropping") < 3:
                    pass
        finally:
            stream.close()  # only now: closing drops what the socket has not sent yet
        reply, out = await run(client, "'forged' in globals()")
        seen = messages.receive_nowait
        published = [seen() for _ in range(messages.statistics().current_buffer_used)]
    assert reply.content["status"] == "ok"
    assert out.of("execute_result")[0].content["data"]["text/plain"] == "False"
    assert [m for m in published if m.msg_type == "stream"] == []


async def test_a_long_cell_publishes_while_it_runs(client: KernelClient) -> None:
    """The main shell's messages wait for its loop to idle only briefly: a cell that
    blocks still shows busy, its input and its displays while it runs."""
    code = "import time\ntime.sleep(0.2)\ndisplay('halfway')\ntime.sleep(5)"
    async with client.iopub() as messages, anyio.create_task_group() as tasks:
        replies: list[Message] = []

        async def execute() -> None:
            replies.append(await client.execute(code, timeout=30))

        tasks.start_soon(execute)
        seen: list[Message] = []
        with anyio.fail_after(3):  # long before the cell's 5 s are up
            while not seen or seen[-1].msg_type != "display_data":
                seen.append(await messages.receive())
        assert replies == []
        ours = seen[-1].parent_msg_id
        assert [
            (m.msg_type, m.content.get("execution_state")) for m in seen if m.parent_msg_id == ours
        ] == [("status", "busy"), ("execute_input", None), ("display_data", None)]
        await client.interrupt(timeout=10)
    assert replies[0].content["status"] == "error"


async def test_output_written_below_python_reaches_the_frontend(client: KernelClient) -> None:
    code = (
        "import os, subprocess, sys\n"
        "os.system('echo from a shell')\n"
        "os.write(2, 'straight to fd 2 \\u00e9\\n'.encode())\n"
        "e_acute = 'é'.encode()\n"
        "os.write(1, e_acute[:1]); os.write(1, e_acute[1:] + b' split in two writes\\n')\n"
        "subprocess.run([sys.executable, '-c', 'print(\"from a child\")'])\n"
        "subprocess.run([sys.executable, '-c', 'print(\"via fileno\")'], stdout=sys.stdout)\n"
    )
    reply, out = await run(client, code)  # everything before the reply, under this execute
    assert reply.content["status"] == "ok"
    assert out.text() == "from a shell\né split in two writes\nfrom a child\nvia fileno\n"
    assert out.text("stderr") == "straight to fd 2 é\n"


async def test_a_burst_written_while_holding_the_gil_does_not_wedge_the_kernel(
    client: KernelClient,
) -> None:
    # libc's write through PyDLL keeps the GIL, as a C extension printing from C does:
    # the capture thread cannot drain the pipe meanwhile, so the pipe must hold it all.
    code = (
        "import ctypes\n"
        "burst = b'x' * 500_000\n"
        "written = ctypes.PyDLL(None).write(1, burst, len(burst))"
    )
    reply, out = await run(client, code, user_expressions={"written": "written"})
    assert reply.content["status"] == "ok"
    assert reply.content["user_expressions"]["written"]["data"]["text/plain"] == "500000"
    assert out.text() == "x" * 500_000


async def test_an_execute_with_code_that_is_not_text_gets_an_error_reply(
    client: KernelClient,
) -> None:
    msg = client.message("execute_request", {"code": 42, "silent": False})
    reply = await client.request(msg, timeout=10)
    assert reply.content["status"] == "error"
    assert reply.content["ename"] == "TypeError"


async def test_the_heartbeat_answers_while_a_cell_holds_the_interpreter(
    manager: KernelManager, client: KernelClient
) -> None:
    info = manager.connection_info
    assert info is not None
    code = (
        "import time\nprint('started', flush=True)\n"
        "end = time.time() + 3\nwhile time.time() < end: pass"
    )
    async with running(client, code):
        hb = open_channel(info, Channel.HEARTBEAT)
        try:
            for n in range(5):
                await hb.send([b"ping %d" % n])
                with anyio.fail_after(1):  # the cell spins for 3 s
                    assert await hb.receive() == [b"ping %d" % n]
        finally:
            hb.close()


async def test_completion_cursors_count_unicode_code_points(client: KernelClient) -> None:
    await run(client, "naïve_variable = 1")
    code = "'ü😀'; naïve_var"
    reply = (await client.complete(code, len(code))).content
    assert "naïve_variable" in reply["matches"]
    assert reply["cursor_end"] == len(code)
    assert code[reply["cursor_start"] : reply["cursor_end"]] == "naïve_var"


async def test_inspect_detail_levels(client: KernelClient) -> None:
    await run(client, "def documented(x):\n    'Says what it does.'\n    return x")
    brief = (await client.inspect("documented", 10, detail_level=0)).content
    full = (await client.inspect("documented", 10, detail_level=1)).content
    assert brief["found"]
    assert "Says what it does." in brief["data"]["text/plain"]
    assert "Source:" not in brief["data"]["text/plain"]
    assert full["found"]
    assert "Source:" in full["data"]["text/plain"]  # level 1 shows the source
    missing = (await client.inspect("no_such_name", 12)).content
    assert missing["found"] is False
