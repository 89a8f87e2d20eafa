"""The debugger's connection to debugpy's adapter, and what the adapter has told it.

:class:`DebugSession` owns the :class:`~.dap_link.DapLink`: it connects it
(starting debugpy first, once per process), runs DAP's configuration
sequence for ``attach``, and closes it at ``disconnect``. It follows the
adapter's events, keeping which threads are stopped (``stopped``,
``continued``) and noting ``initialized``, and hands every event on to be
published; a ``stopped`` one once the stopped threads are known. It also
keeps where debugpy put breakpoints (for ``debugInfo``). Use it from the
debugger's loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kernelyard.errors import DebuggerError
from kernelyard.kernel.dap_link import DapLink, DapMessage
from kernelyard.kernel.debugpy_server import is_traced

__all__ = ["DebugSession"]


class DebugSession:
    """One kernel's link to debugpy's adapter; ``publish`` sends an event to the frontend."""

    def __init__(self, publish: Callable[[DapMessage], None]) -> None:
        self._publish = publish
        self._link = DapLink(self._on_event)
        self._address: tuple[str, int] | None = None
        self._initialized = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: source path -> the breakpoints debugpy set there (for debugInfo).
        self.breakpoints: dict[str, list[dict[str, Any]]] = {}
        #: DAP thread ids stopped at the moment.
        self.stopped_threads: set[int] = set()

    @property
    def connected(self) -> bool:
        """Whether the link to the adapter is open."""
        return self._link.connected

    @property
    def address(self) -> tuple[str, int] | None:
        """The adapter's address once debugpy is started (it stays for the process)."""
        return self._address

    async def request(self, message: DapMessage) -> DapMessage:
        """Relay a DAP request to the adapter; its response (DebuggerError if the link fails)."""
        return await self._link.request(message)

    async def connect(self, start_debugpy: Callable[[], Awaitable[tuple[str, int]]]) -> bool:
        """Connect to the adapter, awaiting ``start_debugpy()`` first if it was never
        started; True if this connected, False if the link was open already."""
        if self._address is None:
            self._address = await start_debugpy()
        if self._link.connected:
            return False
        await self._link.connect(*self._address)
        return True

    async def attach(self, message: DapMessage) -> DapMessage:
        """Send ``attach`` and do the configuration sequence the frontend leaves to the
        kernel: wait for ``initialized`` (or the answer), send ``configurationDone``."""
        self._initialized.clear()
        attach = asyncio.ensure_future(self._link.request(message))
        initialized = asyncio.ensure_future(self._initialized.wait())
        try:
            await asyncio.wait({attach, initialized}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            initialized.cancel()
        if not attach.done():  # the adapter waits for the configuration to be done
            try:
                await self._link.request({"type": "request", "command": "configurationDone"})
            except BaseException:
                attach.cancel()
                raise
        return await attach

    async def disconnect(self, message: DapMessage) -> DapMessage | None:
        """Relay ``disconnect`` if the link is open (its response, else None), then close
        the link and forget breakpoints and stopped threads, whatever the adapter said."""
        try:
            return await self._link.request(message) if self._link.connected else None
        finally:
            self._link.close()
            self.breakpoints.clear()
            self.stopped_threads.clear()

    async def close(self) -> None:
        """Close the link and end the tasks that follow events (the debugger stops)."""
        self._link.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- events ----------------------------------------------------------------------

    def _on_event(self, event: DapMessage) -> None:
        name = event.get("event")
        raw = event.get("body")
        body: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if name == "stopped":
            task = asyncio.get_running_loop().create_task(self._on_stopped(event, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return  # published once the stopped threads are known
        if name == "continued":
            if body.get("allThreadsContinued", True):
                self.stopped_threads.clear()
            else:
                self.stopped_threads.discard(body.get("threadId"))
        elif name == "initialized":
            self._initialized.set()
        self._publish(event)

    async def _on_stopped(self, event: DapMessage, body: Mapping[str, Any]) -> None:
        thread_id = body.get("threadId")
        stopped = {thread_id} if isinstance(thread_id, int) else set()
        if body.get("allThreadsStopped"):
            # All threads debugpy traces: the user's, not the kernel's own (never stopped).
            traced = {t.name for t in threading.enumerate() if is_traced(t)}
            with contextlib.suppress(DebuggerError):
                reply = await self._link.request({"type": "request", "command": "threads"})
                threads = (reply.get("body") or {}).get("threads") or []
                stopped.update(
                    t["id"]
                    for t in threads
                    if isinstance(t.get("id"), int) and t.get("name") in traced
                )
        self.stopped_threads |= stopped
        self._publish(event)
