"""The private event loop that runs every blocking object's async twin.

One daemon thread per process runs an asyncio loop with an anyio
BlockingPortal. Blocking methods hand their coroutine to it and wait, so they
work from any thread, including one whose own loop is running (a notebook
cell), with no nest_asyncio. All sockets live on this loop.

Callbacks (output hooks) run on the loop thread: they must not call blocking
methods themselves (anyio raises a clear RuntimeError if they do).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from anyio.from_thread import BlockingPortal

__all__ = ["build", "call", "portal"]

T = TypeVar("T")

_lock = threading.Lock()
_portal: BlockingPortal | None = None


def _serve(ready: threading.Event, box: list[BlockingPortal]) -> None:
    async def main() -> None:
        async with BlockingPortal() as running:
            box.append(running)
            ready.set()
            await running.sleep_until_stopped()

    anyio.run(main, backend="asyncio")


def portal() -> BlockingPortal:
    """The process's portal, started on first use."""
    global _portal
    with _lock:
        if _portal is None:
            ready = threading.Event()
            box: list[BlockingPortal] = []
            thread = threading.Thread(
                target=_serve, args=(ready, box), name="kernelyard-loop", daemon=True
            )
            thread.start()
            ready.wait()
            _portal = box[0]
        return _portal


def call(func: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine function ``func`` on the loop; return its result."""
    return portal().call(func)


def build(factory: Callable[[], T]) -> T:
    """Run the plain function ``factory`` on the loop thread (objects that need the loop
    while they are made, such as anything holding an anyio Event); return its result.
    """
    return portal().call(factory)
