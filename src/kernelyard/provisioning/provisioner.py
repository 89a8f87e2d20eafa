"""The provisioner seam: where a kernel runs, and how its process is driven.

A :class:`Provisioner` starts kernels; each start returns a
:class:`ProvisionedKernel`, the handle the
:class:`~kernelyard.manager.KernelManager` supervises it through (wait,
signal, terminate, kill, cleanup). The manager knows nothing else about
where the kernel runs: the local implementations
(:class:`~kernelyard.provisioning.local.SubprocessProvisioner`, and
:class:`~kernelyard.provisioning.local.ForkServerProvisioner` that forks
kernels which preload) start processes on this machine; a cluster or a
container provisioner implements the same two protocols.

:class:`AttachInfo` is what must be kept to find a running kernel again
later (after the server restarted, say): which provisioner started it, its
connection info and where it runs. It is plain JSON data, and holds secrets:
the HMAC key and, for an encrypted kernel, its Curve secret key; keep it
where only the server's user can read it (mode 0600, as connection files).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kernelyard.errors import ConnectionInfoError
from kernelyard.provisioning.options import LaunchOptions
from kernelyard.provisioning.spec import InterruptMode, LaunchSpec
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["Adopting", "AttachInfo", "ProvisionedKernel", "Provisioner"]


@dataclass(frozen=True, slots=True)
class AttachInfo:
    """Enough to reach a running kernel again: by its ports, and by its process."""

    provisioner: str  # the :attr:`Provisioner.name` that started it
    kernel_id: str
    connection_info: ConnectionInfo
    #: Where the kernel runs, as the provisioner understands it (a local pid, a job id...).
    location: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provisioner": self.provisioner,
            "kernel_id": self.kernel_id,
            "connection_info": self.connection_info.to_dict(),
            "location": dict(self.location),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttachInfo:
        """The inverse of :meth:`to_dict`; ConnectionInfoError for anything malformed."""
        provisioner, kernel_id = data.get("provisioner"), data.get("kernel_id")
        info, location = data.get("connection_info"), data.get("location", {})
        if not isinstance(provisioner, str) or not isinstance(kernel_id, str):
            raise ConnectionInfoError("attach info needs 'provisioner' and 'kernel_id' strings")
        if not isinstance(info, Mapping) or not isinstance(location, Mapping):
            raise ConnectionInfoError("attach info needs 'connection_info' and 'location' objects")
        return cls(provisioner, kernel_id, ConnectionInfo.from_dict(info), dict(location))


class ProvisionedKernel(Protocol):
    """One started kernel, driven through its provisioner. Every method is safe to call
    after the kernel ended (signals are then no-ops).
    """

    #: The ports and key to talk to it; a JEP 66 kernel's are its registered ones.
    connection_info: ConnectionInfo
    #: The command line it was started with (for error messages).
    argv: list[str]

    @property
    def interrupt_mode(self) -> InterruptMode:
        """``signal`` (SIGINT) or ``message`` (``interrupt_request``), as its spec says."""
        ...

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        ...

    def is_alive(self) -> bool: ...

    @property
    def exit_description(self) -> str:
        """How it ended, for the reason of its death: "exited with code 1"; a cluster
        kernel's adds the scheduler's word (its job's state and reason).
        """
        ...

    async def wait(self) -> int:
        """Wait for it to end; returns :attr:`returncode`."""
        ...

    def on_exit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` in the event loop when it ends (soon, if it has);
        returns the undo.
        """
        ...

    async def stderr_tail(self) -> str:
        """The last few KiB it wrote to stderr: the reason a failed start printed."""
        ...

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the kernel and its children."""
        ...

    def interrupt(self) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def release_ports(self) -> None:
        """The kernel answers, so it has bound its ports: stop holding them (idempotent)."""
        ...

    def cleanup(self, *, remove_connection_file: bool = True) -> None:
        """Release what the start took (ports, files; the connection file is kept for an
        in-place restart). Call once it ended.
        """
        ...

    def attach_info(self, kernel_id: str) -> AttachInfo:
        """What must be kept to reach this kernel again later."""
        ...


class Provisioner(Protocol):
    """Starts kernels somewhere."""

    #: Names the implementation in :class:`AttachInfo`.
    name: str

    async def start(
        self,
        spec: LaunchSpec,
        *,
        kernel_id: str,
        options: LaunchOptions,
        connection_info: ConnectionInfo | None = None,
    ) -> ProvisionedKernel:
        """Start the kernel ``spec`` describes; returns once its process exists (readiness
        is the caller's to wait for: the first ``kernel_info_reply``).

        ``connection_info`` given means start again with it (an in-place restart: the
        same key, the same Curve keys and, where they are free, the same ports). A new
        kernel gets Curve keys when ``options.transport_encryption`` and the spec say so
        (:func:`~kernelyard.provisioning.encryption.curve_keys_for`); the manager
        refuses a kernel that ``required`` left unencrypted. Raises LaunchError when the
        kernel cannot be started, or (a JEP 66 kernel) exits or stays silent for
        ``options.startup_timeout`` before registering its ports.
        """
        ...


@runtime_checkable
class Adopting(Protocol):
    """A provisioner that can take over a running kernel from its AttachInfo (one it
    started with ``LaunchOptions.persist``, for a manager that is gone).
    """

    name: str

    async def adopt(self, attach: AttachInfo, spec: LaunchSpec) -> ProvisionedKernel:
        """The kernel's handle; LaunchError when its process is gone."""
        ...
