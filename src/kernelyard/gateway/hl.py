"""A kernel behind a gateway and a ready client in one call (what ``run_kernel`` does
locally)::

    settings = GatewaySettings(url="http://gateway:8888", auth_token="...")
    async with running_kernel("python3", settings) as (kernel, client):
        await client.execute_interactive("print('hi')")
        await kernel.interrupt()

The kernel is started on the gateway (``POST``), the client reaches it over
its WebSocket (reconnecting without loss, see
:class:`~kernelyard.gateway.channels.GatewayChannels`), and the kernel is
deleted on the gateway when the block ends, whatever ``keep_kernels`` says
(that setting is the server's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from kernelyard.client import KernelClient
from kernelyard.gateway.backend import GatewayBackend
from kernelyard.gateway.settings import GatewaySettings

__all__ = ["GatewayKernel", "running_kernel"]


@dataclass(frozen=True, slots=True)
class GatewayKernel:
    """One kernel on a gateway: what a manager does for a local one, over REST."""

    backend: GatewayBackend
    kernel_id: str

    async def interrupt(self) -> None:
        await self.backend.interrupt_kernel(self.kernel_id)

    async def restart(self) -> None:
        """Restart on the gateway; the open client's pending calls fail with KernelDied,
        later ones reach the new kernel.
        """
        await self.backend.restart_kernel(self.kernel_id)

    async def shutdown(self) -> None:
        await self.backend.shutdown_kernel(self.kernel_id)


@asynccontextmanager
async def running_kernel(
    type_id: str | None,
    settings: GatewaySettings,
    *,
    startup_timeout: float = 60.0,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[GatewayKernel, KernelClient]]:
    """Start ``type_id`` on the gateway (None: its default) and yield it with a ready,
    open client; the client is closed and the kernel deleted when the block ends.

    Errors: NoSuchKernelSpec for a type the gateway does not list (when the
    gateway refuses the start and its kernelspecs say why), else a GatewayError
    naming the hop when the gateway cannot be reached or refuses (its status
    and message), ReplyTimeout when the kernel does not answer within
    ``startup_timeout``.
    """
    # The backend deletes the kernels it started when it closes (shielded, bounded).
    async with GatewayBackend(replace(settings, keep_kernels=False)) as backend:
        kernel_id = await backend.start_kernel(type_id, cwd=cwd, env=env)
        async with backend.client(kernel_id) as client:
            await client.wait_for_ready(timeout=startup_timeout)
            yield GatewayKernel(backend, kernel_id), client
