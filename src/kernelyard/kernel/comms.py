"""Comms through the ``comm`` package (the one ipywidgets uses).

The kernel installs itself as the package's comm factory and manager:
``comm.create_comm()`` makes a :class:`KernelComm`, whose messages go out on
IOPub for the request the code works for. Comms use the kernel through
:class:`~kernelyard.kernel.services.CommServices` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import comm
from comm.base_comm import BaseComm, CommManager

from kernelyard.wire.message import Message

if TYPE_CHECKING:
    from kernelyard.kernel.services import CommServices

__all__ = ["KernelComm", "dispatch", "install_comms"]


class KernelComm(BaseComm):
    """A comm whose messages go out on the kernel's IOPub."""

    #: Named as in ipykernel's Comm: ipywidgets looks at ``comm.kernel``.
    kernel: CommServices

    def publish_msg(
        self,
        msg_type: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
        **keys: Any,
    ) -> None:
        content = {"data": data or {}, "comm_id": self.comm_id, **keys}
        request = self.kernel.requests.get()
        self.kernel.publisher.publish(
            msg_type,
            content,
            request.msg if request is not None else None,
            metadata=metadata,
            buffers=buffers or (),
            topic=self.topic,
        )


def install_comms(kernel: CommServices) -> CommManager:
    """Make the ``comm`` package create KernelComms and use one manager; returns it."""
    manager = CommManager()

    KernelComm.kernel = kernel  # one kernel per process
    comm.create_comm = KernelComm
    comm.get_comm_manager = lambda: manager
    return manager


def dispatch(manager: CommManager, msg: Message) -> None:
    """Hand a comm_open, comm_msg or comm_close from a frontend to ``manager``."""
    handler = getattr(manager, msg.msg_type)
    # The manager's signature still names ipykernel's stream and identity; it ignores both.
    handler(None, None, msg.to_dict())
