"""The public API is exactly what __all__ says; changing it is a decision, not an accident."""

from __future__ import annotations

import kernelyard

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(kernelyard.__all__) == EXPECTED
    assert len(kernelyard.__all__) == len(EXPECTED)


def test_everything_in_all_exists() -> None:
    for name in kernelyard.__all__:
        assert getattr(kernelyard, name) is not None


def test_subpackage_all_lists_exist() -> None:
    import kernelyard.discovery
    import kernelyard.provisioning
    import kernelyard.wire

    for package in (kernelyard.wire, kernelyard.discovery, kernelyard.provisioning):
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.{name}"
