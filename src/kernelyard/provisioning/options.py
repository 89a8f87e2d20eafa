"""LaunchOptions: how to start and stop one kernel, as one value.

It travels unchanged from the command line or the server through the
:class:`~kernelyard.manager.MultiKernelManager` and the
:class:`~kernelyard.manager.KernelManager` to the provisioner, so a misspelt
option is a type error, not a runtime surprise (change one with
``dataclasses.replace``, which mypy checks too). What to launch (the argv,
the kernelspec's env, the interrupt mode) is the :class:`LaunchSpec`'s;
these are the caller's choices around it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kernelyard.provisioning.encryption import TransportEncryption, encryption_mode
from kernelyard.wire.connection import Transport

__all__ = ["LaunchOptions", "StderrSink", "forward_to_stderr"]

#: Receives the kernel's stderr, chunk by chunk, as it arrives.
StderrSink = Callable[[bytes], None]


def forward_to_stderr(data: bytes) -> None:
    """The default sink: the kernel's stderr goes to ours, as if inherited."""
    with contextlib.suppress(OSError):
        os.write(2, data)


@dataclass(frozen=True, slots=True)
class LaunchOptions:
    """The caller's choices for starting and stopping a kernel. Defaults suit a local kernel."""

    #: The kernel's working directory (default: ours).
    cwd: str | os.PathLike[str] | None = None
    #: The base environment (default: ours); the kernelspec's env is applied on top.
    env: Mapping[str, str] | None = None
    #: Added to the environment last (a client's ``KERNEL_*`` variables, say).
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: Values for ``{name}`` fields of the kernelspec's argv.
    launch_params: Mapping[str, object] = field(default_factory=dict)
    transport: Transport = "tcp"
    ip: str = "127.0.0.1"
    #: Where the kernel's stderr goes as it arrives (None: only its tail is kept).
    stderr: StderrSink | None = forward_to_stderr
    #: Seconds from the launch to the first ``kernel_info_reply`` (and the JEP 66 handshake).
    startup_timeout: float = 60.0
    #: Seconds a polite ``shutdown_request`` may take to be answered.
    shutdown_timeout: float = 3.0
    #: Seconds a kernel that answered its shutdown may take to leave before SIGTERM.
    exit_grace: float = 0.0
    #: Seconds between SIGTERM and SIGKILL.
    kill_grace: float = 1.0
    #: Fork kernels that preload from a fork server when the provisioner has one.
    fork: bool = True
    #: CurveZMQ for new kernels: "disabled", "auto" (when the kernelspec supports it) or
    #: "required" (a kernelspec without support fails to start); see ``encryption``.
    transport_encryption: TransportEncryption = "disabled"
    #: Told what a slow start waits for ("queued in Slurm: Priority"); a provisioner
    #: whose start may wait (a cluster's) calls it as the wait changes.
    progress: Callable[[str], None] | None = None
    #: The kernel outlives this process when it is killed or crashes (to be adopted
    #: again from its AttachInfo): no ``JPY_PARENT_PID``, its connection file not swept
    #: with us, spawned, never forked (a fork server's kernels go with it). Local
    #: provisioners only (others refuse it). A graceful stop still ends it: asyncio
    #: kills the child processes whose transports it closes.
    persist: bool = False

    def __post_init__(self) -> None:
        mode = encryption_mode(self.transport_encryption)  # "Required" means "required"
        object.__setattr__(self, "transport_encryption", mode)

    def environment(self) -> Mapping[str, str]:
        """The base environment the kernelspec's env is applied to."""
        base = self.env if self.env is not None else os.environ
        return {**base, **self.extra_env} if self.extra_env else base
