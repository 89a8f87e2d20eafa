"""The files the debugger dumps cells to (``dumpCell``), so breakpoints can be set in them.

When debugpy is available, every cell is compiled under its file's name
(the shell's ``CellCompiler``), dumped or not; the names come from
:class:`~kernelyard.kernel.dap.CellNames`. The directory is made on the first
dump, private to this user, and removed at shutdown.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from kernelyard.errors import DebuggerError
from kernelyard.kernel.dap import CellNames

__all__ = ["CellFiles"]


class CellFiles:
    """This process's cell files (one set per process: the directory is named by pid)."""

    @functools.cached_property
    def names(self) -> CellNames:
        """The cells' file names (made on first use: nothing of it is on the start path)."""
        import tempfile

        return CellNames(str(Path(tempfile.gettempdir()) / f"kernelyard_{os.getpid()}"))

    def dump(self, code: str) -> str:
        """Write a cell's code to its file; returns the file's path."""
        path = self.names.path_for(code)
        _make_private_directory(self.names.directory)
        Path(path).write_text(code, encoding="utf-8")
        return path

    def remove(self) -> None:
        """Remove the dumped cells (any thread; again is harmless)."""
        if "names" in self.__dict__:  # named, so cells may have been dumped
            import shutil

            shutil.rmtree(self.names.directory, ignore_errors=True)


def _make_private_directory(path: str) -> None:
    """Create ``path`` readable by this user only; an existing one must be ours and private."""
    import stat

    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise DebuggerError(f"{path} exists and is not a private directory of ours") from None
