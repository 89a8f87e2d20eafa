"""KernelBackend: the one interface the server uses to reach kernels.

The local :class:`~kernelyard.manager.MultiKernelManager` implements it, and
the gateway implements it a second time over HTTP and WebSocket; neither
derives from the other. Everything here is a protocol or plain data.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from kernelyard.wire import Message

__all__ = ["KernelBackend", "KernelChannels", "KernelModel"]


@dataclass(frozen=True, slots=True)
class KernelModel:
    """A running kernel as the backend knows it."""

    id: str
    name: str  # the kernel type id it was started from
    state: str  # lifecycle state: starting, running, restarting, dead, ...


class KernelChannels(Protocol):
    """An open connection to one kernel's shell, control, stdin and iopub channels."""

    async def send(self, msg: Message) -> None:
        """Send ``msg`` on ``msg.channel`` (signed by the implementation)."""
        ...

    async def receive(self) -> Message:
        """The next message from the kernel, on any channel (``channel`` is set)."""
        ...


class KernelBackend(Protocol):
    """Start, find, control and connect to kernels. Unknown ids raise NoSuchKernel."""

    async def list_kernels(self) -> list[KernelModel]: ...

    async def kernel_model(self, kernel_id: str) -> KernelModel: ...

    async def start_kernel(
        self, type_id: str | None = None, *, kernel_id: str | None = None, cwd: str | None = None
    ) -> str:
        """Start a kernel (the default type when None); returns its id."""
        ...

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None: ...

    async def restart_kernel(self, kernel_id: str, *, now: bool = False) -> None: ...

    async def interrupt_kernel(self, kernel_id: str) -> None: ...

    def open_channels(
        self, kernel_id: str, *, session: str | None = None
    ) -> AbstractAsyncContextManager[KernelChannels]:
        """Connect to a kernel's message channels for as long as the block runs."""
        ...
