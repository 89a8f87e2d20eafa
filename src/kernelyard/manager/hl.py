"""The high-level API, as jupyter_kernel_mgmt's ``hl``: a kernel and a ready client in one call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.manager.kernel import KernelManager
from kernelyard.provisioning import LaunchOptions, Provisioner

if TYPE_CHECKING:
    from kernelyard.gateway import GatewaySettings

__all__ = ["run_kernel", "running_kernel", "start_kernel"]


async def start_kernel(
    type_id: str = "python3",
    *,
    finder: KernelFinder | None = None,
    options: LaunchOptions | None = None,
    provisioner: Provisioner | None = None,
) -> tuple[KernelManager, KernelClient]:
    """Start a kernel and return its manager and a ready, open client (both wait at most
    ``options.startup_timeout``).

    The caller closes both, in the task that called this:
    ``await client.aclose(); await manager.shutdown()``. :func:`run_kernel`
    does that for you.
    """
    manager = KernelManager(type_id, finder=finder, options=options, provisioner=provisioner)
    await manager.start()
    try:
        client = await manager.client().__aenter__()
        try:
            await client.wait_for_ready(timeout=manager.options.startup_timeout)
        except BaseException:
            await client.aclose()
            raise
    except BaseException:
        await manager.shutdown()
        raise
    return manager, client


@asynccontextmanager
async def running_kernel(
    type_id: str = "python3",
    *,
    finder: KernelFinder | None = None,
    options: LaunchOptions | None = None,
    provisioner: Provisioner | None = None,
) -> AsyncIterator[tuple[KernelManager, KernelClient]]:
    """:func:`start_kernel` for the block: the client is closed and the kernel shut down
    when it ends.
    """
    manager, client = await start_kernel(
        type_id, finder=finder, options=options, provisioner=provisioner
    )
    try:
        yield manager, client
    finally:
        try:
            await client.aclose()
        finally:
            await manager.shutdown()


@asynccontextmanager
async def run_kernel(
    type_id: str = "python3",
    *,
    finder: KernelFinder | None = None,
    options: LaunchOptions | None = None,
    provisioner: Provisioner | None = None,
    gateway: GatewaySettings | None = None,
) -> AsyncIterator[KernelClient]:
    """A ready client of a fresh kernel, shut down when the block ends::

    async with run_kernel("python3") as client:
        reply = await client.execute_interactive("1 + 1")

    With ``gateway``, the kernel is started on that gateway and the client
    talks to it over its WebSocket (:func:`kernelyard.gateway.hl.running_kernel`);
    ``finder`` and ``provisioner`` are the gateway's business then, and of
    ``options`` only ``startup_timeout`` counts.
    """
    if gateway is not None:
        if finder is not None or provisioner is not None:
            raise TypeError("a kernel on a gateway has no local finder or provisioner")
        from kernelyard.gateway import hl as remote  # httpx and websockets, when needed

        timeout = (options or LaunchOptions()).startup_timeout
        async with remote.running_kernel(type_id, gateway, startup_timeout=timeout) as (_, client):
            yield client
        return
    async with running_kernel(type_id, finder=finder, options=options, provisioner=provisioner) as (
        _,
        client,
    ):
        yield client
