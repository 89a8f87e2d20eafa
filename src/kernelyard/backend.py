"""KernelBackend: the one interface the server uses to reach kernels.

The local :class:`~kernelyard.manager.MultiKernelManager` implements it, and
the gateway implements it a second time over HTTP and WebSocket; neither
derives from the other. Everything here is a protocol or plain data.

Channels carry **raw message parts**: ``[header, parent_header, metadata,
content, *buffers]``, the JSON frames exactly as the kernel wrote them. That
is what the v1 WebSocket framing carries too, so a relay passes them through
without parsing; signing and verifying with the kernel's key is the
implementation's job, so no caller ever holds the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kernelyard.wire import Channel

__all__ = [
    "KernelBackend",
    "KernelChannels",
    "KernelModel",
    "KernelNotice",
    "Received",
]

Frame = bytes | memoryview


@dataclass(frozen=True, slots=True)
class KernelModel:
    """A running kernel as the backend knows it."""

    id: str
    name: str  # the kernel type id it was started from
    state: str  # lifecycle state: starting, running, restarting, dead, ...


@dataclass(frozen=True, slots=True)
class KernelNotice:
    """Something that happened to the kernel itself, not a message it sent.

    ``restarting``: it died and is being restarted automatically; ``restarted``:
    it answers again (sockets were reconnected if its ports changed);
    ``dead``: it died and will not come back.
    """

    event: Literal["restarting", "restarted", "dead"]
    reason: str


#: One item of :meth:`KernelChannels.receive`: a message's raw parts on a channel, or a notice.
Received = tuple[Channel, list[bytes]] | KernelNotice


class KernelChannels(Protocol):
    """An open connection to one kernel's shell, control, stdin and iopub channels."""

    async def send(self, channel: Channel, parts: Sequence[Frame]) -> None:
        """Sign and send raw parts (header, parent, metadata, content, buffers...)."""
        ...

    async def receive(self) -> list[Received]:
        """The next batch of verified messages and notices, in arrival order.

        Raises ChannelClosed once the kernel is stopped or the channels are closed.
        """
        ...


class KernelBackend(Protocol):
    """Start, find, control and connect to kernels. Unknown ids raise NoSuchKernel."""

    async def kernel_specs(self, base_url: str = "/") -> dict[str, Any]:
        """The ``GET /api/kernelspecs`` body, resource URLs under ``base_url``."""
        ...

    async def kernel_spec_file(self, name: str, filename: str) -> bytes:
        """A kernelspec resource file; NoSuchKernelSpec if there is none."""
        ...

    async def list_kernels(self) -> list[KernelModel]: ...

    async def kernel_model(self, kernel_id: str) -> KernelModel: ...

    async def start_kernel(
        self,
        type_id: str | None = None,
        *,
        kernel_id: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Start a kernel (the default type when None); returns its id once it answers."""
        ...

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None: ...

    async def restart_kernel(self, kernel_id: str, *, now: bool = False) -> None: ...

    async def interrupt_kernel(self, kernel_id: str) -> None: ...

    def open_channels(self, kernel_id: str) -> AbstractAsyncContextManager[KernelChannels]:
        """Connect to a kernel's message channels for as long as the block runs."""
        ...
