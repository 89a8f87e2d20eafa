"""kernelyard: run Jupyter kernels, talk to them, serve them over HTTP and WebSocket.

The public API is what ``__all__`` lists; everything else is reached through
its subpackage (``kernelyard.wire``, ``kernelyard.discovery``, ...).
"""

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
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageFactory",
    "MultiKernelManager",
    "NoSuchKernel",
    "NoSuchKernelSpec",
    "ProtocolError",
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
