"""input() and getpass() in the kernel: ask the client that sent the execute.

An ``input_request`` goes on the stdin channel to the identities of the
request the calling code works for, and the calling thread blocks until the
matching ``input_reply`` arrives (matched by the request's msg_id, so prompts
from several subshells at once each get their own answer). On the main thread
the wait is interruptible: SIGINT raises KeyboardInterrupt out of it.
"""

from __future__ import annotations

import builtins
import getpass
import logging
import threading
from typing import TYPE_CHECKING, Any

from kernelyard.kernel.session import Request
from kernelyard.wire.channel import Channel

if TYPE_CHECKING:
    from kernelyard.kernel.services import StdinServices

__all__ = ["StdinBroker"]

log = logging.getLogger(__name__)


class _Waiter:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: str | None = None


class StdinBroker:
    """Routes input requests out and input replies back to the waiting thread."""

    def __init__(self, services: StdinServices) -> None:
        self._services = services
        self._waiting: dict[str, _Waiter] = {}
        self._lock = threading.Lock()

    def install(self) -> None:
        """Make ``input`` and ``getpass.getpass`` ask the frontend."""
        builtins.input = self.input
        getpass.getpass = self.getpass

    def input(self, prompt: Any = "") -> str:
        return self.ask(str(prompt), password=False)

    def getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        return self.ask(prompt, password=True)

    def ask(self, prompt: str, *, password: bool) -> str:
        """Send an input_request for the current request and wait for the answer."""
        services = self._services
        request = services.requests.get()
        if request is None or not request.content.get("allow_stdin", False):
            from IPython.core.error import StdinNotImplementedError

            raise StdinNotImplementedError(
                "raw_input was called, but this frontend does not support input requests."
            )
        services.publisher.flush_now()  # the prompt shows below what the cell printed
        msg = services.session.message(
            "input_request", {"prompt": prompt, "password": password}, request.msg
        )
        waiter = _Waiter()
        with self._lock:
            self._waiting[msg.msg_id] = waiter
        try:
            services.sockets.send(Channel.STDIN, services.session.frames(msg, request.identities))
            waiter.event.wait()
        finally:
            with self._lock:
                self._waiting.pop(msg.msg_id, None)
        value = waiter.value or ""
        if value == "\x04":  # the frontend's way to say EOF
            raise EOFError("EOF when reading a line")
        return value

    def deliver(self, reply: Request) -> None:
        """An input_reply arrived (I/O thread): wake the thread that asked."""
        if reply.msg_type != "input_reply":
            log.warning("ignoring %r on the stdin channel", reply.msg_type)
            return
        parent_id = reply.msg.parent_msg_id
        with self._lock:
            waiter = self._waiting.get(parent_id or "")
            if waiter is None and len(self._waiting) == 1:
                waiter = next(iter(self._waiting.values()))  # a client that drops parent ids
        if waiter is None:
            log.warning("an input_reply nobody waits for (parent %s)", parent_id)
            return
        value = reply.content.get("value", "")
        waiter.value = value if isinstance(value, str) else str(value)
        waiter.event.set()
