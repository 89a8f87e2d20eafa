"""The blocking high-level API: a kernel and a ready client in one call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kernelyard.blocking.client import BlockingKernelClient
from kernelyard.blocking.manager import BlockingKernelManager

__all__ = ["run_kernel_blocking", "start_kernel_blocking"]


def start_kernel_blocking(
    type_id: str = "python3", *, startup_timeout: float = 60.0, **options: Any
) -> tuple[BlockingKernelManager, BlockingKernelClient]:
    """Start a kernel; returns its manager and an open, ready client (close both)."""
    manager = BlockingKernelManager(type_id, startup_timeout=startup_timeout, **options)
    manager.start()
    try:
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=startup_timeout)
        except BaseException:
            client.stop_channels()
            raise
    except BaseException:
        manager.shutdown()
        raise
    return manager, client


@contextmanager
def run_kernel_blocking(
    type_id: str = "python3", *, startup_timeout: float = 60.0, **options: Any
) -> Iterator[BlockingKernelClient]:
    """A ready blocking client of a fresh kernel, shut down when the block ends."""
    manager, client = start_kernel_blocking(type_id, startup_timeout=startup_timeout, **options)
    try:
        yield client
    finally:
        try:
            client.stop_channels()
        finally:
            manager.shutdown()
