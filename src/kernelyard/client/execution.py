"""One ``execute_interactive`` in flight: where its outputs, input requests and reply go.

The client's readers hand every message that answers the execute to
:meth:`Execution.on_message`, synchronously: outputs go straight to the
output hook, with no task switch per message (an output flood is thousands
of them). Only what needs the waiting task (an input request, the end) is
queued for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio

from kernelyard.errors import ChannelClosed
from kernelyard.wire import Channel, Message

__all__ = ["Execution"]

log = logging.getLogger(__name__)

OutputHook = Callable[[Message], object]


class Execution:
    """Collects one execute's reply and idle status; see the module docstring."""

    def __init__(self, output_hook: OutputHook) -> None:
        self._output_hook = output_hook
        self.reply: Message | None = None
        self._idle = False
        self._failure: BaseException | None = None
        self._closed = False
        # Input requests for the waiting task, then None once the execute is done.
        self._send, self._receive = anyio.create_memory_object_stream[Message | None](math.inf)

    def on_message(self, msg: Message) -> None:
        """Reader callback for a message whose parent is this execute."""
        if self._failure is not None or self._closed:
            return
        channel = msg.channel
        if channel is Channel.IOPUB:
            if msg.msg_type == "status":
                self._idle = msg.content.get("execution_state") == "idle"
            elif msg.msg_type != "execute_input":
                try:
                    self._output_hook(msg)
                except Exception as exc:  # the hook's error is the caller's, not the reader's
                    self.fail(exc)
                    return
        elif channel is Channel.STDIN:
            if msg.msg_type == "input_request":
                self._send.send_nowait(msg)
        elif channel is Channel.SHELL:
            self.reply = msg
        if self.reply is not None and self._idle:
            self._send.send_nowait(None)

    def fail(self, error: BaseException) -> None:
        """End the wait with ``error`` (the kernel died, the client closed, a hook raised)."""
        if self._failure is None and not self._closed:
            self._failure = error
            self._send.send_nowait(None)

    async def next_event(self) -> Message | None:
        """The next input request, or None once the reply and the idle status are in."""
        try:
            item = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ChannelClosed("the client was closed") from None
        if item is None and self._failure is not None:
            raise self._failure
        return item

    def close(self) -> None:
        self._closed = True
        self._send.close()
        self._receive.close()
