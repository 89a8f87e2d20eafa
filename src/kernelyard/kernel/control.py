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
from kernelyard.kernel.debugpy_server import do_not_trace
from kernelyard.kernel.session import Request
from kernelyard.kernel.worker import error_content, subshell_not_found, unknown_request

if TYPE_CHECKING:
    from kernelyard.kernel.services import ControlServices

__all__ = ["ControlThread"]

log = logging.getLogger(__name__)

ControlHandler = Callable[["ControlServices", Request], dict[str, Any]]


def _kernel_info(services: ControlServices, request: Request) -> dict[str, Any]:
    return services.kernel_info()


def _shutdown(services: ControlServices, request: Request) -> dict[str, Any]:
    # Before the reply: a manager may end the process as soon as it has the reply.
    services.debugger.remove_cells()
    content = {"status": "ok", "restart": bool(request.content.get("restart", False))}
    services.publisher.publish("shutdown_reply", content, request.msg)
    services.request_exit()
    return content


def _interrupt(services: ControlServices, request: Request) -> dict[str, Any]:
    services.interrupts.interrupt()
    return {"status": "ok"}


def _create_subshell(services: ControlServices, request: Request) -> dict[str, Any]:
    return {"status": "ok", "subshell_id": services.subshells.create()}


def _delete_subshell(services: ControlServices, request: Request) -> dict[str, Any]:
    subshell_id = request.content.get("subshell_id")
    if not isinstance(subshell_id, str) or not services.subshells.delete(subshell_id):
        return subshell_not_found(subshell_id)
    return {"status": "ok"}


def _list_subshell(services: ControlServices, request: Request) -> dict[str, Any]:
    return {"status": "ok", "subshell_id": services.subshells.ids()}


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

    def __init__(self, services: ControlServices) -> None:
        self._services = services
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
        services = self._services
        if request.msg_type == "debug_request":  # may wait for debugpy: served elsewhere
            services.debugger.submit(request)
            return
        token = current_request.set(request)
        services.publisher.status("busy", request.msg)
        try:
            handler = CONTROL_HANDLERS.get(request.msg_type)
            try:
                content = (
                    unknown_request(request) if handler is None else handler(services, request)
                )
            except Exception as exc:
                log.exception("error handling %s", request.msg_type)
                content = error_content(exc)
            if content is not None:
                services.send_reply(request, content)
        finally:
            services.publisher.status("idle", request.msg)
            current_request.reset(token)
