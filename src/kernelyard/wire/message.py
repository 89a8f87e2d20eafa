"""The Jupyter message model (protocol 5.5), without any I/O.

A :class:`Message` holds the four JSON dicts of the protocol (header, parent
header, metadata, content), the raw buffers and, when known, the channel it
travels on. Dicts are kept as decoded: unknown header fields from newer peers
survive a round trip, and nothing is parsed that nobody asked for (the date is
parsed only by :attr:`Message.date`).

Headers are built by :func:`new_header` or a :class:`MessageFactory`; both take
the clock's reading and the session id from the caller, so they stay pure.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired, TypedDict, cast

from kernelyard.errors import LocalProtocolError, MalformedMessage
from kernelyard.wire.channel import Channel
from kernelyard.wire.frame import Frames
from kernelyard.wire.jsonutil import format_date, parse_date

__all__ = [
    "PROTOCOL_VERSION",
    "Header",
    "Message",
    "MessageFactory",
    "check_header",
    "new_header",
    "new_session_id",
]

#: The messaging protocol version we speak and advertise.
PROTOCOL_VERSION = "5.5"

JSONDict = dict[str, Any]


class Header(TypedDict):
    """A message header as it travels (``date`` is ISO 8601 text)."""

    msg_id: str
    msg_type: str
    username: str
    session: str
    date: str
    version: str
    subshell_id: NotRequired[str]


def new_session_id() -> str:
    """A fresh random session id (hex uuid4)."""
    return uuid.uuid4().hex


def new_header(
    msg_type: str,
    *,
    msg_id: str,
    session: str,
    now: datetime,
    username: str = "username",
    subshell_id: str | None = None,
) -> Header:
    """Build a protocol 5.5 header; ``subshell_id`` is included only when set."""
    header: Header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": username,
        "session": session,
        "date": format_date(now),
        "version": PROTOCOL_VERSION,
    }
    if subshell_id is not None:
        header["subshell_id"] = subshell_id
    return header


@dataclass(slots=True)
class Message:
    """One Jupyter message: header, parent header, metadata, content, buffers.

    ``parent_header`` is ``{}`` when the message answers nothing. ``channel`` is
    set when the transport knows it (always for messages a client receives).
    Treat a message as a value: nothing in kernelyard changes one after it is
    built. (It is not frozen only because a frozen dataclass costs a third of
    a decode: every message in a flood pays for it.)
    """

    header: Header
    parent_header: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    content: Mapping[str, Any] = field(default_factory=dict)
    buffers: Frames = ()
    channel: Channel | None = None

    @property
    def msg_id(self) -> str:
        return self.header["msg_id"]

    @property
    def msg_type(self) -> str:
        return self.header["msg_type"]

    @property
    def parent_msg_id(self) -> str | None:
        """The msg_id this message answers, or None."""
        value = self.parent_header.get("msg_id")
        return value if isinstance(value, str) else None

    @property
    def subshell_id(self) -> str | None:
        """The subshell this message is for (None means the main shell)."""
        return self.header.get("subshell_id")

    @property
    def date(self) -> datetime | None:
        """The header's date, parsed (None when the peer sent none)."""
        raw = self.header.get("date")
        return parse_date(raw) if isinstance(raw, str) else None

    def to_dict(self) -> JSONDict:
        """The dict shape jupyter_client and jupyter_server use for a message."""
        msg: JSONDict = {
            "header": dict(self.header),
            "msg_id": self.msg_id,
            "msg_type": self.msg_type,
            "parent_header": dict(self.parent_header),
            "metadata": dict(self.metadata),
            "content": dict(self.content),
            "buffers": list(self.buffers),
        }
        if self.channel is not None:
            msg["channel"] = self.channel.value
        return msg

    @classmethod
    def from_dict(cls, msg: Mapping[str, Any], *, channel: Channel | None = None) -> Message:
        """Build a message from the dict shape, checking every field's type.

        Raises MalformedMessage when a field is missing or of the wrong type;
        this is the check for dicts that come from outside (WebSockets, users).
        """
        header = msg.get("header")
        if not isinstance(header, dict):
            raise MalformedMessage("header is not a JSON object")
        checked = check_header(header)
        parent_header = _object(msg, "parent_header")
        metadata = _object(msg, "metadata")
        content = _object(msg, "content")
        buffers = msg.get("buffers") or ()
        if not isinstance(buffers, list | tuple) or not all(
            isinstance(b, bytes | memoryview) for b in buffers
        ):
            raise MalformedMessage("buffers is not a list of bytes")
        return cls(checked, parent_header, metadata, content, tuple(buffers), channel)


def _object(msg: Mapping[str, Any], name: str) -> JSONDict:
    """``msg[name]`` as a JSON object (missing or null is ``{}``); else MalformedMessage."""
    value = msg.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedMessage(f"{name} is not a JSON object")
    return value


def check_header(header: Mapping[str, Any]) -> Header:
    """``header`` as a :class:`Header`; MalformedMessage unless msg_id and msg_type are strings.

    The other fields are checked only for type when present: peers speaking
    older protocol versions omit some, and rejecting them would help nobody.
    The same mapping is returned (not a copy): unknown fields survive.
    """
    for key in ("msg_id", "msg_type"):
        if not isinstance(header.get(key), str):
            raise MalformedMessage(f"header.{key} is missing or not a string")
    for key in ("session", "username", "date", "version", "subshell_id"):
        value = header.get(key)
        if value is not None and not isinstance(value, str):
            raise MalformedMessage(f"header.{key} is not a string")
    # Checked above, as far as the protocol lets us check: the fields that are
    # there have the right types, and the two that nothing works without exist.
    return cast(Header, header)


class MessageFactory:
    """Builds messages for one session: msg ids, headers and parent links.

    ``clock`` is called once per message for the header date. msg ids are
    ``"{session}_{n}"``: unique across processes because the session id is.
    """

    def __init__(
        self,
        *,
        session: str | None = None,
        username: str = "username",
        clock: Callable[[], datetime],
    ) -> None:
        self.session = session or new_session_id()
        self.username = username
        self._clock = clock
        self._counter = itertools.count(1)

    def new_msg_id(self) -> str:
        return f"{self.session}_{next(self._counter)}"

    def header(self, msg_type: str, *, subshell_id: str | None = None) -> Header:
        return new_header(
            msg_type,
            msg_id=self.new_msg_id(),
            session=self.session,
            now=self._clock(),
            username=self.username,
            subshell_id=subshell_id,
        )

    def message(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None = None,
        *,
        parent: Message | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Frames = (),
        channel: Channel | None = None,
        subshell_id: str | None = None,
    ) -> Message:
        """A new message; ``parent`` is the message (or header) it answers."""
        if not msg_type:
            raise LocalProtocolError("msg_type must not be empty")
        parent_header = parent.header if isinstance(parent, Message) else (parent or {})
        return Message(
            header=self.header(msg_type, subshell_id=subshell_id),
            parent_header=parent_header,
            metadata=metadata or {},
            content=content or {},
            buffers=tuple(buffers),
            channel=channel,
        )
