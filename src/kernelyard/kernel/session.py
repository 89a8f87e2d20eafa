"""The kernel's message session: decode what arrives, build and sign what leaves.

The rules are :class:`~kernelyard.wire.KernelProtocol`'s. Decoding happens on
the I/O thread only (the replay guard is not shared); building and signing
happen on whichever thread replies (the signer copies keyed hashlib states,
which is safe from any thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernelyard._clock import utcnow
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import ConnectionInfo
from kernelyard.wire.frame import Frame, Frames
from kernelyard.wire.message import Message
from kernelyard.wire.protocol import Dropped, KernelProtocol

__all__ = ["KernelSession", "Request"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """One incoming request: where it came from and what it says."""

    channel: Channel
    identities: tuple[Frame, ...]
    msg: Message
    #: time.monotonic() when the kernel received it (stop_on_error aborts by arrival).
    received: float = field(default_factory=time.monotonic)

    @property
    def msg_type(self) -> str:
        return self.msg.msg_type

    @property
    def content(self) -> Mapping[str, Any]:
        return self.msg.content

    @property
    def subshell_id(self) -> str | None:
        return self.msg.subshell_id

    @property
    def reply_type(self) -> str:
        """The msg_type of the answer: ``foo_request`` -> ``foo_reply``."""
        return self.msg_type.removesuffix("_request") + "_reply"


class KernelSession:
    """The kernel's end of its connection (one per kernel process): drives the
    sans-I/O :class:`~kernelyard.wire.KernelProtocol` and logs what it drops.
    """

    def __init__(self, info: ConnectionInfo, *, session: str | None = None) -> None:
        self.protocol = KernelProtocol(info.signer(), session=session, clock=utcnow)
        #: Build a message answering a parent (carrying its subshell_id); any thread.
        self.message = self.protocol.message
        #: The signed frames of a message (LocalProtocolError if it cannot be encoded).
        self.frames = self.protocol.frames

    @property
    def session_id(self) -> str:
        return self.protocol.session

    def decode(self, channel: Channel, frames: Frames) -> Request | None:
        """The request in ``frames``, or None (logged once) when it is malformed or forged."""
        event = self.protocol.receive(channel, frames)
        if isinstance(event, Dropped):
            log.warning("dropping a bad message on %s: %s", channel, event.error)
            return None
        return Request(channel, event.received.identities, event.message)
