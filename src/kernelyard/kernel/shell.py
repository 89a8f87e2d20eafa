"""IPython's InteractiveShell, wired to IOPub.

This module imports IPython, the heaviest import of the kernel, so the kernel
imports it on a warm-up thread after its sockets answer (see
:mod:`kernelyard.kernel.kernel`). Output of the shell's machinery goes to the
request the running code works for:

* results (``Out[n]``) become ``execute_result``,
* ``display()``/``update_display()``/``clear_output()`` become
  ``display_data``/``update_display_data``/``clear_output``,
* tracebacks become ``error`` messages, and the last one is kept for the reply,
* pager output (``obj?``) and ``set_next_input`` become reply payloads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import IPython.core.page
from IPython.core.compilerop import CachingCompiler
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.interactiveshell import InteractiveShell

if TYPE_CHECKING:
    from kernelyard.kernel.dap import CellNames
    from kernelyard.kernel.services import IPythonServices

__all__ = ["HistoryWriter", "KernelShell", "create_shell"]


def _payload(shell: InteractiveShell, payload: dict[str, Any]) -> None:
    """Add ``payload`` to the reply of the running execute."""
    if shell.payload_manager is not None:
        shell.payload_manager.write_payload(payload)


def _parent(shell: Any) -> Any:
    request = shell.kernel.requests.get()
    return request.msg if request is not None else None


class KernelDisplayHook(DisplayHook):
    """``Out[n]`` as an ``execute_result`` for the current request."""

    _content: dict[str, Any] | None = None

    def start_displayhook(self) -> None:
        self._content = {"execution_count": self.prompt_count, "data": {}, "metadata": {}}

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: dict[str, Any], md_dict: Any = None) -> None:
        if self._content is not None:
            self._content["data"] = format_dict
            self._content["metadata"] = md_dict or {}

    def finish_displayhook(self) -> None:
        content, self._content = self._content, None
        shell: Any = self.shell
        if content is not None and content["data"]:
            shell.kernel.publisher.publish("execute_result", content, _parent(shell))


class KernelDisplayPublisher(DisplayPublisher):
    """``display()`` and friends as IOPub messages for the current request."""

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        msg_type = "update_display_data" if update else "display_data"
        self.shell.kernel.publisher.publish(msg_type, content, _parent(self.shell))

    def clear_output(self, wait: bool = False) -> None:
        self.shell.kernel.publisher.publish("clear_output", {"wait": wait}, _parent(self.shell))


class HistoryWriter:
    """When the input history reaches SQLite.

    By default IPython's saving thread commits after every cell, holding the
    history lock meanwhile, so the next cell waits for the commit (about
    0.6 ms a cell, more under load). Here up to ``CACHED_CELLS`` cells are
    cached and written once ``QUIET`` seconds pass without a new cell, when
    the cache is full, before a history request reads it, and at exit.
    """

    QUIET = 1.0
    CACHED_CELLS = 100

    def __init__(self, manager: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._manager = manager
        self._loop = loop  # the main shell's: it lives as long as the kernel
        self._lock = threading.Lock()
        self._last_cell = 0.0  # time.monotonic() of the latest stored cell
        self._armed = False
        if manager is not None and manager.enabled:
            manager.db_cache_size = self.CACHED_CELLS

    def cell_done(self) -> None:
        """Note a stored cell (from any worker's thread): write it after a quiet second.

        One timer at a time, on the main shell's loop, re-armed for the rest of
        the quiet second when it fires early: a timer per cell woke the loop
        once for every cell run a second before (a thousand wake-ups a second
        under a stream of requests).
        """
        with self._lock:
            self._last_cell = time.monotonic()
            if self._armed:
                return
            self._armed = True
        try:
            on_main_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_main_loop = False
        if on_main_loop:
            self._loop.call_later(self.QUIET, self._write_if_quiet)
        else:
            self._loop.call_soon_threadsafe(self._loop.call_later, self.QUIET, self._write_if_quiet)

    def _write_if_quiet(self) -> None:
        with self._lock:
            wait = self._last_cell + self.QUIET - time.monotonic()
            if wait > 0:
                self._loop.call_later(wait, self._write_if_quiet)
                return
            self._armed = False
        manager = self._manager
        if manager is None or not manager.enabled:
            return
        if manager.using_thread and manager.save_flag is not None:
            manager.save_flag.set()  # IPython's saving thread writes it


_DEFAULT_TOKEN_TRANSFORMERS = list(TransformerManager().token_transformers)  # type: ignore[no-untyped-call]


def _may_need_token_transforms(lines: list[str]) -> bool:
    """Whether IPython's default token transforms could change ``lines``.

    They rewrite magics (``%``), shell commands (``!``), help (``?``), assignments
    from those, and the ``,`` ``;`` ``/`` autocall escapes that begin a line:
    without those characters there is nothing for them to find.
    """
    text = "".join(lines)
    if "%" in text or "!" in text or "?" in text:
        return True
    return any(line.lstrip()[:1] in (",", ";", "/") for line in lines)


class KernelTransformerManager(TransformerManager):
    """IPython's transformer manager, minus tokenizing cells no token transform can change
    (the tokenizer is most of a plain cell's transform: ~70 us for three lines, more for
    long cells). Extensions that add token transformers get the full path. A cell the
    tokenizer cannot read (inconsistent indentation) then fails when it is compiled
    instead: a SyntaxError as well, the compiler's first (often the same
    IndentationError).
    """

    def do_token_transforms(self, lines: list[str]) -> list[str]:
        if self.token_transformers == _DEFAULT_TOKEN_TRANSFORMERS and not (
            _may_need_token_transforms(lines)
        ):
            return lines
        return super().do_token_transforms(lines)  # type: ignore[no-any-return,no-untyped-call]


class CellCompiler(CachingCompiler):
    """IPython's compiler, naming each cell's code after the file the debugger dumps
    it to (:class:`~kernelyard.kernel.dap.CellNames`), so breakpoints set there hit;
    tracebacks still say ``Cell In[n]``.
    """

    def __init__(self, names: CellNames) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._names = names

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        return self._names.path_for(raw_code)


class KernelShell(InteractiveShell):
    """The InteractiveShell of the kernelyard kernel (``get_ipython()`` in cells)."""

    #: As in ipykernel, ``get_ipython().kernel`` is the kernel (code looks for it);
    #: the shell itself uses only the :class:`~.services.IPythonServices` part of it.
    kernel: IPythonServices
    last_error: dict[str, Any] | None = None
    history_writer: HistoryWriter

    def init_io(self) -> None:
        pass  # sys.stdout/stderr are the kernel's streams already

    def should_run_async(
        self,
        raw_cell: str,
        *,
        transformed_cell: str | None = None,
        preprocessing_exc_tuple: Any = None,
    ) -> bool:
        """IPython compiles the cell to look for top-level ``await``; a cell without the
        words ``await`` and ``async`` cannot have any, so it is not compiled for that.
        """
        source = transformed_cell if transformed_cell is not None else raw_cell
        if "await" not in source and "async" not in source:
            return False
        return bool(
            super().should_run_async(
                raw_cell,
                transformed_cell=transformed_cell,
                preprocessing_exc_tuple=preprocessing_exc_tuple,
            )
        )

    def _showtraceback(
        self, etype: type[BaseException], evalue: BaseException, stb: list[str]
    ) -> None:
        if issubclass(etype, asyncio.CancelledError) and self.kernel.interrupts.pending:
            # An interrupt cancels an awaiting cell; show it as the interrupt it was.
            etype, evalue = KeyboardInterrupt, KeyboardInterrupt()
            stb = [*stb[:-1], "KeyboardInterrupt: interrupted while awaiting"]
        content = {
            "traceback": list(stb),
            "ename": getattr(etype, "__name__", str(etype)),
            "evalue": str(evalue),
        }
        self.last_error = content
        self.kernel.publisher.publish("error", content, _parent(self))

    def set_next_input(self, s: str, replace: bool = False) -> None:
        _payload(self, {"source": "set_next_input", "text": s, "replace": replace})

    def ask_exit(self) -> None:
        _payload(self, {"source": "ask_exit", "keepkernel": False})

    def enable_gui(self, gui: str | None = None) -> None:
        if gui not in (None, "inline"):
            raise NotImplementedError(
                f"the kernelyard kernel has no '{gui}' event loop integration"
            )


def _page(data: Any, start: int = 0, screen_lines: int = 0, pager_cmd: Any = None) -> None:
    """IPython's pager, as a ``page`` payload of the execute reply (``obj?``)."""
    shell = InteractiveShell.instance()
    bundle = data if isinstance(data, dict) else {"text/plain": data}
    _payload(shell, {"source": "page", "data": bundle, "start": start})


def create_shell(kernel: IPythonServices) -> KernelShell:
    """The kernel's shell singleton (call once, from the main shell's running loop)."""
    shell = KernelShell.instance(
        displayhook_class=KernelDisplayHook,
        display_pub_class=KernelDisplayPublisher,
    )
    shell.kernel = kernel
    if kernel.debugger.available:
        shell.compile = CellCompiler(kernel.debugger.cells)
    shell.input_transformer_manager = KernelTransformerManager()  # type: ignore[no-untyped-call]
    shell.history_writer = HistoryWriter(shell.history_manager, asyncio.get_running_loop())
    IPython.core.page.page = _page
    return shell
