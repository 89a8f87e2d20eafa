"""StateStore: where the server keeps its kernels' records, and MemoryStore beside it.

One small interface: ``put`` (insert or replace, atomically; once it returns
it survives the server being killed), ``delete`` (idempotent), ``get``,
``records`` and ``aclose``. The SQLite store (:mod:`.sqlite`) is the embedded
default; :class:`MemoryStore` keeps records in a dict, through the same two
JSON halves a real store writes, for fast tests of what sits on a store.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from kernelyard.store.records import KernelRecord

__all__ = ["MemoryStore", "StateStore"]


class StateStore(Protocol):
    """The kernels' records, by id."""

    async def put(self, record: KernelRecord) -> None:
        """Insert or replace ``record``, atomically: once this returns it survives the
        server being killed at any moment (a store may say what a power loss can
        take). StoreError if it cannot be written.
        """
        ...

    async def delete(self, kernel_id: str) -> None:
        """Forget the kernel (nothing happens for an id that is not there)."""
        ...

    async def get(self, kernel_id: str) -> KernelRecord | None:
        """The kernel's record, or None."""
        ...

    async def records(self) -> list[KernelRecord]:
        """Every record that can be read (one that cannot is logged and left out)."""
        ...

    async def aclose(self) -> None:
        """Release the store (idempotent)."""
        ...


class MemoryStore:
    """A StateStore in a dict, for tests (records pass through their JSON halves)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str]] = {}

    async def put(self, record: KernelRecord) -> None:
        self.rows[record.id] = (json.dumps(record.public()), json.dumps(record.secret()))

    async def delete(self, kernel_id: str) -> None:
        self.rows.pop(kernel_id, None)

    async def get(self, kernel_id: str) -> KernelRecord | None:
        row = self.rows.get(kernel_id)
        return _record(row) if row is not None else None

    async def records(self) -> list[KernelRecord]:
        return [_record(row) for row in self.rows.values()]

    async def aclose(self) -> None:
        return None


def _record(row: tuple[str, str]) -> KernelRecord:
    public: Any = json.loads(row[0])
    secret: Any = json.loads(row[1])
    return KernelRecord.from_halves(public, secret)
