"""FakeProcess: one run of a fake kernel, answering the messaging protocol in memory.

It stands where a kernel process would: connections (:class:`Peer`) hand it
signed frames, it verifies them with the session protocol's kernel side
(:class:`~kernelyard.wire.KernelProtocol`), and it answers as a Python
kernel does: a ``busy`` and an ``idle`` status around every request, replies
on the request's channel to the connection that sent it, IOPub to every
connection. Shell requests run one at a time, in order; control requests at
once, even while a cell runs. Cells run in a worker thread
(:mod:`kernelyard.testing.cell`), so ``input()`` and interrupts work as in a
real kernel while the event loop goes on.

Answered: ``kernel_info``, ``execute`` (``silent``, ``store_history``,
``user_expressions``, ``allow_stdin``, ``stop_on_error``: requests queued
behind a failed one are aborted), ``complete``, ``inspect``,
``is_complete``, ``history``, ``comm_info``, ``interrupt`` and ``shutdown``
(after its reply the process exits, as a kernel's does). A ``comm_open`` is
answered with ``comm_close`` (there are no comm targets); other messages are
ignored, as ipykernel ignores unknown types.
"""

from __future__ import annotations

import logging
import math
import platform
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus

from kernelyard._clock import utcnow
from kernelyard.wire import (
    PROTOCOL_VERSION,
    Channel,
    Dropped,
    Frame,
    Frames,
    KernelProtocol,
    Message,
    Signer,
)

from .cell import (
    CellResult,
    CellRunner,
    KernelStopped,
    StdinNotImplementedError,
    completeness,
    completions,
    word_at,
)

__all__ = ["KERNEL_INFO", "FakeProcess", "Peer"]

log = logging.getLogger(__name__)

#: The fake kernel's ``kernel_info_reply`` content.
KERNEL_INFO: dict[str, Any] = {
    "status": "ok",
    "protocol_version": PROTOCOL_VERSION,
    "implementation": "kernelyard-fake",
    "implementation_version": "1",
    "language_info": {
        "name": "python",
        "version": platform.python_version(),
        "mimetype": "text/x-python",
        "file_extension": ".py",
    },
    "banner": "kernelyard.testing: a fake Python kernel inside the test's process",
    "help_links": [],
    "debugger": False,
}


class Peer(Protocol):
    """A connection to the process: it gets the frames the kernel sends it."""

    def arrive(self, channel: Channel, frames: list[Frame]) -> None: ...


Handler = Callable[[Peer, Message], Awaitable[dict[str, Any]]]


class FakeProcess:
    """One run of a fake kernel; see the module docstring. Run :meth:`run` in a task.

    ``on_exit(reason)`` is called when the kernel ends by itself (a cell's
    ``crash()``, a client's ``shutdown_request``); ``on_message`` gets every
    valid message it receives.
    """

    def __init__(
        self,
        signer: Signer,
        *,
        on_exit: Callable[[str], None],
        on_message: Callable[[Message], None],
    ) -> None:
        self.protocol = KernelProtocol(signer, clock=utcnow)
        self.runner = CellRunner()
        self.execution_count = 0
        self.history: list[str] = []
        self.stopped = False
        self._on_exit, self._on_message = on_exit, on_message
        self._peers: list[Peer] = []
        self._shell_send, self._shell = anyio.create_memory_object_stream[tuple[Peer, Message]](
            math.inf
        )
        self._stdin_send, self._stdin = anyio.create_memory_object_stream[Message](math.inf)
        self._scope = anyio.CancelScope()
        self._asking: anyio.CancelScope | None = None
        self._wake = threading.Event()  # set by an interrupt or the stop: a sleep ends
        self._interrupted = False
        self._control: TaskGroup | None = None
        self._handlers: dict[str, Handler] = {
            "kernel_info_request": self._kernel_info,
            "execute_request": self._execute,
            "complete_request": self._complete,
            "inspect_request": self._inspect,
            "is_complete_request": self._is_complete,
            "history_request": self._history,
            "comm_info_request": self._comm_info,
            "interrupt_request": self._interrupt_request,
            "shutdown_request": self._shutdown_request,
        }

    # -- connections and lifetime --------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        if peer not in self._peers:
            self._peers.append(peer)

    def disconnect(self, peer: Peer) -> None:
        if peer in self._peers:
            self._peers.remove(peer)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop`: control at once, shell one request at a time."""
        try:
            with self._scope:
                async with anyio.create_task_group() as control:
                    self._control = control
                    task_status.started()
                    async for peer, msg in self._shell:
                        await self._handle(peer, msg)
        finally:
            for stream in (self._shell_send, self._shell, self._stdin_send, self._stdin):
                stream.close()

    def stop(self) -> None:
        """The process ends: nothing more is answered; a running cell's thread is left
        to end at its next print, input or sleep.
        """
        self.stopped = True
        self._wake.set()
        if self._asking is not None:
            self._asking.cancel()
        self._scope.cancel()
        self._peers.clear()
        self._shell_send.close()

    def interrupt(self) -> None:
        """Interrupt the running cell (at its next print, input or sleep)."""
        self._interrupted = True
        self._wake.set()
        if self._asking is not None:
            self._asking.cancel()

    # -- in ----------------------------------------------------------------------------------

    def receive(self, peer: Peer, channel: Channel, frames: Frames) -> None:
        """Frames a connection sent on ``channel`` (shell, control or stdin)."""
        if self.stopped:
            return
        event = self.protocol.receive(channel, frames)
        if isinstance(event, Dropped):
            log.warning("fake kernel: dropping an invalid message: %s", event.error)
            return
        msg = event.message
        self._on_message(msg)
        if channel is Channel.SHELL:
            self._shell_send.send_nowait((peer, msg))
        elif channel is Channel.CONTROL and self._control is not None:
            self._control.start_soon(self._handle, peer, msg)
        elif channel is Channel.STDIN and msg.msg_type == "input_reply":
            self._stdin_send.send_nowait(msg)

    async def _handle(self, peer: Peer, msg: Message) -> None:
        msg_type = msg.msg_type
        if msg_type == "comm_open":
            self.publish("comm_close", {"comm_id": msg.content.get("comm_id"), "data": {}}, msg)
            return
        handler = self._handlers.get(msg_type)
        if handler is None:
            if msg_type.endswith("_request"):
                log.warning("fake kernel: unknown message type %s", msg_type)
            return
        self.publish("status", {"execution_state": "busy"}, msg)
        content = await handler(peer, msg)
        self._answer(peer, msg, content)
        self.publish("status", {"execution_state": "idle"}, msg)
        if msg_type == "shutdown_request":
            self._on_exit("the kernel exited after a shutdown_request")

    # -- out ---------------------------------------------------------------------------------

    def publish(self, msg_type: str, content: dict[str, Any], parent: Message | None) -> None:
        """Send an IOPub message to every connection."""
        if self.stopped:
            return
        frames = self.protocol.frames(self.protocol.message(msg_type, content, parent))
        for peer in list(self._peers):
            peer.arrive(Channel.IOPUB, frames)

    def _send(self, peer: Peer, channel: Channel, msg: Message) -> None:
        if not self.stopped and peer in self._peers:
            peer.arrive(channel, self.protocol.frames(msg))

    def _answer(self, peer: Peer, request: Message, content: dict[str, Any]) -> None:
        msg_type = request.msg_type.removesuffix("_request") + "_reply"
        reply = self.protocol.message(msg_type, content, request)
        self._send(peer, request.channel or Channel.SHELL, reply)

    async def ask(self, prompt: str, parent: Message, peer: Peer) -> str:
        """Send an ``input_request`` to ``peer`` and wait for its ``input_reply``.

        KeyboardInterrupt when interrupted meanwhile; KernelStopped when stopped.
        """
        while True:  # an answer to an earlier question that nobody waited for
            try:
                self._stdin.receive_nowait()
            except anyio.WouldBlock:
                break
        request = self.protocol.message(
            "input_request", {"prompt": prompt, "password": False}, parent
        )
        self._send(peer, Channel.STDIN, request)
        with anyio.CancelScope() as scope:
            self._asking = scope
            reply = await self._stdin.receive()
        self._asking = None
        if scope.cancelled_caught:
            self.check()
            raise KernelStopped
        value = reply.content.get("value", "")
        return value if isinstance(value, str) else str(value)

    def crash(self) -> None:
        """The process dies, as if it had exited unasked (a cell's ``crash()``)."""
        self._on_exit("the kernel crashed: crash() was called in a cell")

    def wait(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``, or until an interrupt or the stop."""
        self._wake.wait(max(0.0, seconds))

    def check(self) -> None:
        """Raise what a cell's I/O call must raise now (stopped, interrupted), if anything."""
        if self.stopped:
            raise KernelStopped
        if self._interrupted:
            self._interrupted = False
            self._wake.clear()
            raise KeyboardInterrupt

    # -- handlers -----------------------------------------------------------------------------

    async def _kernel_info(self, peer: Peer, msg: Message) -> dict[str, Any]:
        return dict(KERNEL_INFO)

    async def _execute(self, peer: Peer, msg: Message) -> dict[str, Any]:
        content = msg.content
        code = str(content.get("code", ""))
        silent = content.get("silent") is True
        if not silent and content.get("store_history", True) is not False:
            self.execution_count += 1
            self.history.append(code)
        count = self.execution_count
        if not silent:
            self.publish("execute_input", {"code": code, "execution_count": count}, msg)
        expressions = content.get("user_expressions")
        io = _CellIO(self, msg, peer, allow_stdin=content.get("allow_stdin", True) is not False)
        self._interrupted = False  # an interrupt while idle does not reach the next cell
        self._wake.clear()
        try:
            result: CellResult = await anyio.to_thread.run_sync(
                self.runner.run,
                code,
                io,
                expressions if isinstance(expressions, dict) else None,
                abandon_on_cancel=True,
            )
        except KernelStopped:
            return {"status": "aborted"}  # never sent: the process stopped
        if result.error is not None:
            error = {
                "ename": result.error.ename,
                "evalue": result.error.evalue,
                "traceback": result.error.traceback,
            }
            self.publish("error", error, msg)
            if content.get("stop_on_error", True) is not False:
                self._abort_queued()
            return {"status": "error", "execution_count": count, **error}
        if result.data is not None and not silent:
            self.publish(
                "execute_result",
                {"execution_count": count, "data": result.data, "metadata": {}},
                msg,
            )
        return {
            "status": "ok",
            "execution_count": count,
            "user_expressions": result.user_expressions,
            "payload": [],
        }

    def _abort_queued(self) -> None:
        """Requests queued behind a failed execution are not run (ipykernel's stop_on_error)."""
        while True:
            try:
                peer, queued = self._shell.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return
            if queued.msg_type.endswith("_request"):
                self.publish("status", {"execution_state": "busy"}, queued)
                self._answer(peer, queued, {"status": "aborted"})
                self.publish("status", {"execution_state": "idle"}, queued)

    async def _complete(self, peer: Peer, msg: Message) -> dict[str, Any]:
        code = str(msg.content.get("code", ""))
        cursor = msg.content.get("cursor_pos")
        cursor = cursor if isinstance(cursor, int) and 0 <= cursor <= len(code) else len(code)
        matches, start = completions(code, cursor, self.runner.globals)
        return {
            "status": "ok",
            "matches": matches,
            "cursor_start": start,
            "cursor_end": cursor,
            "metadata": {},
        }

    async def _inspect(self, peer: Peer, msg: Message) -> dict[str, Any]:
        code = str(msg.content.get("code", ""))
        cursor = msg.content.get("cursor_pos")
        cursor = cursor if isinstance(cursor, int) and 0 <= cursor <= len(code) else len(code)
        start, end = word_at(code, cursor)
        name = code[start:end]
        found = name in self.runner.globals
        data = {"text/plain": repr(self.runner.globals[name])} if found else {}
        return {"status": "ok", "found": found, "data": data, "metadata": {}}

    async def _is_complete(self, peer: Peer, msg: Message) -> dict[str, Any]:
        status = completeness(str(msg.content.get("code", "")))
        return {"status": status, "indent": ""} if status == "incomplete" else {"status": status}

    async def _history(self, peer: Peer, msg: Message) -> dict[str, Any]:
        n = msg.content.get("n")
        lines = [[0, i + 1, code] for i, code in enumerate(self.history)]
        if msg.content.get("hist_access_type") == "tail" and isinstance(n, int):
            lines = lines[-n:] if n > 0 else []
        return {"status": "ok", "history": lines}

    async def _comm_info(self, peer: Peer, msg: Message) -> dict[str, Any]:
        return {"status": "ok", "comms": {}}

    async def _interrupt_request(self, peer: Peer, msg: Message) -> dict[str, Any]:
        self.interrupt()
        return {"status": "ok"}

    async def _shutdown_request(self, peer: Peer, msg: Message) -> dict[str, Any]:
        return {"status": "ok", "restart": msg.content.get("restart") is True}


class _CellIO:
    """A cell's I/O, called from its worker thread: each call runs on the event loop."""

    def __init__(self, process: FakeProcess, parent: Message, peer: Peer, *, allow_stdin: bool):
        self._process = process
        self._parent = parent
        self._peer = peer
        self._allow_stdin = allow_stdin

    def write(self, name: str, text: str) -> None:
        self._process.check()
        content = {"name": name, "text": text}
        anyio.from_thread.run_sync(self._process.publish, "stream", content, self._parent)

    def display(self, data: dict[str, Any]) -> None:
        self._process.check()
        content = {"data": data, "metadata": {}, "transient": {}}
        anyio.from_thread.run_sync(self._process.publish, "display_data", content, self._parent)

    def input(self, prompt: str) -> str:
        self._process.check()
        if not self._allow_stdin:
            raise StdinNotImplementedError(
                "input was called, but this frontend does not support input requests"
            )
        return anyio.from_thread.run(self._process.ask, prompt, self._parent, self._peer)

    def sleep(self, seconds: float) -> None:
        self._process.check()
        self._process.wait(seconds)
        self._process.check()

    def crash(self) -> None:
        anyio.from_thread.run_sync(self._process.crash)
        raise KernelStopped
