"""The blocking high-level API: a kernel and a ready client in one call.

Each function runs its async twin in :mod:`kernelyard.manager.hl` on the
private loop, held open in one task there until the caller closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from kernelyard.blocking.client import BlockingKernelClient
from kernelyard.blocking.manager import BlockingKernelManager
from kernelyard.blocking.portal import portal
from kernelyard.discovery import KernelFinder
from kernelyard.manager import hl
from kernelyard.provisioning import LaunchOptions, Provisioner

if TYPE_CHECKING:
    from kernelyard.gateway import GatewaySettings

__all__ = ["run_kernel_blocking", "start_kernel_blocking"]


def start_kernel_blocking(
    type_id: str = "python3",
    *,
    finder: KernelFinder | None = None,
    options: LaunchOptions | None = None,
    provisioner: Provisioner | None = None,
) -> tuple[BlockingKernelManager, BlockingKernelClient]:
    """Start a kernel; returns its manager and an open, ready client. Closing the client
    (``stop_channels``) also shuts the kernel down; ``manager.shutdown()`` may come first.
    """
    running = portal().wrap_async_context_manager(
        hl.running_kernel(type_id, finder=finder, options=options, provisioner=provisioner)
    )
    manager, client = running.__enter__()
    return BlockingKernelManager.wrap(manager), BlockingKernelClient.wrap(client, opened=running)


@contextmanager
def run_kernel_blocking(
    type_id: str = "python3",
    *,
    finder: KernelFinder | None = None,
    options: LaunchOptions | None = None,
    provisioner: Provisioner | None = None,
    gateway: GatewaySettings | None = None,
) -> Iterator[BlockingKernelClient]:
    """A ready blocking client of a fresh kernel, shut down when the block ends
    (``gateway``: a kernel on that gateway, as :func:`kernelyard.run_kernel`).
    """
    with portal().wrap_async_context_manager(
        hl.run_kernel(
            type_id, finder=finder, options=options, provisioner=provisioner, gateway=gateway
        )
    ) as client:
        yield BlockingKernelClient.wrap(client)
