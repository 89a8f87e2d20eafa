"""SqliteStore: the embedded state store, one SQLite file with the standard library.

The file is ``kernels.sqlite3`` in the state directory (``--state-dir``; by
default in Jupyter's runtime directory), which is made 0700, the file 0600
(SQLite's WAL and shared-memory files take the file's mode). The keys sit in
their own column, in that file only.

Every write is one statement in autocommit mode, so one transaction: a
record is there whole or not at all. The journal is a write-ahead log with
``synchronous=NORMAL``: a committed write survives the process being killed
at any moment (a power loss or a crash of the machine may lose the last
ones),
and readers never see half a write. At open, ``quick_check`` refuses a
damaged file with a StoreError, as anything that is not our database is.

SQLite is blocking: one connection, used from worker threads one call at a
time (a capacity limiter of one), so that the event loop never waits on disk.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread

from kernelyard.errors import StoreError
from kernelyard.store.records import FORMAT, KernelRecord

__all__ = ["FILE_NAME", "SqliteStore"]

log = logging.getLogger(__name__)

FILE_NAME = "kernels.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kernels (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,  -- the public half, JSON
    secret TEXT NOT NULL   -- the keys, JSON
)
"""
_T = TypeVar("_T")


class SqliteStore:
    """The kernels' records in ``directory/kernels.sqlite3``. Use :meth:`open`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = connection
        self._one_at_a_time = anyio.CapacityLimiter(1)

    @classmethod
    async def open(cls, directory: str | os.PathLike[str]) -> Self:
        """The store in ``directory`` (made 0700 if missing, made 0700 if others may
        read it); StoreError when it cannot be used (not a directory, not writable, a
        file that is not our database).
        """
        folder = Path(directory)
        path, connection = await anyio.to_thread.run_sync(_connect, folder)
        return cls(path, connection)

    # -- StateStore ------------------------------------------------------------------

    async def put(self, record: KernelRecord) -> None:
        public, secret = json.dumps(record.public()), json.dumps(record.secret())
        await self._run(
            lambda db: db.execute(
                "INSERT INTO kernels (id, record, secret) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
                "secret = excluded.secret",
                (record.id, public, secret),
            )
        )

    async def delete(self, kernel_id: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM kernels WHERE id = ?", (kernel_id,)))

    async def get(self, kernel_id: str) -> KernelRecord | None:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT id, record, secret FROM kernels WHERE id = ?", (kernel_id,)
            ).fetchall()
        )
        found = _readable(rows)
        return found[0] if found else None

    async def records(self) -> list[KernelRecord]:
        rows = await self._run(
            lambda db: db.execute("SELECT id, record, secret FROM kernels ORDER BY id").fetchall()
        )
        return _readable(rows)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):  # never left open half-way
                await anyio.to_thread.run_sync(connection.close, limiter=self._one_at_a_time)

    # -- inside ------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        connection = self._connection
        if connection is None:
            raise StoreError(f"the state store {self.path} is closed")

        def call() -> _T:
            try:
                return work(connection)
            except sqlite3.Error as exc:
                raise StoreError(f"the state store {self.path}: {exc}") from exc

        return await anyio.to_thread.run_sync(call, limiter=self._one_at_a_time)


def _connect(folder: Path) -> tuple[Path, sqlite3.Connection]:
    """Make the directory and the file with their modes, open and check the database."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            folder.chmod(0o700)  # a state directory others could read holds kernels' keys
        path = folder / FILE_NAME
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # 0600 whatever the umask
        os.close(descriptor)
        for file in (path, *(folder / f"{FILE_NAME}-{end}" for end in ("wal", "shm"))):
            if file.exists():
                file.chmod(0o600)
    except OSError as exc:
        raise StoreError(f"the state directory {folder} cannot be used: {exc}") from exc
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _prepare(connection, path)
    except sqlite3.Error as exc:
        connection.close()
        raise StoreError(f"the state store {path} cannot be opened: {exc}") from exc
    except BaseException:
        connection.close()
        raise
    return path, connection


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    """Check the file, set the journal up, make the table (StoreError if not ours)."""
    checked = connection.execute("PRAGMA quick_check").fetchone()
    if checked is None or checked[0] != "ok":
        raise StoreError(f"the state store {path} is damaged: {checked}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA busy_timeout = 5000")
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, FORMAT):
        raise StoreError(
            f"the state store {path} has format {version}; this kernelyard reads {FORMAT}"
        )
    connection.execute(_SCHEMA)
    connection.execute(f"PRAGMA user_version = {FORMAT}")


def _readable(rows: list[Any]) -> list[KernelRecord]:
    """The records ``rows`` make; one that cannot be read is logged and left out."""
    found: list[KernelRecord] = []
    for kernel_id, public, secret in rows:
        try:
            found.append(KernelRecord.from_halves(json.loads(public), json.loads(secret)))
        except (StoreError, ValueError) as exc:
            log.warning("state store: kernel %s left out: %s", kernel_id, exc)
    return found
