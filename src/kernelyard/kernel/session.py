"""The kernel's message session: decode what arrives, build and sign what leaves.

Decoding happens on the I/O thread only (the replay guard is not shared);
building and signing happen on whichever thread replies (the signer copies
keyed hashlib states, which is safe from any thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kernelyard.errors import RemoteProtocolError
from kernelyard.wire.channel import Channel
from kernelyard.wire.codec import decode, encode
from kernelyard.wire.connection import ConnectionInfo
from kernelyard.wire.message import Message, MessageFactory
from kernelyard.wire.signing import ReplayGuard

__all__ = ["KernelSession", "Request"]

log = logging.getLogger(__name__)

Frame = bytes | memoryview


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


def _now() -> datetime:
    return datetime.now(UTC)


class KernelSession:
    """Signs with the connection's key; one per kernel process."""

    def __init__(self, info: ConnectionInfo, *, session: str | None = None) -> None:
        self._signer = info.signer()
        self._guard = ReplayGuard()
        self.factory = MessageFactory(session=session, username="kernel", clock=_now)

    @property
    def session_id(self) -> str:
        return self.factory.session

    def decode(self, channel: Channel, frames: Sequence[Frame]) -> Request | None:
        """The request in ``frames``, or None (logged once) when it is malformed or forged."""
        try:
            identities, msg = decode(frames, self._signer, guard=self._guard, channel=channel)
        except RemoteProtocolError as exc:
            log.warning("dropping a bad message on %s: %s", channel, exc)
            return None
        return Request(channel, identities, msg)

    def message(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None,
        parent: Message | None,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
    ) -> Message:
        """A new message answering ``parent``; it carries the parent's subshell_id."""
        return self.factory.message(
            msg_type,
            content,
            parent=parent,
            metadata=metadata,
            buffers=[b if isinstance(b, bytes | memoryview) else memoryview(b) for b in buffers],
            subshell_id=parent.subshell_id if parent is not None else None,
        )

    def frames(self, msg: Message, identities: Sequence[Frame] = ()) -> list[Frame]:
        """The signed frames of ``msg`` (LocalProtocolError if it cannot be encoded)."""
        return encode(msg, self._signer, identities=identities)
