"""The user's namespace as Debug Adapter Protocol variables, while no thread is stopped.

JupyterLab's variables panel asks ``inspectVariables`` for the namespace's
variables and ``variables`` (by ``variablesReference``) to expand one. When a
thread is stopped, debugpy answers both for the stopped frame; otherwise the
kernel does, with pydevd's own variable machinery over a stand-in frame whose
globals and locals are the namespace, so names, types, values and child
references look exactly as they do when stopped (what ipykernel does too).

Call it on the main shell's thread: building values calls ``repr`` of user
objects, which is user code. It relies on pydevd internals that debugpy
vendors (imported on first use, after debugpy itself).
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from types import SimpleNamespace
from typing import Any

__all__ = ["NamespaceExplorer", "is_user_variable"]

# IPython's output and input history (_, __, ___, _1, _i1, _ii, ...): not the user's names.
_HISTORY_NAME = re.compile(r"_{1,3}|_\d+|_i+\d*")


def is_user_variable(name: str, hidden: Container[str]) -> bool:
    """Whether the variables panel shows ``name``: not one IPython put in the
    namespace (``hidden``, its history names ``_1``, ``_i1``, ``_ii``).
    """
    return name not in hidden and not _HISTORY_NAME.fullmatch(name)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class _Code:
    def __init__(self, filename: str) -> None:
        self.co_filename = filename
        self.co_name = "<module>"


class _NamespaceFrame:
    """What pydevd reads of a frame, for a namespace that runs no code."""

    def __init__(self, namespace: Mapping[str, Any], filename: str) -> None:
        self.f_code = _Code(filename)
        self.f_globals = namespace
        self.f_locals = namespace
        self.f_back = None
        self.f_lineno = 1


class NamespaceExplorer:
    """The user's variables in a namespace and their children, by DAP reference.

    It sees a snapshot of the namespace's names, the user's own only (also
    inside the groups pydevd makes: functions, classes), taken when it is
    made; a new ``inspectVariables`` makes a new one. References stay valid
    until :meth:`close`.
    """

    def __init__(self, namespace: Mapping[str, Any], filename: str, hidden: Container[str]) -> None:
        import debugpy.server.api  # noqa: F401  # puts pydevd's bundle on sys.path
        from _pydevd_bundle import pydevd_frame_utils  # type: ignore[import-not-found]
        from _pydevd_bundle.pydevd_api import PyDevdAPI  # type: ignore[import-not-found]
        from _pydevd_bundle.pydevd_suspended_frames import (  # type: ignore[import-not-found]
            SuspendedFramesManager,
            _FramesTracker,
        )

        shown = {
            name: value
            for name, value in list(namespace.items())
            if is_user_variable(name, hidden) and not _is_dunder(name)
        }
        self._manager = SuspendedFramesManager()
        py_db = SimpleNamespace(variable_presentation=PyDevdAPI.VariablePresentation())
        self._tracker = _FramesTracker(self._manager, py_db)
        frame = _NamespaceFrame(shown, filename)
        self._tracker.track("namespace", pydevd_frame_utils.create_frames_list_from_frame(frame))
        self._root = id(frame)

    def variables(self, reference: int | None = None) -> list[dict[str, Any]]:
        """The children of ``reference`` (the namespace itself when None); [] if unknown."""
        try:
            variable = self._manager.get_variable(reference or self._root)
        except KeyError:
            return []
        return [child.get_var_data() for child in variable.get_children_variables()]

    def close(self) -> None:
        self._tracker.untrack_all()
