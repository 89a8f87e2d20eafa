"""Running a fake kernel's cells: Python code in one namespace, its I/O handed to the kernel.

A :class:`CellRunner` executes code with :func:`exec` in the calling thread
(the fake kernel calls it from a worker thread) and returns a
:class:`CellResult`: the last expression's value as a MIME bundle, or the
error. What the code prints, displays or asks goes to the :class:`CellIO` of
the cell that runs, through these names, which every cell sees:

* ``print(...)`` -- a ``stream`` message (``file=sys.stderr`` goes to stderr);
* ``input(prompt)`` -- an ``input_request`` on stdin, answered by the client;
* ``display(*objects)`` -- a ``display_data`` message per object;
* ``sleep(seconds)`` -- waits; an interrupt ends it with KeyboardInterrupt;
* ``crash()`` -- the kernel dies, as if its process had exited.

Interrupts are cooperative: they take effect in the next of those calls (a
``while True: pass`` cannot be interrupted; ``time.sleep`` is not cut short).
"""

from __future__ import annotations

import ast
import builtins
import codeop
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

__all__ = [
    "CellError",
    "CellIO",
    "CellResult",
    "CellRunner",
    "KernelStopped",
    "StdinNotImplementedError",
    "completeness",
    "completions",
    "mime_bundle",
    "word_at",
]

CELL_FILENAME = "<cell>"


class KernelStopped(BaseException):
    """The kernel stopped while the cell ran: the cell's thread just ends (no result)."""


class StdinNotImplementedError(RuntimeError):
    """``input()`` in a cell whose request said ``allow_stdin: false`` (ipykernel's name)."""


class CellIO(Protocol):
    """What a running cell can do to the outside; each call may raise KeyboardInterrupt
    (an interrupt came) or :class:`KernelStopped`.
    """

    def write(self, name: str, text: str) -> None: ...

    def display(self, data: dict[str, Any]) -> None: ...

    def input(self, prompt: str) -> str: ...

    def sleep(self, seconds: float) -> None: ...

    def crash(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CellError:
    """An exception the cell raised, as ``error`` messages carry it."""

    ename: str
    evalue: str
    traceback: list[str]


@dataclass(frozen=True, slots=True)
class CellResult:
    """``data``: the MIME bundle of the last expression's value (None if it has none)."""

    data: dict[str, Any] | None = None
    error: CellError | None = None
    user_expressions: dict[str, Any] = field(default_factory=dict)


def mime_bundle(value: object) -> dict[str, Any]:
    """``text/plain`` (its repr), and ``text/html`` where the object offers one."""
    data: dict[str, Any] = {"text/plain": repr(value)}
    html = getattr(value, "_repr_html_", None)
    if callable(html):
        rendered = html()
        if isinstance(rendered, str):
            data["text/html"] = rendered
    return data


def _error(exc: BaseException) -> CellError:
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # not ours
    lines = traceback.format_exception(type(exc), exc, tb)
    return CellError(type(exc).__name__, str(exc), [line.rstrip("\n") for line in lines])


class CellRunner:
    """One kernel's namespace; :meth:`run` executes a cell in it (one cell at a time)."""

    def __init__(self) -> None:
        overrides = {
            "print": self._print,
            "input": self._input,
            "display": self._display,
            "sleep": self._sleep,
            "crash": self._crash,
        }
        self.globals: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": {**vars(builtins), **overrides},
        }
        self._io: CellIO | None = None

    def run(
        self, code: str, io: CellIO, user_expressions: dict[str, str] | None = None
    ) -> CellResult:
        """Execute ``code``; then evaluate ``user_expressions`` (name -> expression).

        Raises only :class:`KernelStopped`; everything else the code raises
        (KeyboardInterrupt and SystemExit too) is the result's ``error``.
        """
        self._io = io
        try:
            try:
                value = self._execute(code)
            except KernelStopped:
                raise
            except BaseException as exc:  # a cell's failure is its result, whatever it is
                return CellResult(error=_error(exc))
            expressions = self._evaluate(user_expressions or {})
        finally:
            self._io = None
        data = None if value is None else mime_bundle(value)
        return CellResult(data=data, user_expressions=expressions)

    def _execute(self, code: str) -> object:
        tree = ast.parse(code, CELL_FILENAME, "exec")
        last = tree.body[-1] if tree.body else None
        if not isinstance(last, ast.Expr):  # only a final expression has a value to show
            exec(compile(tree, CELL_FILENAME, "exec"), self.globals)
            return None
        tree.body.pop()
        exec(compile(tree, CELL_FILENAME, "exec"), self.globals)
        expression = ast.Expression(last.value)
        return eval(compile(expression, CELL_FILENAME, "eval"), self.globals)

    def _evaluate(self, expressions: dict[str, str]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, source in expressions.items():
            try:
                value = eval(source, self.globals)
            except KernelStopped:
                raise
            except Exception as exc:
                error = _error(exc)
                results[name] = {"status": "error", "ename": error.ename, "evalue": error.evalue}
            else:
                results[name] = {"status": "ok", "data": mime_bundle(value), "metadata": {}}
        return results

    # -- what cells call ------------------------------------------------------------------

    def _current(self) -> CellIO:
        if self._io is None:
            raise RuntimeError("no cell is running")  # called from a thread the cell left behind
        return self._io

    def _print(
        self, *values: object, sep: str | None = " ", end: str | None = "\n", **kw: Any
    ) -> None:
        file: TextIO | None = kw.get("file")
        if file is not None and file not in (sys.stdout, sys.stderr):
            builtins.print(*values, sep=sep, end=end, file=file, flush=bool(kw.get("flush")))
            return
        text = (" " if sep is None else sep).join(map(str, values)) + ("\n" if end is None else end)
        self._current().write("stderr" if file is sys.stderr else "stdout", text)

    def _input(self, prompt: object = "") -> str:
        return self._current().input(str(prompt))

    def _display(self, *objects: object) -> None:
        for obj in objects:
            self._current().display(mime_bundle(obj))

    def _sleep(self, seconds: float) -> None:
        self._current().sleep(float(seconds))

    def _crash(self) -> None:
        self._current().crash()


def completeness(code: str) -> str:
    """``is_complete_reply``'s status for ``code``: complete, incomplete or invalid."""
    try:
        compiled = codeop.compile_command(code, CELL_FILENAME, "exec")
    except (SyntaxError, ValueError, OverflowError):
        return "invalid"
    return "incomplete" if compiled is None else "complete"


def _in_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def word_at(code: str, cursor: int) -> tuple[int, int]:
    """Where the identifier around ``cursor`` starts and ends (equal: there is none)."""
    start, end = cursor, cursor
    while start > 0 and _in_word(code[start - 1]):
        start -= 1
    while end < len(code) and _in_word(code[end]):
        end += 1
    return start, end


def completions(code: str, cursor: int, namespace: dict[str, Any]) -> tuple[list[str], int]:
    """Names in ``namespace`` (and the builtins) that complete the word before ``cursor``,
    and where that word starts.
    """
    start = word_at(code, cursor)[0]
    prefix = code[start:cursor]
    names = {*namespace, *namespace.get("__builtins__", {})}
    return sorted(n for n in names if n.startswith(prefix) and not n.startswith("__")), start
