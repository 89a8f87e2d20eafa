"""The answers to DAP requests: the ones the kernel gives itself, a relay for the rest.

:meth:`DapRequests.respond` turns one DAP request into its response and
never raises: every failure is a response with ``success: false`` and a
message. Requests in :data:`_LOCAL` are answered here; every other one goes
to debugpy's adapter as it is (:class:`~.debug_session.DebugSession`).

* ``initialize`` starts debugpy (on the main shell's thread: the thread that
  runs cells is then traced) and connects to its adapter.
* ``attach`` adds what the kernel needs to the frontend's arguments (the
  adapter's address, no frames of kernelyard) and runs DAP's configuration
  sequence itself, so the frontend's own ``configurationDone`` is answered
  here.
* The Jupyter additions to DAP: ``debugInfo``, ``dumpCell``, ``source``,
  ``inspectVariables``, ``richInspectVariables``, ``copyToGlobals``,
  ``modules``; and ``setBreakpoints`` and ``variables`` are relayed with
  something added or taken away.

While no thread is stopped, variables and rich representations are read on
the main shell's loop (so after a running cell); while one is, debugpy
evaluates in the stopped frame. Use it from the debugger's loop only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kernelyard.errors import DebuggerError
from kernelyard.kernel.dap_link import DapMessage
from kernelyard.kernel.debugpy_server import debugpy_available, start_debugpy

if TYPE_CHECKING:
    from kernelyard.kernel.cell_files import CellFiles
    from kernelyard.kernel.debug_session import DebugSession
    from kernelyard.kernel.services import DebuggerServices
    from kernelyard.kernel.variables import NamespaceExplorer

__all__ = ["DapRequests"]

log = logging.getLogger(__name__)

T = TypeVar("T")
LocalHandler = Callable[["DapRequests", DapMessage], Awaitable[DapMessage]]

#: How long a request that needs the main shell waits for a running cell to end.
MAIN_SHELL_WAIT = 10.0
#: How long ``initialize`` waits for debugpy's adapter process to start.
LISTEN_WAIT = 60.0


class DapRequests:
    """Answers one kernel's DAP requests; see the module docstring."""

    def __init__(
        self, services: DebuggerServices, session: DebugSession, cell_files: CellFiles
    ) -> None:
        self._services = services
        self._session = session
        self._cell_files = cell_files
        self._explorer: NamespaceExplorer | None = None
        self._leading_empty_lines: Any = None  # IPython's transform, set aside while debugging
        self._seq = itertools.count(1)

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
            return await self._session.request(message)
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

        self._services.main_loop.call_soon_threadsafe(run)
        try:
            async with asyncio.timeout(wait):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise DebuggerError(
                f"the main shell did not get to it within {wait:g} s (is a cell running?)"
            ) from None

    # -- starting and stopping ---------------------------------------------------------

    async def _initialize(self, message: DapMessage) -> DapMessage:
        if not debugpy_available():
            raise DebuggerError("debugpy is not installed in the kernel's environment")
        shell = await self._services.shell()
        # On the main thread: the thread that runs cells is the one debugpy traces.
        if await self._session.connect(lambda: self._on_main(start_debugpy, LISTEN_WAIT)):
            await self._on_main(lambda: self._keep_leading_empty_lines(shell))
        return await self._session.request(message)

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
        address = self._session.address
        if address is None or not self._session.connected:
            raise DebuggerError("the debugger is not started (send 'initialize' first)")
        host, port = address
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
        return await self._session.attach({**message, "arguments": arguments})

    async def _configuration_done(self, message: DapMessage) -> DapMessage:
        return self._response(message, None)  # attach did it already

    async def _disconnect(self, message: DapMessage) -> DapMessage:
        response = await self._session.disconnect(message)
        shell = await self._services.shell()
        await self._on_main(lambda: self._restore_leading_empty_lines(shell))
        return response or self._response(message, None)

    # -- the Jupyter additions to DAP ------------------------------------------------------

    async def _debug_info(self, message: DapMessage) -> DapMessage:
        cells = self._cell_files.names
        session = self._session
        return self._response(
            message,
            {
                "isStarted": session.connected,
                "hashMethod": "Murmur2",
                "hashSeed": cells.seed,
                "tmpFilePrefix": cells.prefix,
                "tmpFileSuffix": cells.suffix,
                "breakpoints": [
                    {"source": path, "breakpoints": lines}
                    for path, lines in session.breakpoints.items()
                ],
                "stoppedThreads": sorted(session.stopped_threads),
                "richRendering": True,
                "exceptionPaths": ["Python Exceptions"],
                "copyToGlobals": True,
            },
        )

    async def _dump_cell(self, message: DapMessage) -> DapMessage:
        code = _arguments(message).get("code")
        if not isinstance(code, str):
            raise DebuggerError("dumpCell needs the cell's code as a string")
        return self._response(message, {"sourcePath": self._cell_files.dump(code)})

    async def _source(self, message: DapMessage) -> DapMessage:
        path = _source_path(message)
        try:
            content = Path(path or "").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return self._failure(message, f"source unavailable: {path!r}")
        return self._response(message, {"content": content})

    async def _set_breakpoints(self, message: DapMessage) -> DapMessage:
        response = await self._session.request(message)
        path = _source_path(message)
        if response.get("success") and path is not None:
            # debugpy may move a breakpoint to another line: keep where it really is.
            found = (response.get("body") or {}).get("breakpoints") or []
            self._session.breakpoints[path] = [{"line": b["line"]} for b in found if "line" in b]
        return response

    async def _inspect_variables(self, message: DapMessage) -> DapMessage:
        shell = await self._services.shell()

        def inspect() -> list[dict[str, Any]]:
            from kernelyard.kernel.variables import NamespaceExplorer

            if self._explorer is not None:
                self._explorer.close()
            self._explorer = NamespaceExplorer(
                shell.user_ns, self._cell_files.names.path_for("<namespace>"), shell.user_ns_hidden
            )
            return self._explorer.variables()

        return self._response(message, {"variables": await self._on_main(inspect)})

    async def _variables(self, message: DapMessage) -> DapMessage:
        if self._session.stopped_threads:
            response = await self._session.request(message)
            body = response.get("body")
            if isinstance(body, dict) and isinstance(body.get("variables"), list):
                from kernelyard.kernel.variables import is_user_variable

                hidden = (await self._services.shell()).user_ns_hidden
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
        if self._session.stopped_threads:
            evaluate = {
                "type": "request",
                "command": "evaluate",
                "arguments": {
                    "expression": f"get_ipython().display_formatter.format({name})",
                    "frameId": arguments.get("frameId"),
                    "context": "clipboard",
                },
            }
            reply = await self._session.request(evaluate)
            if reply.get("success"):
                import ast

                with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError):
                    found = ast.literal_eval(reply["body"]["result"])  # (data, metadata)
                    if isinstance(found, tuple) and all(isinstance(d, dict) for d in found):
                        data, metadata = found
        else:
            shell = await self._services.shell()

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
        response = await self._session.request(set_expression)
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


_LOCAL: dict[str, LocalHandler] = {
    "initialize": DapRequests._initialize,
    "attach": DapRequests._attach,
    "configurationDone": DapRequests._configuration_done,
    "disconnect": DapRequests._disconnect,
    "debugInfo": DapRequests._debug_info,
    "dumpCell": DapRequests._dump_cell,
    "source": DapRequests._source,
    "setBreakpoints": DapRequests._set_breakpoints,
    "inspectVariables": DapRequests._inspect_variables,
    "variables": DapRequests._variables,
    "richInspectVariables": DapRequests._rich_inspect_variables,
    "copyToGlobals": DapRequests._copy_to_globals,
    "modules": DapRequests._modules,
}
