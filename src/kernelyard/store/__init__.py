"""The state store: what the server keeps of its kernels, so that they outlive it.

:class:`KernelRecord` is one kernel's record (pure data, its keys in a
separate half); :class:`StateStore` the interface a store implements;
:class:`SqliteStore` the embedded default and :class:`MemoryStore` the fake
beside it.
"""

from kernelyard.store.base import MemoryStore, StateStore
from kernelyard.store.records import KernelRecord
from kernelyard.store.sqlite import SqliteStore

__all__ = ["KernelRecord", "MemoryStore", "SqliteStore", "StateStore"]
