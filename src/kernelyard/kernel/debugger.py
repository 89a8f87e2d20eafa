"""The kernel's debugger: JupyterLab's visual debugger, over debugpy (JEP 47, 92, 93).

A ``debug_request`` carries a Debug Adapter Protocol request; its
``debug_reply`` carries the DAP response, and the adapter's events reach the
frontend as ``debug_event`` on IOPub. The control thread hands every
``debug_request`` to :class:`Debugger`, which serves them on a thread of its
own (``kernelyard-debugger``, started by the first one) with an asyncio
loop, one request at a time, in arrival order: a request that waits for the
adapter never delays an interrupt or a shutdown on control.

* ``initialize`` starts debugpy once per process: ``debugpy.listen`` runs on
  the main shell's thread (the thread that runs cells is then traced) and
  starts debugpy's adapter process; this thread connects to the adapter
  (:class:`~.dap_link.DapLink`) and relays requests to it from then on.
* ``attach`` runs DAP's configuration sequence itself (wait for
  ``initialized``, send ``configurationDone``), so the frontend's own
  ``configurationDone`` is answered here; frames of kernelyard are excluded.
* The Jupyter additions to DAP are answered here: ``debugInfo`` (what
  JupyterLab needs to name cells and restore a session), ``dumpCell``,
  ``source``, ``inspectVariables``, ``richInspectVariables``,
  ``copyToGlobals``, ``modules``.
* No user code runs on this thread. While no thread is stopped, variables
  and rich representations are read on the main shell's loop (so they wait
  for a running cell); while one is stopped, debugpy evaluates in its frame.

Every failure is a DAP response with ``success: false`` and a message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kernelyard.errors import DebuggerError
from kernelyard.kernel.dap import CellNames
from kernelyard.kernel.dap_link import DapLink, DapMessage
from kernelyard.kernel.session import Request

if TYPE_CHECKING:
    from kernelyard.kernel.kernel import Kernel
    from kernelyard.kernel.variables import NamespaceExplorer

__all__ = ["Debugger", "do_not_trace"]

log = logging.getLogger(__name__)

T = TypeVar("T")
LocalHandler = Callable[["Debugger", DapMessage], Awaitable[DapMessage]]

#: How long a request that needs the main shell waits for a running cell to end.
MAIN_SHELL_WAIT = 10.0
#: How long ``initialize`` waits for debugpy's adapter process to start.
LISTEN_WAIT = 60.0


def do_not_trace(thread: threading.Thread) -> threading.Thread:
    """Mark one of the kernel's own threads: debugpy neither traces nor stops it."""
    thread.pydev_do_not_trace = True  # type: ignore[attr-defined]
    return thread


def _untraced(thread: threading.Thread) -> bool:
    return bool(getattr(thread, "pydev_do_not_trace", False))


def debugpy_available() -> bool:
    """Whether debugpy can be found in the kernel's environment (not imported here)."""
    import importlib.util

    return importlib.util.find_spec("debugpy") is not None


class Debugger:
    """Serves one kernel's ``debug_request`` messages; see the module docstring."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._available: bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._link = DapLink(self._on_event)
        self._address: tuple[str, int] | None = None
        self._initialized = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._explorer: NamespaceExplorer | None = None
        self._leading_empty_lines: Any = None  # IPython's transform, set aside while debugging
        self._seq = itertools.count(1)
        #: source path -> the breakpoints debugpy set there (for debugInfo).
        self.breakpoints: dict[str, list[dict[str, Any]]] = {}
        #: DAP thread ids stopped at the moment.
        self.stopped_threads: set[int] = set()

    @property
    def available(self) -> bool:
        """Whether this kernel can debug: debugpy is installed (checked once)."""
        if self._available is None:
            self._available = debugpy_available()
        return self._available

    @functools.cached_property
    def cells(self) -> CellNames:
        """The cells' file names (made on first use: nothing of it is on the start path)."""
        import tempfile

        return CellNames(str(Path(tempfile.gettempdir()) / f"kernelyard_{os.getpid()}"))

    @property
    def started(self) -> bool:
        return self._link.connected

    # -- any thread --------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Serve ``request`` (a debug_request) on the debugger's thread; from the control thread."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = do_not_trace(
                threading.Thread(target=self._run, name="kernelyard-debugger", daemon=True)
            )
            self._thread.start()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, request)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving, close the adapter connection, remove the dumped cells."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed already
                loop.call_soon_threadsafe(self._queue.put_nowait, None)
            thread.join(timeout)
        self.remove_cells()

    def remove_cells(self) -> None:
        """Remove the cells ``dumpCell`` wrote (any thread; again is harmless)."""
        if "cells" in self.__dict__:  # named, so cells may have been dumped
            import shutil

            shutil.rmtree(self.cells.directory, ignore_errors=True)

    # -- the debugger's thread -------------------------------------------------------

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        while (request := await self._queue.get()) is not None:
            kernel = self._kernel
            kernel.publisher.status("busy", request.msg)
            try:
                kernel.send_reply(request, await self.respond(request.content))
            finally:
                kernel.publisher.status("idle", request.msg)
        self._link.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def respond(self, request: Mapping[str, Any]) -> DapMessage:
        """The DAP response to the DAP request ``request``; never raises."""
        message = dict(request)  # handlers may add to it; the request stays as it came
        command = message.get("command")
        if message.get("type", "request") != "request" or not isinstance(command, str):
            return self._failure(message, "a debug_request holds a DAP request with a command")
        handler = _LOCAL.get(command)
        try:
            if handler is not None:
                return await handler(self, message)
            return await self._link.request(message)
        except DebuggerError as exc:
            return self._failure(message, str(exc))
        except Exception as exc:  # a bug here: the frontend still gets its answer
            log.exception("error handling the debug request %r", command)
            return self._failure(message, f"{type(exc).__name__}: {exc}")

    def _response(self, request: Mapping[str, Any], body: Mapping[str, Any] | None) -> DapMessage:
        response: DapMessage = {
            "type": "response",
            "seq": next(self._seq),
            "request_seq": request.get("seq"),
            "success": True,
            "command": request.get("command"),
        }
        if body is not None:
            response["body"] = dict(body)
        return response

    def _failure(self, request: Mapping[str, Any], message: str) -> DapMessage:
        return {**self._response(request, None), "success": False, "message": message}

    async def _on_main(self, func: Callable[[], T], wait: float = MAIN_SHELL_WAIT) -> T:
        """``func()`` on the main shell's loop (so after a running cell), awaited here."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except BaseException as exc:
                    future.set_exception(exc)

        self._kernel.main.loop.call_soon_threadsafe(run)
        try:
            async with asyncio.timeout(wait):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise DebuggerError(
                f"the main shell did not get to it within {wait:g} s (is a cell running?)"
            ) from None

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
            traced = {t.name for t in threading.enumerate() if not _untraced(t)}
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

    def _publish(self, event: DapMessage) -> None:
        self._kernel.publisher.publish("debug_event", event, None)

    # -- starting and stopping ---------------------------------------------------------

    async def _initialize(self, message: DapMessage) -> DapMessage:
        if not self.available:
            raise DebuggerError("debugpy is not installed in the kernel's environment")
        shell = await self._kernel.shell()
        if self._address is None:
            # On the main thread: the thread that runs cells is the one debugpy traces.
            self._address = await self._on_main(_start_debugpy, LISTEN_WAIT)
        if not self._link.connected:
            await self._link.connect(*self._address)
            await self._on_main(lambda: self._keep_leading_empty_lines(shell))
        return await self._link.request(message)

    def _keep_leading_empty_lines(self, shell: Any) -> None:
        """While debugging, leading blank lines stay: breakpoints are set by line number
        in the cell as the frontend shows it."""
        from IPython.core.inputtransformer2 import leading_empty_lines

        cleanup = shell.input_transformer_manager.cleanup_transforms
        if leading_empty_lines in cleanup:
            cleanup.remove(leading_empty_lines)
            self._leading_empty_lines = leading_empty_lines

    def _restore_leading_empty_lines(self, shell: Any) -> None:
        transform, self._leading_empty_lines = self._leading_empty_lines, None
        if transform is not None:
            shell.input_transformer_manager.cleanup_transforms.insert(0, transform)

    async def _attach(self, message: DapMessage) -> DapMessage:
        if self._address is None or not self._link.connected:
            raise DebuggerError("the debugger is not started (send 'initialize' first)")
        host, port = self._address
        arguments = dict(_arguments(message))
        rules = arguments.get("rules", [])
        if not isinstance(rules, list):
            raise DebuggerError("attach: 'rules' must be a list")
        arguments["connect"] = {"host": host, "port": port}
        arguments.setdefault("justMyCode", True)
        # An editable install is not "library code": keep the kernel's frames out anyway.
        arguments["rules"] = [
            *rules,
            {"path": str(Path(__file__).parent.parent / "**"), "include": False},
        ]
        self._initialized.clear()
        attach = asyncio.ensure_future(self._link.request({**message, "arguments": arguments}))
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

    async def _configuration_done(self, message: DapMessage) -> DapMessage:
        return self._response(message, None)  # attach did it already

    async def _disconnect(self, message: DapMessage) -> DapMessage:
        try:
            response = await self._link.request(message) if self._link.connected else None
        finally:  # disconnected here whatever the adapter answers
            self._link.close()
            self.breakpoints.clear()
            self.stopped_threads.clear()
        shell = await self._kernel.shell()
        await self._on_main(lambda: self._restore_leading_empty_lines(shell))
        return response or self._response(message, None)

    # -- the Jupyter additions to DAP ------------------------------------------------------

    async def _debug_info(self, message: DapMessage) -> DapMessage:
        cells = self.cells
        return self._response(
            message,
            {
                "isStarted": self.started,
                "hashMethod": "Murmur2",
                "hashSeed": cells.seed,
                "tmpFilePrefix": cells.prefix,
                "tmpFileSuffix": cells.suffix,
                "breakpoints": [
                    {"source": path, "breakpoints": lines}
                    for path, lines in self.breakpoints.items()
                ],
                "stoppedThreads": sorted(self.stopped_threads),
                "richRendering": True,
                "exceptionPaths": ["Python Exceptions"],
                "copyToGlobals": True,
            },
        )

    async def _dump_cell(self, message: DapMessage) -> DapMessage:
        code = _arguments(message).get("code")
        if not isinstance(code, str):
            raise DebuggerError("dumpCell needs the cell's code as a string")
        path = self.cells.path_for(code)
        _make_private_directory(self.cells.directory)
        Path(path).write_text(code, encoding="utf-8")
        return self._response(message, {"sourcePath": path})

    async def _source(self, message: DapMessage) -> DapMessage:
        path = _source_path(message)
        try:
            content = Path(path or "").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return self._failure(message, f"source unavailable: {path!r}")
        return self._response(message, {"content": content})

    async def _set_breakpoints(self, message: DapMessage) -> DapMessage:
        response = await self._link.request(message)
        path = _source_path(message)
        if response.get("success") and path is not None:
            # debugpy may move a breakpoint to another line: keep where it really is.
            found = (response.get("body") or {}).get("breakpoints") or []
            self.breakpoints[path] = [{"line": b["line"]} for b in found if "line" in b]
        return response

    async def _inspect_variables(self, message: DapMessage) -> DapMessage:
        shell = await self._kernel.shell()

        def inspect() -> list[dict[str, Any]]:
            from kernelyard.kernel.variables import NamespaceExplorer

            if self._explorer is not None:
                self._explorer.close()
            self._explorer = NamespaceExplorer(
                shell.user_ns, self.cells.path_for("<namespace>"), shell.user_ns_hidden
            )
            return self._explorer.variables()

        return self._response(message, {"variables": await self._on_main(inspect)})

    async def _variables(self, message: DapMessage) -> DapMessage:
        if self.stopped_threads:
            response = await self._link.request(message)
            body = response.get("body")
            if isinstance(body, dict) and isinstance(body.get("variables"), list):
                from kernelyard.kernel.variables import is_user_variable

                hidden = (await self._kernel.shell()).user_ns_hidden
                body["variables"] = [
                    v for v in body["variables"] if is_user_variable(str(v.get("name")), hidden)
                ]
            return response
        reference = _arguments(message).get("variablesReference")
        explorer = self._explorer

        def children() -> list[dict[str, Any]]:
            return explorer.variables(reference) if explorer is not None else []

        return self._response(message, {"variables": await self._on_main(children)})

    async def _rich_inspect_variables(self, message: DapMessage) -> DapMessage:
        arguments = _arguments(message)
        name = arguments.get("variableName")
        if not isinstance(name, str) or not name.isidentifier():
            return self._response(message, {"data": {}, "metadata": {}})
        data: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        if self.stopped_threads:
            evaluate = {
                "type": "request",
                "command": "evaluate",
                "arguments": {
                    "expression": f"get_ipython().display_formatter.format({name})",
                    "frameId": arguments.get("frameId"),
                    "context": "clipboard",
                },
            }
            reply = await self._link.request(evaluate)
            if reply.get("success"):
                import ast

                with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError):
                    found = ast.literal_eval(reply["body"]["result"])  # (data, metadata)
                    if isinstance(found, tuple) and all(isinstance(d, dict) for d in found):
                        data, metadata = found
        else:
            shell = await self._kernel.shell()

            def formatted() -> dict[str, Any]:
                return shell.user_expressions({name: name})[name]  # type: ignore[no-any-return]

            result = await self._on_main(formatted)
            if result.get("status") == "ok":
                data, metadata = result.get("data", {}), result.get("metadata", {})
        return self._response(
            message,
            {"data": data, "metadata": {k: v for k, v in metadata.items() if k in data}},
        )

    async def _copy_to_globals(self, message: DapMessage) -> DapMessage:
        arguments = _arguments(message)
        source, target = arguments.get("srcVariableName"), arguments.get("dstVariableName")
        if not (isinstance(source, str) and source.isidentifier()) or not (
            isinstance(target, str) and target.isidentifier()
        ):
            raise DebuggerError("srcVariableName and dstVariableName must be identifiers")
        set_expression = {
            "type": "request",
            "command": "setExpression",
            "arguments": {
                "expression": f"globals()[{target!r}]",
                "value": source,
                "frameId": arguments.get("srcFrameId"),
            },
        }
        response = await self._link.request(set_expression)
        return {**response, "request_seq": message.get("seq"), "command": message.get("command")}

    async def _modules(self, message: DapMessage) -> DapMessage:
        modules = list(sys.modules.values())
        arguments = _arguments(message)
        start, count = arguments.get("startModule"), arguments.get("moduleCount")
        start = start if isinstance(start, int) and start > 0 else 0
        count = count if isinstance(count, int) and count > 0 else len(modules)
        found = []
        for index, module in enumerate(modules[start : start + count], start):
            origin = getattr(getattr(module, "__spec__", None), "origin", None)
            if isinstance(origin, str) and origin.endswith(".py"):
                found.append({"id": index, "name": module.__name__, "path": origin})
        return self._response(message, {"modules": found, "totalModules": len(modules)})


def _arguments(message: Mapping[str, Any]) -> Mapping[str, Any]:
    arguments = message.get("arguments")
    return arguments if isinstance(arguments, Mapping) else {}


def _source_path(message: Mapping[str, Any]) -> str | None:
    """``arguments.source.path`` of a request, if it is a string."""
    source = _arguments(message).get("source")
    path = source.get("path") if isinstance(source, Mapping) else None
    return path if isinstance(path, str) else None


def _start_debugpy() -> tuple[str, int]:
    """``debugpy.listen`` on a random local port (once per process); the address."""
    # Before pydevd is imported: IPython-aware stepping (a cell's statements are
    # separate code objects), and no warning about frozen modules on stderr.
    os.environ.setdefault("PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        import debugpy
    except ImportError as exc:
        raise DebuggerError(f"debugpy cannot be imported: {exc}") from exc
    for thread in threading.enumerate():  # IPython's history writer is not the user's
        if thread.name == "IPythonHistorySavingThread":
            do_not_trace(thread)
    try:
        host, port = debugpy.listen(("127.0.0.1", 0))
    except Exception as exc:  # debugpy raises plain exceptions (RuntimeError, OSError)
        raise DebuggerError(f"debugpy failed to start: {exc}") from exc
    return str(host), int(port)


def _make_private_directory(path: str) -> None:
    """Create ``path`` readable by this user only; an existing one must be ours and private."""
    import stat

    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise DebuggerError(f"{path} exists and is not a private directory of ours") from None


_LOCAL: dict[str, LocalHandler] = {
    "initialize": Debugger._initialize,
    "attach": Debugger._attach,
    "configurationDone": Debugger._configuration_done,
    "disconnect": Debugger._disconnect,
    "debugInfo": Debugger._debug_info,
    "dumpCell": Debugger._dump_cell,
    "source": Debugger._source,
    "setBreakpoints": Debugger._set_breakpoints,
    "inspectVariables": Debugger._inspect_variables,
    "variables": Debugger._variables,
    "richInspectVariables": Debugger._rich_inspect_variables,
    "copyToGlobals": Debugger._copy_to_globals,
    "modules": Debugger._modules,
}
