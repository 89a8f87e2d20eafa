"""Reading and writing connection files.

A connection file holds the HMAC key, so it is created with mode 0600 and
written atomically: the JSON goes to a private temporary file in the same
directory, which then replaces the target in one rename. A reader therefore
sees the old file or the whole new one, never a half-written one, and the key
is never readable by others, not even for a moment.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from kernelyard.errors import ConnectionInfoError
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["read_connection_file", "write_connection_file"]


def write_connection_file(path: str | os.PathLike[str], info: ConnectionInfo) -> Path:
    """Write ``info`` to ``path`` atomically with mode 0600; returns the path.

    The directory must exist. An existing file is replaced.
    """
    target = Path(path)
    data = info.to_json()
    # mkstemp creates the file 0600 and O_EXCL, in the target's directory so
    # that the rename below stays on one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def read_connection_file(path: str | os.PathLike[str]) -> ConnectionInfo:
    """Load and validate a connection file; any problem raises ConnectionInfoError naming it."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConnectionInfoError(f"cannot read: {exc.strerror}", path=os.fspath(path)) from exc
    try:
        return ConnectionInfo.from_json(text)
    except ConnectionInfoError as exc:
        raise ConnectionInfoError(str(exc), path=os.fspath(path)) from exc
