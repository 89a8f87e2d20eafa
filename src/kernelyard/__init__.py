"""kernelyard: run Jupyter kernels, talk to them, serve them over HTTP and WebSocket.

The public API is what ``__all__`` lists; everything else is reached through
its subpackage (``kernelyard.wire``, ``kernelyard.discovery``, ...).
"""

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
from kernelyard.wire import PROTOCOL_VERSION, Channel, ConnectionInfo, Message, MessageFactory

__version__ = "0.1.0.dev0"

__all__ = [
    "PROTOCOL_VERSION",
    "Channel",
    "ChannelClosed",
    "ConnectionInfo",
    "ConnectionInfoError",
    "ExecutionError",
    "GatewayError",
    "GatewayHTTPError",
    "InvalidSignature",
    "InvalidState",
    "KernelDied",
    "KernelFinder",
    "KernelProvider",
    "KernelSpec",
    "KernelSpecError",
    "KernelyardError",
    "LaunchError",
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageFactory",
    "NoSuchKernel",
    "NoSuchKernelSpec",
    "ProtocolError",
    "RemoteProtocolError",
    "ReplayedMessage",
    "ReplyTimeout",
    "RequestError",
    "__version__",
]
