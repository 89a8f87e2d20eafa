"""The shell channel's request handlers (and the ones control shares).

Each handler takes the worker and the request and returns the reply content
(None: no reply, as for comm messages). They run on the worker's loop with
:data:`~kernelyard.kernel.context.current_request` set, and ask the kernel
for what they need through the worker's
:class:`~kernelyard.kernel.services.ShellServices` only. Handlers that need
IPython await its ``shell()``, so requests that arrive while IPython is
still importing wait for it instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from kernelyard.kernel.session import Request
from kernelyard.kernel.worker import Handler, ShellWorker

__all__ = ["SHELL_HANDLERS"]

log = logging.getLogger(__name__)


async def kernel_info(worker: ShellWorker, request: Request) -> dict[str, Any]:
    return worker.services.kernel_info()


async def execute(worker: ShellWorker, request: Request) -> dict[str, Any]:
    services = worker.services
    shell = await services.shell()
    content = request.content
    code = content.get("code", "")
    if not isinstance(code, str):
        return {
            "status": "error",
            "ename": "TypeError",
            "evalue": "code must be a string",
            "traceback": [],
            "execution_count": shell.execution_count,
        }
    silent = bool(content.get("silent", False))
    store_history = bool(content.get("store_history", not silent))
    if not silent:
        services.publisher.publish(
            "execute_input", {"code": code, "execution_count": shell.execution_count}, request.msg
        )
    if worker.subshell_id is None:
        services.requests.fallback = request
    shell.last_error = None
    services.interrupts.cell_starts()
    worker.executing = True
    try:
        result = await _run_cell(worker, shell, code, store_history=store_history, silent=silent)
    finally:
        worker.executing = False
    # Output the cell wrote stays ahead of the reply and the idle status (also what
    # a subprocess it ran wrote to the captured descriptors).
    services.fd_capture.drain()
    services.publisher.flush_now()
    count = shell.execution_count - 1 if store_history else shell.execution_count
    reply: dict[str, Any]
    if result is not None and result.success:
        reply = {"status": "ok", "execution_count": count}
    else:
        error = shell.last_error or {
            "ename": "KeyboardInterrupt" if result is None else "UnknownError",
            "evalue": "",
            "traceback": [],
        }
        reply = {"status": "error", "execution_count": count, **error}
    expressions = content.get("user_expressions") or {}
    reply["user_expressions"] = (
        shell.user_expressions(expressions) if reply["status"] == "ok" else {}
    )
    reply["payload"] = shell.payload_manager.read_payload()
    shell.payload_manager.clear_payload()
    return reply


async def _run_cell(
    worker: ShellWorker, shell: Any, code: str, *, store_history: bool, silent: bool
) -> Any:
    """Run a cell as IPython's ``run_cell`` does, transforming it once, not twice.

    A cell without top-level await is driven to the end right here; one with
    it runs as a task on this worker's loop (so an interrupt can cancel it).
    ``post_execute`` and ``post_run_cell`` fire for both, as in ipykernel.
    """
    try:
        transformed: str | None = shell.transform_cell(code)
        preprocessing_exc = None
    except Exception:
        transformed, preprocessing_exc = code, sys.exc_info()
    coro = shell.run_cell_async(
        code,
        store_history=store_history,
        silent=silent,
        transformed_cell=transformed,
        preprocessing_exc_tuple=preprocessing_exc,
    )
    # Unlike IPython 9's run_cell, output is not teed into history_manager.outputs:
    # the tee doubles the cost of every write (100,000 prints: 0.28 -> 0.57 s) and
    # keeps all of a cell's output in memory for the kernel's lifetime.
    result = None
    try:
        if shell.should_run_async(
            code, transformed_cell=transformed, preprocessing_exc_tuple=preprocessing_exc
        ):
            result = await _run_as_task(worker, shell, coro)
        else:
            try:
                result = _run_inline(coro)
            except (Exception, KeyboardInterrupt):  # outside the user's code: as run_cell
                shell.showtraceback(running_compiled_code=True)
    finally:
        shell.events.trigger("post_execute")
        if not silent:
            shell.events.trigger("post_run_cell", result)
    if store_history:
        shell.history_writer.cell_done()
    return result


def _run_inline(coro: Any) -> Any:
    """Drive a coroutine that never awaits anything pending to its end (no event loop)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a cell without top-level await awaited something")


async def _run_as_task(worker: ShellWorker, shell: Any, coro: Any) -> Any:
    task = asyncio.ensure_future(coro)
    worker.current_execute = task
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled() and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            shell.showtraceback((KeyboardInterrupt, KeyboardInterrupt(), None))
            return None
        raise
    finally:
        worker.current_execute = None


async def complete(worker: ShellWorker, request: Request) -> dict[str, Any]:
    from IPython.core.completer import provisionalcompleter, rectify_completions

    shell = await worker.services.shell()
    code = request.content.get("code", "")
    cursor = request.content.get("cursor_pos")
    if cursor is None:
        cursor = len(code)
    with provisionalcompleter():
        completions = list(rectify_completions(code, shell.Completer.completions(code, cursor)))
    types = [
        {"start": c.start, "end": c.end, "text": c.text, "type": c.type, "signature": c.signature}
        for c in completions
    ]
    start, end = (completions[0].start, completions[0].end) if completions else (cursor, cursor)
    return {
        "status": "ok",
        "matches": [c.text for c in completions],
        "cursor_start": start,
        "cursor_end": end,
        "metadata": {"_jupyter_types_experimental": types},
    }


async def inspect(worker: ShellWorker, request: Request) -> dict[str, Any]:
    from IPython.utils.tokenutil import token_at_cursor

    shell = await worker.services.shell()
    code = request.content.get("code", "")
    cursor = request.content.get("cursor_pos")
    name = token_at_cursor(code, len(code) if cursor is None else cursor)
    detail = 1 if request.content.get("detail_level", 0) else 0
    reply: dict[str, Any] = {"status": "ok", "data": {}, "metadata": {}, "found": False}
    try:
        bundle = shell.object_inspect_mime(name, detail_level=detail)
    except KeyError:
        return reply
    if not shell.enable_html_pager:
        bundle.pop("text/html", None)
    reply["data"] = bundle
    reply["found"] = True
    return reply


async def history(worker: ShellWorker, request: Request) -> dict[str, Any]:
    shell = await worker.services.shell()
    content = request.content
    output = bool(content.get("output", False))
    raw = bool(content.get("raw", True))
    access = content.get("hist_access_type", "tail")
    manager = shell.history_manager
    if access == "tail":
        items = manager.get_tail(
            int(content.get("n", 10)), raw=raw, output=output, include_latest=True
        )
    elif access == "range":
        items = manager.get_range(
            int(content.get("session", 0)),
            int(content.get("start", 0)),
            int(content.get("stop") or 0) or None,
            raw=raw,
            output=output,
        )
    elif access == "search":
        items = manager.search(
            content.get("pattern", "*"),
            raw=raw,
            output=output,
            n=content.get("n"),
            unique=bool(content.get("unique", False)),
        )
    else:
        return {
            "status": "error",
            "ename": "ValueError",
            "evalue": f"unknown hist_access_type {access!r}",
            "traceback": [],
            "history": [],
        }
    # IPython numbers the running session 0 in ranges; clients want the real number.
    current = manager.session_number
    return {
        "status": "ok",
        "history": [[session or current, line, entry] for session, line, entry in items],
    }


async def is_complete(worker: ShellWorker, request: Request) -> dict[str, Any]:
    shell = await worker.services.shell()
    status, indent = shell.input_transformer_manager.check_complete(request.content.get("code", ""))
    reply: dict[str, Any] = {"status": status}
    if status == "incomplete":
        reply["indent"] = " " * (indent or 0)
    return reply


async def comm_info(worker: ShellWorker, request: Request) -> dict[str, Any]:
    await worker.services.shell()  # the comm manager comes with the shell
    target = request.content.get("target_name")
    comms = worker.services.comms.comms
    return {
        "status": "ok",
        "comms": {
            comm_id: {"target_name": comm.target_name}
            for comm_id, comm in list(comms.items())
            if target is None or comm.target_name == target
        },
    }


async def comm_open(worker: ShellWorker, request: Request) -> None:
    from kernelyard.kernel.comms import dispatch  # imported with IPython, off the start path

    await worker.services.shell()  # comm targets are registered by code the shell ran
    dispatch(worker.services.comms, request.msg)


async def comm_msg(worker: ShellWorker, request: Request) -> None:
    from kernelyard.kernel.comms import dispatch

    await worker.services.shell()
    dispatch(worker.services.comms, request.msg)


async def comm_close(worker: ShellWorker, request: Request) -> None:
    from kernelyard.kernel.comms import dispatch

    await worker.services.shell()
    dispatch(worker.services.comms, request.msg)


SHELL_HANDLERS: dict[str, Handler] = {
    "kernel_info_request": kernel_info,
    "execute_request": execute,
    "complete_request": complete,
    "inspect_request": inspect,
    "history_request": history,
    "is_complete_request": is_complete,
    "comm_info_request": comm_info,
    "comm_open": comm_open,
    "comm_msg": comm_msg,
    "comm_close": comm_close,
}
