"""ServedKernel: one kernel as the server tracks it, and its REST model.

Starting (no bridge yet: ``progress`` says what the start waits for), failed
to start (``failure`` says why), or running with its
:class:`~kernelyard.server.bridge.KernelBridge`. :class:`~kernelyard.server.kernels.ServedKernels`
owns the transitions; this is the state and what the REST API shows of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from kernelyard._clock import utcnow
from kernelyard.backend import KernelModel
from kernelyard.errors import InvalidState
from kernelyard.server.bridge import KernelBridge
from kernelyard.server.models import format_time

__all__ = ["ServedKernel"]


@dataclass(eq=False)
class ServedKernel:
    """One kernel as the server tracks it: starting (no bridge yet), failed to start
    (``failure`` says why), or running with its bridge.
    """

    id: str
    name: str
    bridge: KernelBridge | None = None
    cull_idle_timeout: float | None = None  # the kernelspec's override, if any
    #: Connections the remote side counts besides ours (a gateway's other clients).
    remote_connections: int = 0
    #: What the start waits for, as the backend says (a cluster queue and its reason).
    progress: str = ""
    #: Why the start failed ("" while it starts or once it runs).
    failure: str = ""
    #: Connections accepted while it starts, waiting for it.
    waiting: int = 0
    #: Why its start is being cancelled (a DELETE, a cull, the server stopping).
    stop_reason: str = ""
    #: How sockets that wait for it are to close at once (the server stops: 1001, so
    #: that clients come back); ``closed`` is set then.
    closing: tuple[int, str] | None = None
    closed: anyio.Event = field(default_factory=anyio.Event)
    created: datetime = field(default_factory=utcnow)
    #: Set once the start ended, either way (``bridge`` or ``failure`` tells which).
    settled: anyio.Event = field(default_factory=anyio.Event)
    #: Cancels the start (a DELETE before the kernel answered).
    start_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    @property
    def connections(self) -> int:
        held = self.bridge.connections if self.bridge is not None else self.waiting
        return held + self.remote_connections

    @property
    def execution_state(self) -> str:
        if self.bridge is not None:
            return self.bridge.execution_state
        return "dead" if self.failure else "starting"

    @property
    def last_activity(self) -> datetime:
        return self.bridge.activity.last_activity if self.bridge is not None else self.created

    def merge_remote(self, remote: KernelModel) -> None:
        """Take in what the remote side knows: its later activity, its other clients
        (``remote.connections`` counts those only: see RemoteModels.refresh).
        """
        if self.bridge is None:
            return
        activity = self.bridge.activity
        if remote.last_activity is not None and remote.last_activity > activity.last_activity:
            activity.last_activity = remote.last_activity
        self.remote_connections = remote.connections

    async def running(self) -> KernelBridge:
        """The bridge, once the kernel answers; InvalidState if its start failed."""
        await self.settled.wait()
        return self.started()

    def started(self) -> KernelBridge:
        """The bridge; InvalidState while the kernel starts or once its start failed."""
        if self.bridge is not None:
            return self.bridge
        if self.failure:
            raise InvalidState(f"kernel {self.id} failed to start: {self.failure}")
        raise InvalidState(
            f"kernel {self.id} is starting{': ' + self.progress if self.progress else ''}"
        )

    def model(self) -> dict[str, Any]:
        """The REST kernel model (state and reason come from the kernel's lifecycle)."""
        bridge = self.bridge
        model: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "last_activity": format_time(self.last_activity),
            "execution_state": self.execution_state,
            "connections": self.connections,
        }
        reason = bridge.reason if bridge is not None else self.failure or self.progress
        if reason:
            model["reason"] = reason
        # Not in jupyter_server's model (clients ignore it); a backend's channels from
        # before KernelChannels.encrypted existed do not say.
        encrypted = getattr(bridge.channels, "encrypted", None) if bridge is not None else None
        if encrypted is not None:
            model["encrypted"] = encrypted
        return model
