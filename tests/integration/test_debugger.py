"""The kernelyard kernel's debugger, driven the way JupyterLab's debugger drives it.

Real kernel, real debugpy (its adapter process included), our client sending
``debug_request`` on control and reading ``debug_event`` from IOPub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.kernel.dap import murmur2
from kernelyard.manager import KernelManager
from kernelyard.wire import Channel, Message

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(120)]

JUPYTERLAB_INITIALIZE = {
    "clientID": "jupyterlab",
    "clientName": "JupyterLab",
    "adapterID": "kernelyard",
    "pathFormat": "path",
    "linesStartAt1": True,
    "columnsStartAt1": True,
    "supportsVariableType": True,
    "supportsVariablePaging": True,
    "supportsRunInTerminalRequest": True,
    "locale": "en",
}

CELL = "def double(x):\n    y = x * 2\n    return y\n\nresult = double(21)\n"


class Dap:
    """DAP requests as JupyterLab numbers them, and the debug events that come back."""

    def __init__(self, client: KernelClient, iopub: MemoryObjectReceiveStream[Message]) -> None:
        self.client = client
        self._iopub = iopub
        self._seq = 0

    async def __call__(self, command: str, **arguments: Any) -> dict[str, Any]:
        """The DAP response to ``command`` (checked to answer this very request)."""
        self._seq += 1
        request = {"type": "request", "seq": self._seq, "command": command}
        if arguments:
            request["arguments"] = arguments
        reply = await self.client.debug_request(request, timeout=60)
        assert reply.msg_type == "debug_reply"
        response = dict(reply.content)
        assert (response["type"], response["request_seq"]) == ("response", self._seq)
        assert response["command"] == command
        return response

    async def ok(self, command: str, **arguments: Any) -> dict[str, Any]:
        """The body of a successful response."""
        response = await self(command, **arguments)
        assert response["success"], response
        return dict(response.get("body") or {})

    async def event(self, name: str) -> dict[str, Any]:
        """The body of the next ``debug_event`` called ``name``."""
        with anyio.fail_after(60):
            while True:
                msg = await self._iopub.receive()
                if msg.msg_type == "debug_event" and msg.content.get("event") == name:
                    return dict(msg.content.get("body") or {})

    async def start(self) -> None:
        """What JupyterLab does when the debugger is switched on."""
        capabilities = await self.ok("initialize", **JUPYTERLAB_INITIALIZE)
        assert capabilities["supportsConfigurationDoneRequest"]
        await self.ok("attach")
        await self.ok("configurationDone")


@pytest.fixture
async def client(finder: KernelFinder) -> AsyncIterator[KernelClient]:
    async with KernelManager("kernelyard", finder=finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        yield kc


@pytest.fixture
async def dap(client: KernelClient) -> AsyncIterator[Dap]:
    async with client.iopub() as iopub:
        yield Dap(client, iopub)


@asynccontextmanager
async def executing(client: KernelClient, code: str) -> AsyncIterator[list[Message]]:
    """Run ``code`` in the background; the list gets its reply when it comes."""
    replies: list[Message] = []

    async def run() -> None:
        replies.append(await client.execute(code, timeout=60))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        yield replies


async def test_the_kernel_advertises_its_debugger_and_how_it_names_cells(dap: Dap) -> None:
    body = await dap.ok("debugInfo")
    assert body["isStarted"] is False
    assert body["hashMethod"] == "Murmur2"
    assert body["tmpFileSuffix"] == ".py"
    assert body["richRendering"] is True
    assert body["copyToGlobals"] is True
    assert body["breakpoints"] == []
    assert body["stoppedThreads"] == []
    # What JupyterLab's DebuggerConfig.getCodeId computes from these:
    path = f"{body['tmpFilePrefix']}{murmur2(CELL.encode(), body['hashSeed'])}.py"
    assert (await dap.ok("dumpCell", code=CELL))["sourcePath"] == path


async def test_a_breakpoint_in_a_cell_stops_there_and_the_frame_can_be_inspected(dap: Dap) -> None:
    await dap.start()
    assert (await dap.ok("debugInfo"))["isStarted"] is True
    path = (await dap.ok("dumpCell", code=CELL))["sourcePath"]
    placed = await dap.ok("setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
    assert [b["line"] for b in placed["breakpoints"]] == [2]
    async with executing(dap.client, CELL) as replies:
        stopped = await dap.event("stopped")
        assert stopped["reason"] == "breakpoint"
        thread = stopped["threadId"]
        # The control channel answers while the main shell is stopped.
        info = await dap.client.kernel_info(channel=Channel.CONTROL, timeout=10)
        assert info.content["status"] == "ok"
        state = await dap.ok("debugInfo")
        assert state["stoppedThreads"] == [thread]
        assert state["breakpoints"] == [{"source": path, "breakpoints": [{"line": 2}]}]
        frames = (await dap.ok("stackTrace", threadId=thread))["stackFrames"]
        # The cell's frames only: none of the kernel's, IPython's or asyncio's.
        assert [(f["name"], f["line"], f["source"]["path"]) for f in frames] == [
            ("double", 2, path),
            ("<module>", 5, path),
        ]
        frame = frames[0]["id"]
        scopes = (await dap.ok("scopes", frameId=frame))["scopes"]
        local = await dap.ok("variables", variablesReference=scopes[0]["variablesReference"])
        assert [(v["name"], v["value"]) for v in local["variables"]] == [("x", "21")]
        rich = await dap.ok("richInspectVariables", variableName="x", frameId=frame)
        assert rich["data"] == {"text/plain": "21"}
        await dap.ok("next", threadId=thread)
        stepped = await dap.event("stopped")
        assert stepped["reason"] == "step"
        frames = (await dap.ok("stackTrace", threadId=thread))["stackFrames"]
        assert (frames[0]["name"], frames[0]["line"]) == ("double", 3)
        frame = frames[0]["id"]
        copied = await dap(
            "copyToGlobals", srcVariableName="y", dstVariableName="y_copy", srcFrameId=frame
        )
        assert copied["success"], copied
        assert replies == []  # still stopped
        await dap.ok("continue", threadId=thread)
        await dap.event("continued")
    assert replies[0].content["status"] == "ok"
    assert (await dap.ok("debugInfo"))["stoppedThreads"] == []
    reply = await dap.client.execute("", user_expressions={"r": "(result, y_copy)"}, timeout=10)
    assert reply.content["user_expressions"]["r"]["data"]["text/plain"] == "(42, 42)"
    await dap.ok("disconnect", restart=False, terminateDebuggee=False)
    assert (await dap.ok("debugInfo"))["isStarted"] is False


async def test_a_function_defined_before_the_debugger_started_still_breaks(dap: Dap) -> None:
    await dap.client.execute(CELL, timeout=30)  # no debugger yet: only compiled under its name
    await dap.start()
    path = (await dap.ok("dumpCell", code=CELL))["sourcePath"]
    await dap.ok("setBreakpoints", source={"path": path}, breakpoints=[{"line": 3}])
    async with executing(dap.client, "double(5)") as replies:
        thread = (await dap.event("stopped"))["threadId"]
        frames = (await dap.ok("stackTrace", threadId=thread))["stackFrames"]
        assert (frames[0]["name"], frames[0]["line"], frames[0]["source"]["path"]) == (
            "double",
            3,
            path,
        )
        await dap.ok("continue", threadId=thread)
    assert replies[0].content["status"] == "ok"


async def test_leading_blank_lines_keep_the_line_numbers_the_frontend_shows(dap: Dap) -> None:
    await dap.start()
    cell = "\n\nvalue = 1\nvalue += 1\n"
    path = (await dap.ok("dumpCell", code=cell))["sourcePath"]
    await dap.ok("setBreakpoints", source={"path": path}, breakpoints=[{"line": 4}])
    async with executing(dap.client, cell):
        thread = (await dap.event("stopped"))["threadId"]
        frames = (await dap.ok("stackTrace", threadId=thread))["stackFrames"]
        assert frames[0]["line"] == 4
        await dap.ok("continue", threadId=thread)


async def test_variables_and_rich_views_without_a_stopped_thread(dap: Dap) -> None:
    setup = (
        "table = {'a': 1, 'b': [1, 2]}\n"
        "class Shiny:\n"
        "    def _repr_html_(self):\n"
        "        return '<b>shiny</b>'\n"
        "shiny = Shiny()\n"
    )
    await dap.client.execute(setup, timeout=30)
    await dap.start()
    found = {v["name"]: v for v in (await dap.ok("inspectVariables"))["variables"]}
    # pydevd groups classes (and functions) under a variable of their own.
    assert set(found) == {"table", "shiny", "class variables"}
    classes = await dap.ok(
        "variables", variablesReference=found["class variables"]["variablesReference"]
    )
    assert [v["name"] for v in classes["variables"]] == ["Shiny"]
    children = await dap.ok("variables", variablesReference=found["table"]["variablesReference"])
    assert {v["name"]: v["value"] for v in children["variables"]}.items() >= {
        ("'a'", "1"),
        ("'b'", "[1, 2]"),
    }
    rich = await dap.ok("richInspectVariables", variableName="shiny")
    assert rich["data"]["text/html"] == "<b>shiny</b>"
    assert (await dap.ok("variables", variablesReference=987654321))["variables"] == []


async def test_the_debugger_stops_and_starts_again(dap: Dap) -> None:
    for _ in range(2):
        await dap.start()
        path = (await dap.ok("dumpCell", code=CELL))["sourcePath"]
        await dap.ok("setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
        async with executing(dap.client, CELL) as replies:
            thread = (await dap.event("stopped"))["threadId"]
            await dap.ok("continue", threadId=thread)
        assert replies[0].content["status"] == "ok"
        await dap.ok("disconnect", restart=False, terminateDebuggee=False)
    # Disconnected: breakpoints are gone, cells run straight through.
    assert (await dap.client.execute(CELL, timeout=30)).content["status"] == "ok"


async def test_bad_debug_requests_get_failed_responses(dap: Dap) -> None:
    bad = await dap.client.debug_request({"seq": 1, "type": "event"}, timeout=30)
    assert bad.content["success"] is False
    assert "command" in bad.content["message"]
    not_started = await dap("stackTrace", threadId=1)
    assert not_started["success"] is False
    assert "not started" in not_started["message"]
    assert (await dap("attach"))["success"] is False  # attach before initialize
    assert (await dap("dumpCell", code=42))["success"] is False
    assert (await dap("source", source={"path": "/no/such/file.py"}))["success"] is False
    assert (await dap("source", source="not a dict"))["success"] is False
    empty = await dap.ok("richInspectVariables", variableName="not an identifier")
    assert empty == {"data": {}, "metadata": {}}
    assert (await dap("copyToGlobals", srcVariableName="1x", dstVariableName="y"))[
        "success"
    ] is False
    modules = await dap.ok("modules", startModule=0, moduleCount=100000)
    assert any(m["name"] == "kernelyard.kernel.debugger" for m in modules["modules"])
    await dap.ok("initialize", **JUPYTERLAB_INITIALIZE)
    bad_rules = await dap("attach", rules="not a list")
    assert bad_rules["success"] is False
    assert "rules" in bad_rules["message"]
    # The debugger and the kernel are fine after all that.
    await dap.ok("attach")
    await dap.ok("configurationDone")
    assert (await dap.client.execute("1 + 1", timeout=30)).content["status"] == "ok"


async def test_shutdown_removes_the_dumped_cells(finder: KernelFinder) -> None:
    async with KernelManager("kernelyard", finder=finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        async with kc.iopub() as iopub:
            path = (await Dap(kc, iopub).ok("dumpCell", code=CELL))["sourcePath"]
        assert Path(path).read_text() == CELL
        await km.shutdown()
    assert not Path(path).parent.exists()
