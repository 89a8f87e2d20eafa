"""Helpers shared by tests: kernelspec dirs on disk, waiting for kernel output, hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from kernelyard.wire import Message

if TYPE_CHECKING:
    from kernelyard.client import KernelClient

MakeSpec = Callable[..., Path]


def make_spec_dir(base: Path, name: str, raw: str | None = None, **fields: Any) -> Path:
    """Write ``base/name/kernel.json`` (``raw`` text, or a valid spec updated with ``fields``)."""
    spec_dir = base / name
    spec_dir.mkdir(parents=True)
    data = {"argv": ["python", "-m", name, "-f", "{connection_file}"], "language": "python"}
    data.update(fields)
    (spec_dir / "kernel.json").write_text(raw if raw is not None else json.dumps(data))
    return spec_dir


async def wait_until_running(messages: MemoryObjectReceiveStream[Message], code: str) -> None:
    """Return once the kernel announces (``execute_input`` on IOPub) that it runs ``code``.

    ``messages`` is a subscription opened before the execute was sent.
    """
    while True:
        msg = await messages.receive()
        if msg.msg_type == "execute_input" and msg.content.get("code") == code:
            return


async def wait_for_output(messages: MemoryObjectReceiveStream[Message], text: str) -> None:
    """Return once a ``stream`` message containing ``text`` arrives on IOPub.

    Stronger than :func:`wait_until_running`: the cell's own code has run, so
    the kernel's handlers for that cell (SIGINT among them) are in place.
    """
    while True:
        msg = await messages.receive()
        if msg.msg_type == "stream" and text in str(msg.content.get("text", "")):
            return


class Collect:
    """An output hook that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, msg: Message) -> None:
        self.messages.append(msg)

    def of(self, msg_type: str) -> list[Message]:
        return [m for m in self.messages if m.msg_type == msg_type]

    def text(self, name: str = "stdout") -> str:
        """The text of the ``name`` stream messages, joined."""
        return "".join(m.content["text"] for m in self.of("stream") if m.content["name"] == name)


@asynccontextmanager
async def running(
    client: KernelClient, code: str, **execute: Any
) -> AsyncIterator[tuple[MemoryObjectReceiveStream[Message], list[Message]]]:
    """Execute ``code`` in the background; enter once it printed ``started`` (flushed).

    Yields the IOPub subscription and a list that receives the execute_reply
    when the cell ends; leaving the block waits for that reply.
    """
    replies: list[Message] = []
    async with client.iopub() as messages, anyio.create_task_group() as tg:

        async def execute_in_background() -> None:
            replies.append(await client.execute(code, timeout=30, **execute))

        tg.start_soon(execute_in_background)
        await wait_for_output(messages, "started")
        yield messages, replies


def run_python(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run this Python as a separate program (a real peer) with ``env`` added to ours."""
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


JUPYTER_CLIENT_PEER = """
import json, sys
from jupyter_client import BlockingKernelClient

client = BlockingKernelClient()
client.load_connection_file(sys.argv[1])
client.start_channels()
client.wait_for_ready(timeout=30)
texts = []
reply = client.execute_interactive(
    sys.argv[2],
    output_hook=lambda m: texts.append(
        m["content"].get("text") or m["content"].get("data", {}).get("text/plain", "")
    ),
    timeout=30,
)
info = client.kernel_info(reply=True)["content"]
complete = client.complete("impor", 5, reply=True)["content"]
client.stop_channels()
print(json.dumps({
    "status": reply["content"]["status"],
    "text": "".join(texts),
    "implementation": info["implementation"],
    "matches": complete["matches"],
}))
"""


def jupyter_client_peer(connection_file: Path, code: str) -> dict[str, Any]:
    """Have jupyter_client's blocking client, in its own process, run ``code`` on a kernel.

    Returns the execute status, the text of stream and result outputs, the
    kernel's ``implementation`` and the completions of ``impor``.
    """
    peer = run_python("-c", JUPYTER_CLIENT_PEER, str(connection_file), code)
    assert peer.returncode == 0, peer.stderr
    result: dict[str, Any] = json.loads(peer.stdout)
    return result
