"""The public API is exactly what __all__ says; changing it is a decision, not an accident."""

from __future__ import annotations

import kernelyard

EXPECTED = {
    "PROTOCOL_VERSION",
    "BlockingKernelClient",
    "BlockingKernelManager",
    "BlockingMultiKernelManager",
    "KernelBackend",
    "KernelChannels",
    "KernelClient",
    "KernelManager",
    "KernelModel",
    "KernelRestarter",
    "KernelState",
    "MultiKernelManager",
    "RestartEvent",
    "run_kernel",
    "run_kernel_blocking",
    "start_kernel",
    "start_kernel_blocking",
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
    "LaunchOptions",
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageFactory",
    "NoSuchKernel",
    "NoSuchKernelSpec",
    "ProtocolError",
    "Provisioner",
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
    import kernelyard.blocking
    import kernelyard.client
    import kernelyard.discovery
    import kernelyard.manager
    import kernelyard.provisioning
    import kernelyard.transport
    import kernelyard.wire

    for package in (
        kernelyard.wire,
        kernelyard.discovery,
        kernelyard.provisioning,
        kernelyard.transport,
        kernelyard.client,
        kernelyard.manager,
        kernelyard.blocking,
    ):
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.{name}"
