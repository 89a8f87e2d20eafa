"""The control channel's thread: answers while user code holds the shells.

Runs kernel_info, interrupt, shutdown and the subshell requests (JEP 91),
one at a time, each bracketed by busy/idle on IOPub, and hands debug
requests to the debugger's thread (they may wait for debugpy). No user code
ever runs on this thread, so an interrupt or a shutdown is answered while a
cell blocks.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernelyard.kernel.context import current_request
from kernelyard.kernel.debugger import do_not_trace
from kernelyard.kernel.session import Request
from kernelyard.kernel.worker import error_content, subshell_not_found, unknown_request

if TYPE_CHECKING:
    from kernelyard.kernel.kernel import Kernel

__all__ = ["ControlThread"]

log = logging.getLogger(__name__)

ControlHandler = Callable[["Kernel", Request], dict[str, Any]]


def _kernel_info(kernel: Kernel, request: Request) -> dict[str, Any]:
    return kernel.kernel_info()


def _shutdown(kernel: Kernel, request: Request) -> dict[str, Any]:
    # Before the reply: a manager may end the process as soon as it has the reply.
    kernel.debugger.remove_cells()
    content = {"status": "ok", "restart": bool(request.content.get("restart", False))}
    kernel.publisher.publish("shutdown_reply", content, request.msg)
    kernel.request_exit()
    return content


def _interrupt(kernel: Kernel, request: Request) -> dict[str, Any]:
    kernel.interrupt()
    return {"status": "ok"}


def _create_subshell(kernel: Kernel, request: Request) -> dict[str, Any]:
    return {"status": "ok", "subshell_id": kernel.create_subshell()}


def _delete_subshell(kernel: Kernel, request: Request) -> dict[str, Any]:
    subshell_id = request.content.get("subshell_id")
    if not isinstance(subshell_id, str) or not kernel.delete_subshell(subshell_id):
        return subshell_not_found(subshell_id)
    return {"status": "ok"}


def _list_subshell(kernel: Kernel, request: Request) -> dict[str, Any]:
    return {"status": "ok", "subshell_id": kernel.subshell_ids()}


CONTROL_HANDLERS: dict[str, ControlHandler] = {
    "kernel_info_request": _kernel_info,
    "shutdown_request": _shutdown,
    "interrupt_request": _interrupt,
    "create_subshell_request": _create_subshell,
    "delete_subshell_request": _delete_subshell,
    "list_subshell_request": _list_subshell,
}


class ControlThread:
    """Owns no socket: requests come from the I/O thread, replies go back through it."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._thread = do_not_trace(
            threading.Thread(target=self._run, name="kernelyard-control", daemon=True)
        )

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: Request) -> None:
        self._queue.put(request)

    def stop(self, timeout: float = 2.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while (request := self._queue.get()) is not None:
            self._handle(request)

    def _handle(self, request: Request) -> None:
        kernel = self._kernel
        if request.msg_type == "debug_request":  # may wait for debugpy: served elsewhere
            kernel.debugger.submit(request)
            return
        token = current_request.set(request)
        kernel.publisher.status("busy", request.msg)
        try:
            handler = CONTROL_HANDLERS.get(request.msg_type)
            try:
                content = unknown_request(request) if handler is None else handler(kernel, request)
            except Exception as exc:
                log.exception("error handling %s", request.msg_type)
                content = error_content(exc)
            if content is not None:
                kernel.send_reply(request, content)
        finally:
            kernel.publisher.status("idle", request.msg)
            current_request.reset(token)
