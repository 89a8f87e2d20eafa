"""The high-level API, as jupyter_kernel_mgmt's ``hl``: a kernel and a ready client in one call."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.manager.kernel import KernelManager

__all__ = ["run_kernel", "start_kernel"]


async def start_kernel(
    type_id: str = "python3",
    *,
    finder: KernelFinder | None = None,
    cwd: str | os.PathLike[str] | None = None,
    launch_params: Mapping[str, object] | None = None,
    startup_timeout: float = 60.0,
    **manager_options: Any,
) -> tuple[KernelManager, KernelClient]:
    """Start a kernel and return its manager and a ready, open client.

    The caller closes both, in the task that called this:
    ``await client.aclose(); await manager.shutdown()``. :func:`run_kernel`
    does that for you.
    """
    manager = KernelManager(
        type_id,
        finder=finder,
        cwd=cwd,
        launch_params=launch_params,
        startup_timeout=startup_timeout,
        **manager_options,
    )
    await manager.start()
    try:
        client = await manager.client().__aenter__()
        try:
            await client.wait_for_ready(timeout=startup_timeout)
        except BaseException:
            await client.aclose()
            raise
    except BaseException:
        await manager.shutdown()
        raise
    return manager, client


@asynccontextmanager
async def run_kernel(
    type_id: str = "python3",
    *,
    finder: KernelFinder | None = None,
    cwd: str | os.PathLike[str] | None = None,
    launch_params: Mapping[str, object] | None = None,
    startup_timeout: float = 60.0,
    **manager_options: Any,
) -> AsyncIterator[KernelClient]:
    """A ready client of a fresh kernel, shut down when the block ends::

    async with run_kernel("python3") as client:
        reply = await client.execute_interactive("1 + 1")
    """
    manager, client = await start_kernel(
        type_id,
        finder=finder,
        cwd=cwd,
        launch_params=launch_params,
        startup_timeout=startup_timeout,
        **manager_options,
    )
    try:
        yield client
    finally:
        try:
            await client.aclose()
        finally:
            await manager.shutdown()
