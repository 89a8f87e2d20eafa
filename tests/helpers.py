"""Helpers shared by tests: kernelspec dirs on disk, waiting for kernel output, hooks."""

from __future__ import annotations

import json
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
