"""A shell worker: one thread, one asyncio loop, one execute queue.

The main shell's worker runs on the main thread (so SIGINT interrupts blocking
code); each subshell's worker runs on its own thread. Requests are handed in
from the I/O thread with :meth:`ShellWorker.submit`.

Within a worker, ``execute_request`` runs strictly in arrival order, one at a
time. Every other request (complete, inspect, comm messages, ...) runs as its
own task at once, so a widget's comm message is handled while a cell awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import selectors
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kernelyard.kernel.context import current_request
from kernelyard.kernel.session import Request
from kernelyard.wire.channel import Channel

if TYPE_CHECKING:
    from kernelyard.kernel.services import ShellServices

__all__ = ["Handler", "ShellWorker"]

log = logging.getLogger(__name__)

Handler = Callable[["ShellWorker", Request], Awaitable[dict[str, Any] | None]]


class _WatchedSelector(selectors.DefaultSelector):
    """A selector that knows whether its loop is waiting (idle) or running code,
    and calls ``on_idle`` each time before it waits."""

    waiting = False
    on_idle: Callable[[], None] | None = None

    def select(self, timeout: float | None = None) -> Any:
        if self.on_idle is not None:
            self.on_idle()
        self.waiting = True
        try:
            return super().select(timeout)
        finally:
            self.waiting = False


class ShellWorker:
    """Runs one shell's requests; ``subshell_id`` is None for the main shell.

    ``services`` is what the worker and its handlers may ask of the kernel.
    """

    def __init__(
        self,
        services: ShellServices,
        subshell_id: str | None,
        handlers: dict[str, Handler],
        *,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.services = services
        self.subshell_id = subshell_id
        self._handlers = handlers
        self._selector = _WatchedSelector()
        self._selector.on_idle = on_idle
        self.loop = asyncio.SelectorEventLoop(self._selector)
        self._executes: deque[Request] = deque()
        self._failed_at = 0.0  # time.monotonic() of the last error reply
        self._execute_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.current_execute: asyncio.Task[Any] | None = None
        self.thread_id: int | None = None
        self.executing = False

    # -- any thread ---------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Hand ``request`` to this worker (thread-safe)."""
        self.loop.call_soon_threadsafe(self._accept, request)

    def stop(self) -> None:
        """Finish the running request, drop the queue, return from :meth:`run` (thread-safe)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: stopped already
            self.loop.call_soon_threadsafe(self._stop.set)

    @property
    def waiting(self) -> bool:
        """True while the loop waits for I/O (nothing of user code is on the stack)."""
        return self._selector.waiting

    def cancel_execute(self) -> None:
        """Cancel the running execute's awaited code (thread-safe)."""

        def cancel() -> None:
            if self.current_execute is not None:
                self.current_execute.cancel()

        self.loop.call_soon_threadsafe(cancel)

    # -- the worker's thread ------------------------------------------------

    def run_forever(self) -> None:
        """Run the loop until :meth:`stop`.

        A KeyboardInterrupt that lands outside user code (between two steps of
        the loop) escapes ``run_until_complete``; the loop just goes on.
        """
        self.thread_id = threading.get_ident()
        asyncio.set_event_loop(self.loop)
        main = self.loop.create_task(self._run())
        try:
            while True:
                try:
                    self.loop.run_until_complete(main)
                except KeyboardInterrupt:
                    if main.done():
                        return
                    log.debug("an interrupt arrived outside user code; ignored")
                else:
                    return
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _run(self) -> None:
        executor = asyncio.ensure_future(self._execute_loop())
        await self._stop.wait()
        executor.cancel()
        for task in (*self._tasks, executor):
            task.cancel()
        await asyncio.gather(*self._tasks, executor, return_exceptions=True)

    def _accept(self, request: Request) -> None:
        if request.msg_type == "execute_request":
            self._executes.append(request)
            self._execute_ready.set()
            return
        task = self.loop.create_task(self.handle(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute_loop(self) -> None:
        while True:
            while not self._executes:
                self._execute_ready.clear()
                await self._execute_ready.wait()
            request = self._executes.popleft()
            reply = await self.handle(request)
            if (
                reply is not None
                and reply.get("status") == "error"
                and request.content.get("stop_on_error", True)
            ):
                await asyncio.sleep(0)  # let requests already handed over join the queue
                await self._abort_queued(self._failed_at)

    async def _abort_queued(self, before: float) -> None:
        """Abort the queued executes that arrived before the error reply was sent
        (a request sent after the client saw the error is not aborted).
        """
        while self._executes and self._executes[0].received < before:
            request = self._executes.popleft()
            publisher = self.services.publisher
            publisher.status("busy", request.msg)
            self.reply(request, {"status": "aborted", "execution_count": None})
            publisher.status("idle", request.msg)

    async def handle(self, request: Request) -> dict[str, Any] | None:
        """busy, the handler's reply, idle: every request, whatever it does."""
        publisher = self.services.publisher
        token = current_request.set(request)
        publisher.status("busy", request.msg)
        try:
            handler = self._handlers.get(request.msg_type)
            if handler is None:
                content: dict[str, Any] | None = unknown_request(request)
            else:
                try:
                    content = await handler(self, request)
                except Exception as exc:  # a handler bug: the client still gets an answer
                    log.exception("error handling %s", request.msg_type)
                    content = error_content(exc)
            if content is not None:
                if content.get("status") == "error":
                    self._failed_at = time.monotonic()
                self.reply(request, content)
            return content
        finally:
            publisher.status("idle", request.msg)
            current_request.reset(token)

    def reply(self, request: Request, content: dict[str, Any]) -> None:
        self.services.send_reply(request, content)


def error_content(exc: BaseException) -> dict[str, Any]:
    """An error reply's content for ``exc``."""
    return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": []}


def subshell_not_found(subshell_id: object) -> dict[str, Any]:
    """The error reply for a subshell id the kernel does not know (JEP 91)."""
    return {
        "status": "error",
        "ename": "SubshellNotFound",
        "evalue": f"no subshell with id {subshell_id!r}",
        "traceback": [],
    }


def unknown_request(request: Request) -> dict[str, Any] | None:
    """The answer to a message type nobody handles: an error reply for ``*_request``."""
    log.warning("unknown message type %r on %s", request.msg_type, request.channel)
    if not request.msg_type.endswith("_request"):
        return None
    return {
        "status": "error",
        "ename": "UnknownMessageType",
        "evalue": f"this kernel does not handle {request.msg_type!r} on {Channel(request.channel)}",
        "traceback": [],
    }
