"""kernelyard: run Jupyter kernels, talk to them, serve them over HTTP and WebSocket.

The public API is what ``__all__`` lists; everything else is reached through
its subpackage (``kernelyard.wire``, ``kernelyard.discovery``, ...).

Names are imported on first use (PEP 562), so ``import kernelyard.kernel``, the
kernel process, does not pay for the client, manager and blocking layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from kernelyard.backend import KernelBackend, KernelChannels, KernelModel
    from kernelyard.blocking import (
        BlockingKernelClient,
        BlockingKernelManager,
        BlockingMultiKernelManager,
        run_kernel_blocking,
        start_kernel_blocking,
    )
    from kernelyard.client import KernelClient
    from kernelyard.discovery import KernelFinder, KernelProvider, KernelSpec
    from kernelyard.errors import (
        ChannelClosed,
        ConnectionInfoError,
        ExecutionError,
        GatewayError,
        GatewayHTTPError,
        InvalidSignature,
        InvalidState,
        KernelDied,
        KernelSpecError,
        KernelyardError,
        LaunchError,
        LocalProtocolError,
        MalformedMessage,
        NoSuchKernel,
        NoSuchKernelSpec,
        ProtocolError,
        RemoteProtocolError,
        ReplayedMessage,
        ReplyTimeout,
        RequestError,
    )
    from kernelyard.manager import (
        KernelManager,
        KernelRestarter,
        KernelState,
        MultiKernelManager,
        RestartEvent,
        run_kernel,
        start_kernel,
    )
    from kernelyard.wire import PROTOCOL_VERSION, Channel, ConnectionInfo, Message, MessageFactory

__version__ = "0.1.0.dev0"

__all__ = [
    "PROTOCOL_VERSION",
    "BlockingKernelClient",
    "BlockingKernelManager",
    "BlockingMultiKernelManager",
    "Channel",
    "ChannelClosed",
    "ConnectionInfo",
    "ConnectionInfoError",
    "ExecutionError",
    "GatewayError",
    "GatewayHTTPError",
    "InvalidSignature",
    "InvalidState",
    "KernelBackend",
    "KernelChannels",
    "KernelClient",
    "KernelDied",
    "KernelFinder",
    "KernelManager",
    "KernelModel",
    "KernelProvider",
    "KernelRestarter",
    "KernelSpec",
    "KernelSpecError",
    "KernelState",
    "KernelyardError",
    "LaunchError",
    "LaunchOptions",
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageFactory",
    "MultiKernelManager",
    "NoSuchKernel",
    "NoSuchKernelSpec",
    "ProtocolError",
    "Provisioner",
    "RemoteProtocolError",
    "ReplayedMessage",
    "ReplyTimeout",
    "RequestError",
    "RestartEvent",
    "__version__",
    "run_kernel",
    "run_kernel_blocking",
    "start_kernel",
    "start_kernel_blocking",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BlockingKernelClient": "kernelyard.blocking",
        "BlockingKernelManager": "kernelyard.blocking",
        "BlockingMultiKernelManager": "kernelyard.blocking",
        "Channel": "kernelyard.wire",
        "ChannelClosed": "kernelyard.errors",
        "ConnectionInfo": "kernelyard.wire",
        "ConnectionInfoError": "kernelyard.errors",
        "ExecutionError": "kernelyard.errors",
        "GatewayError": "kernelyard.errors",
        "GatewayHTTPError": "kernelyard.errors",
        "InvalidSignature": "kernelyard.errors",
        "InvalidState": "kernelyard.errors",
        "KernelBackend": "kernelyard.backend",
        "KernelChannels": "kernelyard.backend",
        "KernelClient": "kernelyard.client",
        "KernelDied": "kernelyard.errors",
        "KernelFinder": "kernelyard.discovery",
        "KernelManager": "kernelyard.manager",
        "KernelModel": "kernelyard.backend",
        "KernelProvider": "kernelyard.discovery",
        "KernelRestarter": "kernelyard.manager",
        "KernelSpec": "kernelyard.discovery",
        "KernelSpecError": "kernelyard.errors",
        "KernelState": "kernelyard.manager",
        "KernelyardError": "kernelyard.errors",
        "LaunchError": "kernelyard.errors",
        "LaunchOptions": "kernelyard.provisioning",
        "LocalProtocolError": "kernelyard.errors",
        "MalformedMessage": "kernelyard.errors",
        "Message": "kernelyard.wire",
        "MessageFactory": "kernelyard.wire",
        "MultiKernelManager": "kernelyard.manager",
        "NoSuchKernel": "kernelyard.errors",
        "NoSuchKernelSpec": "kernelyard.errors",
        "PROTOCOL_VERSION": "kernelyard.wire",
        "ProtocolError": "kernelyard.errors",
        "Provisioner": "kernelyard.provisioning",
        "RemoteProtocolError": "kernelyard.errors",
        "ReplayedMessage": "kernelyard.errors",
        "ReplyTimeout": "kernelyard.errors",
        "RequestError": "kernelyard.errors",
        "RestartEvent": "kernelyard.manager",
        "run_kernel": "kernelyard.manager",
        "run_kernel_blocking": "kernelyard.blocking",
        "start_kernel": "kernelyard.manager",
        "start_kernel_blocking": "kernelyard.blocking",
    },
)
