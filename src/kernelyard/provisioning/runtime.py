"""The runtime directory: sweeping connection files whose kernels are gone.

Connection files are removed at shutdown, but a process that was killed
cannot remove its own (vscode-jupyter#9712 reports them piling up). Files we
write carry the pid of the process that launched the kernel
(:data:`OWNER_FIELD`; Jupyter peers ignore unknown fields). A kernel exits
when that process dies (``JPY_PARENT_PID``), so a file whose owner is gone
belongs to nobody and is removed, with its ipc socket files. Files without
our field are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from kernelyard.errors import ConnectionInfoError
from kernelyard.provisioning.connection_file import read_connection_file

__all__ = ["OWNER_FIELD", "sweep_stale_connection_files"]

log = logging.getLogger(__name__)

OWNER_FIELD = "kernelyard_owner_pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale_connection_files(runtime_dir: Path) -> list[Path]:
    """Remove our ``kernel-*.json`` files whose owner process is gone; returns what went."""
    removed: list[Path] = []
    try:
        candidates = sorted(runtime_dir.glob("kernel-*.json"))
    except OSError:
        return removed
    for path in candidates:
        try:
            info = read_connection_file(path)
        except ConnectionInfoError:
            continue  # not ours to judge
        owner = info.extra.get(OWNER_FIELD)
        if not isinstance(owner, int) or isinstance(owner, bool) or _alive(owner):
            continue
        for file in [path, *map(Path, info.ipc_paths())]:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
        log.info("removed the connection file of a kernel whose manager is gone: %s", path)
        removed.append(path)
    return removed
