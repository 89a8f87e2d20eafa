"""debugpy in the kernel's process: whether it is there, starting it, what it leaves alone.

debugpy traces every Python thread except those marked with
:func:`do_not_trace`: the kernel marks each of its own threads (I/O,
control, debugger, ...) as it makes them, so only the threads that run user
code (the main shell's and the subshells') are traced and ever stopped.
Nothing here imports debugpy until :func:`start_debugpy` runs.
"""

from __future__ import annotations

import functools
import os
import threading

from kernelyard.errors import DebuggerError

__all__ = ["debugpy_available", "do_not_trace", "is_traced", "start_debugpy"]


def do_not_trace(thread: threading.Thread) -> threading.Thread:
    """Mark one of the kernel's own threads: debugpy neither traces nor stops it."""
    thread.pydev_do_not_trace = True  # type: ignore[attr-defined]
    return thread


def is_traced(thread: threading.Thread) -> bool:
    """Whether debugpy traces ``thread`` (it is not one of the kernel's own)."""
    return not getattr(thread, "pydev_do_not_trace", False)


@functools.cache
def debugpy_available() -> bool:
    """Whether debugpy can be found in the kernel's environment (looked up once, not imported)."""
    import importlib.util

    return importlib.util.find_spec("debugpy") is not None


def start_debugpy() -> tuple[str, int]:
    """``debugpy.listen`` on a random local port (once per process); the adapter's address.

    Call it on the main shell's thread: debugpy traces the thread that starts it.
    """
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
