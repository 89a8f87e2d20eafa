"""What notebooks run on the kernelyard kernel: matplotlib's inline plots, ipywidgets."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import anyio
import pytest

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.manager import KernelManager
from kernelyard.provisioning import LaunchOptions
from kernelyard.wire import Message

from ..helpers import Collect

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def client(finder: KernelFinder) -> AsyncIterator[KernelClient]:
    async with KernelManager("kernelyard", finder=finder) as km, km.client() as kc:
        await kc.wait_for_ready(timeout=30)
        yield kc


async def run(client: KernelClient, code: str) -> Collect:
    out = Collect()
    reply = await client.execute_interactive(code, output_hook=out, timeout=60)
    assert reply.content["status"] == "ok", reply.content
    return out


def pngs(out: Collect) -> list[bytes]:
    return [
        base64.b64decode(m.content["data"]["image/png"])
        for m in out.of("display_data")
        if "image/png" in m.content["data"]
    ]


async def test_pyplot_draws_inline_without_a_magic(client: KernelClient) -> None:
    out = await run(client, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])")
    [png] = pngs(out)  # the figure, shown when the cell ends, before its reply
    assert png.startswith(PNG_MAGIC)
    out = await run(client, "%matplotlib inline\nplt.figure()\nplt.bar([1, 2], [3, 4]);")
    assert len(pngs(out)) == 1


async def test_an_explicit_backend_wins(finder: KernelFinder) -> None:
    env = {**os.environ, "MPLBACKEND": "agg"}
    async with (
        KernelManager("kernelyard", finder=finder, options=LaunchOptions(env=env)) as km,
        km.client() as kc,
    ):
        await kc.wait_for_ready(timeout=30)
        out = await run(
            kc, "import matplotlib.pyplot as plt\nplt.plot([1])\nprint(plt.get_backend())"
        )
    assert out.text().strip().lower() == "agg"
    assert pngs(out) == []


async def _comm_messages(messages: anyio.abc.ObjectReceiveStream[Message], comm_id: str) -> Message:
    with anyio.fail_after(10):
        while True:
            msg = await messages.receive()
            if msg.msg_type == "comm_msg" and msg.content["comm_id"] == comm_id:
                return msg


async def test_a_widget_syncs_both_ways_over_comms(client: KernelClient) -> None:
    out = await run(
        client,
        "import ipywidgets\n"
        "slider = ipywidgets.IntSlider(value=3)\n"
        "slider.observe(lambda change: print('now', change['new']), names='value')\n"
        "display(slider)",
    )
    [model] = [
        m.content
        for m in out.of("comm_open")
        if m.content["data"]["state"]["_model_name"] == "IntSliderModel"
    ]
    assert model["target_name"] == "jupyter.widget"
    assert model["data"]["state"]["value"] == 3
    [view] = out.of("display_data")
    widget_view = view.content["data"]["application/vnd.jupyter.widget-view+json"]
    assert widget_view["model_id"] == model["comm_id"]
    async with client.iopub() as messages:
        # The frontend moves the slider: the kernel's model follows and its observer runs.
        update = {"method": "update", "state": {"value": 7}, "buffer_paths": []}
        await client.comm_msg(model["comm_id"], update)
        with anyio.fail_after(10):
            while True:
                msg = await messages.receive()
                if msg.msg_type == "stream" and msg.content["text"] == "now 7\n":
                    break
        # The kernel moves it: the frontend is told.
        await client.execute("slider.value = 9", timeout=30)
        told = await _comm_messages(messages, model["comm_id"])
        while told.content["data"].get("state", {}).get("value") != 9:
            told = await _comm_messages(messages, model["comm_id"])
    assert told.content["data"]["method"] == "update"
    out = await run(client, "print(slider.value)")
    assert out.text() == "9\n"
