"""KernelClient: every request of messaging protocol 5.5, over a KernelConnection (async).

Each method sends one request and returns its reply (comm messages, which
have none, return their msg_id). ``subshell_id`` picks a subshell (JEP 91)
for shell requests. ::

    async with KernelClient(info) as client:
        await client.wait_for_ready()
        reply = await client.execute_interactive("print('hi')")
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from kernelyard.client import requests
from kernelyard.client.connection import KernelConnection
from kernelyard.client.execution import Execution
from kernelyard.client.output import TextOutput
from kernelyard.errors import ReplyTimeout
from kernelyard.wire import Channel, Message

__all__ = ["KernelClient", "OutputHook", "StdinHook"]

log = logging.getLogger(__name__)

OutputHook = Callable[[Message], object]
StdinHook = Callable[[Message], str | Awaitable[str]]
JSONDict = dict[str, Any]


class KernelClient(KernelConnection):
    """An async client of one kernel. Use as ``async with``; see the module docstring."""

    async def kernel_info(
        self, *, channel: Channel = Channel.SHELL, timeout: float | None = None
    ) -> Message:
        """``kernel_info_request`` on shell, or on control (5.5)."""
        return await self._call("kernel_info_request", channel=channel, timeout=timeout)

    async def execute(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool = False,
        stop_on_error: bool = True,
        subshell_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Run ``code``; returns the ``execute_reply`` (outputs go to :meth:`iopub`)."""
        content = requests.execute_content(
            code,
            silent=silent,
            store_history=store_history,
            user_expressions=user_expressions,
            allow_stdin=allow_stdin,
            stop_on_error=stop_on_error,
        )
        return await self._call(
            "execute_request", content, subshell_id=subshell_id, timeout=timeout
        )

    async def execute_interactive(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        subshell_id: str | None = None,
        output_hook: OutputHook | None = None,
        stdin_hook: StdinHook | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Run ``code``, pass each output to ``output_hook``, answer input with ``stdin_hook``.

        Returns the ``execute_reply`` once the kernel is idle again. The default
        ``output_hook`` prints as jupyter_client does. A synchronous
        ``stdin_hook`` (such as ``input``) runs in a worker thread, so the
        client keeps working while it waits. ``allow_stdin`` defaults to
        whether a ``stdin_hook`` was given.
        """
        hook = output_hook if output_hook is not None else TextOutput()
        content = requests.execute_content(
            code,
            silent=silent,
            store_history=store_history,
            user_expressions=user_expressions,
            allow_stdin=stdin_hook is not None if allow_stdin is None else allow_stdin,
            stop_on_error=stop_on_error,
        )
        msg = self.message("execute_request", content, subshell_id=subshell_id)
        self._check_open()
        execution = Execution(hook)
        self._executions[msg.msg_id] = execution
        try:
            with anyio.fail_after(timeout):
                await self.send(msg)
                while (request := await execution.next_event()) is not None:
                    await self._answer_input(request, stdin_hook)
        except TimeoutError:
            raise ReplyTimeout(
                f"execute did not finish within {timeout} s",
                msg_id=msg.msg_id,
                msg_type="execute_request",
            ) from None
        finally:
            self._executions.pop(msg.msg_id, None)
            self._protocol.forget(msg.msg_id)
            execution.close()
        assert execution.reply is not None
        return execution.reply

    async def _answer_input(self, request: Message, stdin_hook: StdinHook | None) -> None:
        if stdin_hook is None:
            log.warning("the kernel asked for input but no stdin_hook was given; sending ''")
            value = ""
        elif inspect.iscoroutinefunction(stdin_hook):
            value = await stdin_hook(request)
        else:
            result = await anyio.to_thread.run_sync(stdin_hook, request)
            value = await result if inspect.isawaitable(result) else result
        await self.input(value, parent=request)

    async def complete(
        self,
        code: str,
        cursor_pos: int | None = None,
        *,
        subshell_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        content = requests.complete_content(code, cursor_pos)
        return await self._call(
            "complete_request", content, subshell_id=subshell_id, timeout=timeout
        )

    async def inspect(
        self,
        code: str,
        cursor_pos: int | None = None,
        detail_level: int = 0,
        *,
        subshell_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        content = requests.inspect_content(code, cursor_pos, detail_level)
        return await self._call(
            "inspect_request", content, subshell_id=subshell_id, timeout=timeout
        )

    async def history(
        self,
        *,
        raw: bool = True,
        output: bool = False,
        hist_access_type: str = "range",
        session: int = 0,
        start: int = 0,
        stop: int | None = None,
        n: int | None = None,
        pattern: str | None = None,
        unique: bool = False,
        timeout: float | None = None,
    ) -> Message:
        content = requests.history_content(
            raw=raw,
            output=output,
            hist_access_type=hist_access_type,
            session=session,
            start=start,
            stop=stop,
            n=n,
            pattern=pattern,
            unique=unique,
        )
        return await self._call("history_request", content, timeout=timeout)

    async def is_complete(
        self, code: str, *, subshell_id: str | None = None, timeout: float | None = None
    ) -> Message:
        return await self._call(
            "is_complete_request", {"code": code}, subshell_id=subshell_id, timeout=timeout
        )

    async def comm_info(
        self, target_name: str | None = None, *, timeout: float | None = None
    ) -> Message:
        content = {} if target_name is None else {"target_name": target_name}
        return await self._call("comm_info_request", content, timeout=timeout)

    async def shutdown(self, *, restart: bool = False, timeout: float | None = None) -> Message:
        """``shutdown_request`` on control; returns the ``shutdown_reply``."""
        return await self._call(
            "shutdown_request", {"restart": restart}, channel=Channel.CONTROL, timeout=timeout
        )

    async def interrupt(self, *, timeout: float | None = None) -> Message:
        """``interrupt_request`` on control (kernels with ``interrupt_mode: "message"``)."""
        return await self._call("interrupt_request", channel=Channel.CONTROL, timeout=timeout)

    async def input(self, value: str, *, parent: Message | None = None) -> None:
        """Answer an ``input_request`` (``parent``) with ``value`` on stdin."""
        await self.send(
            self.message("input_reply", {"value": value}, channel=Channel.STDIN, parent=parent)
        )

    async def debug_request(
        self, content: Mapping[str, Any], *, timeout: float | None = None
    ) -> Message:
        """A Debug Adapter Protocol request on control; returns the ``debug_reply``."""
        return await self._call(
            "debug_request", dict(content), channel=Channel.CONTROL, timeout=timeout
        )

    async def create_subshell(self, *, timeout: float | None = None) -> Message:
        """JEP 91: a new subshell; its id is ``reply.content["subshell_id"]``."""
        return await self._call("create_subshell_request", channel=Channel.CONTROL, timeout=timeout)

    async def delete_subshell(self, subshell_id: str, *, timeout: float | None = None) -> Message:
        return await self._call(
            "delete_subshell_request",
            {"subshell_id": subshell_id},
            channel=Channel.CONTROL,
            timeout=timeout,
        )

    async def list_subshell(self, *, timeout: float | None = None) -> Message:
        return await self._call("list_subshell_request", channel=Channel.CONTROL, timeout=timeout)

    async def comm_open(
        self,
        target_name: str,
        data: Mapping[str, Any] | None = None,
        *,
        comm_id: str,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
        subshell_id: str | None = None,
    ) -> str:
        """Open a comm (no reply in the protocol); returns the msg_id."""
        content = {"comm_id": comm_id, "target_name": target_name, "data": dict(data or {})}
        return await self._send_comm("comm_open", content, metadata, buffers, subshell_id)

    async def comm_msg(
        self,
        comm_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
        subshell_id: str | None = None,
    ) -> str:
        content = {"comm_id": comm_id, "data": dict(data or {})}
        return await self._send_comm("comm_msg", content, metadata, buffers, subshell_id)

    async def comm_close(
        self,
        comm_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        subshell_id: str | None = None,
    ) -> str:
        content = {"comm_id": comm_id, "data": dict(data or {})}
        return await self._send_comm("comm_close", content, None, (), subshell_id)

    async def _send_comm(
        self,
        msg_type: str,
        content: JSONDict,
        metadata: Mapping[str, Any] | None,
        buffers: Sequence[bytes],
        subshell_id: str | None,
    ) -> str:
        msg = self.message(
            msg_type, content, metadata=metadata, buffers=buffers, subshell_id=subshell_id
        )
        await self.send(msg)
        return msg.msg_id
