"""Content of each request of messaging protocol 5.5, as plain dicts.

Pure builders: the client sends what these return. Defaults follow the spec
(and jupyter_client where the spec leaves room).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernelyard.errors import LocalProtocolError

__all__ = [
    "complete_content",
    "execute_content",
    "history_content",
    "inspect_content",
]

JSONDict = dict[str, Any]


def execute_content(
    code: str,
    *,
    silent: bool = False,
    store_history: bool = True,
    user_expressions: Mapping[str, str] | None = None,
    allow_stdin: bool = False,
    stop_on_error: bool = True,
) -> JSONDict:
    if not isinstance(code, str):
        raise TypeError(f"code must be a string, not {type(code).__name__}")
    return {
        "code": code,
        "silent": silent,
        # The spec: silent implies store_history False.
        "store_history": store_history and not silent,
        "user_expressions": dict(user_expressions or {}),
        "allow_stdin": allow_stdin,
        "stop_on_error": stop_on_error,
    }


def complete_content(code: str, cursor_pos: int | None) -> JSONDict:
    """``cursor_pos`` counts unicode code points (protocol 5.2); default: end of code."""
    return {"code": code, "cursor_pos": len(code) if cursor_pos is None else cursor_pos}


def inspect_content(code: str, cursor_pos: int | None, detail_level: int) -> JSONDict:
    if detail_level not in (0, 1):
        raise LocalProtocolError("detail_level must be 0 or 1")
    return {
        "code": code,
        "cursor_pos": len(code) if cursor_pos is None else cursor_pos,
        "detail_level": detail_level,
    }


def history_content(
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
) -> JSONDict:
    if hist_access_type not in ("range", "tail", "search"):
        raise LocalProtocolError("hist_access_type must be 'range', 'tail' or 'search'")
    content: JSONDict = {"raw": raw, "output": output, "hist_access_type": hist_access_type}
    if hist_access_type == "range":
        content.update(session=session, start=start, stop=stop)
    elif hist_access_type == "tail":
        content.update(n=10 if n is None else n)
    else:
        content.update(pattern=pattern or "*", unique=unique, n=n)
    return content
