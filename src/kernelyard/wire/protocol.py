"""The session protocol of one kernel connection, without I/O (h11's shape).

Both ends of a connection share the same message logic: verify each
message's signature and drop the bad ones (saying why), refuse replays, build
and sign what leaves. :class:`ClientProtocol` adds the client's side: which
requests wait for a reply, which message answers which request, the kernel's
execution state and whether IOPub is live. :class:`KernelProtocol` is the
kernel's side: requests in, signed replies out.

Use: feed what a socket delivered to ``receive(channel, frames)`` and act on
the events it returns; turn what you want to send into frames with
``send(...)``. Nothing here opens a socket, reads a clock or starts a loop,
so every rule is tested with literal frames (``tests/wire/test_protocol.py``).

Events a client gets, one or more per message:

* :class:`Reply` -- a shell or control message answering a request sent
  with :meth:`ClientProtocol.send`; it carries the ``origin`` given there
  (a session, a future: whatever the caller needs to route it). The request
  is then forgotten.
* :class:`InputRequested` -- an ``input_request`` on stdin, with the origin
  of the request it asks for (which stays pending).
* :class:`Output` -- an IOPub message; ``execution_state`` is set for
  ``status`` messages.
* :class:`IOPubReady` -- IOPub delivers: the first IOPub message since the
  protocol began or was :meth:`~ClientProtocol.reconnected` (``iopub_welcome`` from
  an XPUB kernel, or any other message, such as the status of a probe). A
  subscriber that receives anything receives everything published after.
* :class:`Unmatched` -- a reply or input request for no request we know.
* :class:`Dropped` -- frames that were not a valid, fresh, signed message.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from kernelyard.errors import MalformedMessage, RemoteProtocolError
from kernelyard.wire.channel import Channel
from kernelyard.wire.codec import DELIMITER, RawMessage, encode, parse, split
from kernelyard.wire.frame import Frame, Frames
from kernelyard.wire.message import Message, MessageFactory, check_header
from kernelyard.wire.signing import ReplayGuard, Signer

__all__ = [
    "ClientProtocol",
    "Dropped",
    "Event",
    "IOPubReady",
    "InputRequested",
    "KernelProtocol",
    "Output",
    "Received",
    "Reply",
    "Request",
    "Unmatched",
]

Origin = TypeVar("Origin")

_loads = orjson.loads
_REPLY_CHANNELS = frozenset({Channel.SHELL, Channel.CONTROL})


class Received:
    """A verified message as it arrived: raw parts kept, header and parent parsed.

    ``parts`` are ``[header, parent_header, metadata, content, *buffers]``
    exactly as the peer sent them (what a relay forwards). :attr:`content`
    and :meth:`message` parse the rest on first use, unless the protocol
    parsed everything already (a client does: it drops malformed messages
    before anyone sees them).
    """

    __slots__ = ("_content", "_message", "channel", "header", "identities", "parent", "parts")

    def __init__(
        self,
        channel: Channel,
        identities: tuple[Frame, ...],
        parts: list[Frame],
        header: Mapping[str, Any],
        parent: Mapping[str, Any],
        message: Message | None = None,
    ) -> None:
        self.channel = channel
        self.identities = identities
        self.parts = parts
        self.header = header
        self.parent = parent
        self._message = message
        self._content: Mapping[str, Any] | None = message.content if message else None

    @property
    def msg_type(self) -> str:
        msg_type: str = self.header["msg_type"]
        return msg_type

    @property
    def msg_id(self) -> str:
        msg_id: str = self.header["msg_id"]
        return msg_id

    @property
    def parent_id(self) -> str | None:
        value = self.parent.get("msg_id")
        return value if isinstance(value, str) else None

    @property
    def parent_type(self) -> str | None:
        value = self.parent.get("msg_type")
        return value if isinstance(value, str) else None

    @property
    def content(self) -> Mapping[str, Any]:
        """The content, parsed once; ``{}`` if it is not a JSON object (relays are lenient)."""
        if self._content is None:
            try:
                value = _loads(self.parts[3])
            except orjson.JSONDecodeError:
                value = {}
            self._content = value if type(value) is dict else {}
        return self._content

    def message(self) -> Message:
        """The whole message; MalformedMessage if metadata or content is not an object."""
        if self._message is None:
            self._message = parse(_raw(self.identities, self.parts), channel=self.channel)
        return self._message


def _raw(identities: tuple[Frame, ...], parts: Sequence[Frame]) -> RawMessage:
    header, parent, metadata, content = parts[:4]
    return RawMessage(identities, b"", header, parent, metadata, content, tuple(parts[4:]))


# -- events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply(Generic[Origin]):
    """``received`` answers the pending request that was sent with ``origin``."""

    received: Received
    origin: Origin


@dataclass(frozen=True, slots=True)
class InputRequested(Generic[Origin]):
    """An ``input_request`` for the pending request sent with ``origin``."""

    received: Received
    origin: Origin


@dataclass(frozen=True, slots=True)
class Output:
    """An IOPub message; ``execution_state`` is the state a ``status`` message announces."""

    received: Received
    execution_state: str | None = None


@dataclass(frozen=True, slots=True)
class IOPubReady:
    """IOPub delivers: from now on nothing the kernel publishes is missed."""


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A reply (or input request) whose parent is no request we are waiting for."""

    received: Received


@dataclass(frozen=True, slots=True)
class Dropped:
    """Frames that are not a valid, signed, fresh message; ``error`` says what is wrong."""

    channel: Channel
    error: RemoteProtocolError


@dataclass(frozen=True, slots=True)
class Request:
    """A message a kernel received (a request, a comm message, an input reply)."""

    received: Received

    @property
    def message(self) -> Message:
        return self.received.message()


Event = Reply[Any] | InputRequested[Any] | Output | IOPubReady | Unmatched | Dropped


# -- the shared core ----------------------------------------------------------------


class _SessionProtocol:
    """Signing, verification and the replay guard of one end of a connection."""

    def __init__(
        self,
        signer: Signer,
        *,
        session: str | None,
        username: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._signer = signer
        self._guard = ReplayGuard()
        self.factory = MessageFactory(session=session, username=username, clock=clock)

    @property
    def session(self) -> str:
        return self.factory.session

    def _verify(self, channel: Channel, frames: Frames, *, parse_all: bool) -> Received:
        """The message in ``frames``; RemoteProtocolError if it is bad, forged or replayed."""
        raw = split(frames)
        raw.verify(self._signer, self._guard)
        parts: list[Frame] = [*raw.signed_parts, *raw.buffers]
        if parse_all:
            msg = parse(raw, channel=channel)
            return Received(channel, raw.identities, parts, msg.header, msg.parent_header, msg)
        try:
            header, parent = _loads(raw.header), _loads(raw.parent_header)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"header or parent_header is not JSON: {exc}") from None
        if type(header) is not dict or type(parent) is not dict:
            raise MalformedMessage("header or parent_header is not a JSON object")
        check_header(header)
        return Received(channel, raw.identities, parts, header, parent)

    def frames(self, msg: Message, identities: Frames = ()) -> list[Frame]:
        """The signed frames of ``msg`` (LocalProtocolError if it cannot be encoded)."""
        return encode(msg, self._signer, identities=identities)

    def sign_parts(self, parts: Frames, identities: Frames = ()) -> list[Frame]:
        """Signed frames of raw parts (header, parent, metadata, content, *buffers)."""
        return [*identities, DELIMITER, self._signer.sign(parts[:4]), *parts]


# -- the client's side --------------------------------------------------------------


class ClientProtocol(_SessionProtocol, Generic[Origin]):
    """A client's (or relay's) view of one kernel connection; see the module docstring.

    ``parse_all``: parse every message completely (a client) or only its
    header and parent (a relay that forwards raw parts). ``max_pending``
    bounds the requests remembered (the oldest is forgotten first).
    """

    def __init__(
        self,
        signer: Signer,
        *,
        session: str | None = None,
        username: str = "kernelyard",
        clock: Callable[[], datetime],
        parse_all: bool = True,
        max_pending: int = 10_000,
    ) -> None:
        super().__init__(signer, session=session, username=username, clock=clock)
        self._parse_all = parse_all
        self._max_pending = max_pending
        self._pending: OrderedDict[str, Origin] = OrderedDict()
        #: The last execution_state the kernel published ("unknown" before any).
        self.execution_state = "unknown"
        #: Whether IOPub has delivered since the start or the last kernel restart.
        self.iopub_ready = False

    # -- sending ----------------------------------------------------------------

    def send(self, msg: Message, origin: Origin) -> list[Frame]:
        """Frames for ``msg``; a request on shell or control waits for its reply."""
        frames = self.frames(msg)
        if msg.channel in _REPLY_CHANNELS:
            self.expect_reply(msg.msg_id, msg.msg_type, origin)
        return frames

    def send_parts(
        self, channel: Channel, parts: Frames, *, msg_id: str, msg_type: str, origin: Origin
    ) -> list[Frame]:
        """Frames for raw parts a relay forwards (the header already read by the caller)."""
        if channel in _REPLY_CHANNELS:
            self.expect_reply(msg_id, msg_type, origin)
        return self.sign_parts(parts)

    def expect_reply(self, msg_id: str, msg_type: str, origin: Origin) -> None:
        """Remember that ``msg_id`` (a ``*_request``) waits for a reply, for ``origin``."""
        if not msg_type.endswith("_request"):
            return
        self._pending[msg_id] = origin
        if len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)

    def forget(self, msg_id: str) -> None:
        """Stop waiting for the reply to ``msg_id`` (its caller gave up)."""
        self._pending.pop(msg_id, None)

    def pending(self) -> Iterator[Origin]:
        """The origins of every request still waiting for its reply."""
        return iter(list(self._pending.values()))

    def probe(self) -> list[Frame]:
        """A ``kernel_info_request`` on shell whose answer (and status) proves the kernel
        answers and IOPub delivers; its reply comes back as :class:`Unmatched`.
        """
        return self.frames(self.factory.message("kernel_info_request", channel=Channel.SHELL))

    def reconnected(self) -> None:
        """IOPub is a new subscription (a reopened socket, a restarted kernel): it must
        deliver again before it is ready, and the kernel's state is unknown until then.
        """
        self.iopub_ready = False
        self.execution_state = "unknown"

    # -- receiving ----------------------------------------------------------------

    def receive(self, channel: Channel, frames: Frames) -> list[Event]:
        """The events one received multipart message makes."""
        events: list[Event] = []
        self._receive_into(events, channel, frames)
        return events

    def receive_batch(self, channel: Channel, batch: Sequence[Frames]) -> list[Event]:
        """The events of several messages received on ``channel``, in order."""
        events: list[Event] = []
        for frames in batch:
            self._receive_into(events, channel, frames)
        return events

    def _receive_into(self, events: list[Event], channel: Channel, frames: Frames) -> None:
        try:
            received = self._verify(channel, frames, parse_all=self._parse_all)
        except RemoteProtocolError as exc:
            events.append(Dropped(channel, exc))
            return
        if channel is Channel.IOPUB:
            if not self.iopub_ready:
                self.iopub_ready = True
                events.append(IOPubReady())
            state = None
            if received.header["msg_type"] == "status":
                value = received.content.get("execution_state")
                if isinstance(value, str):
                    state = self.execution_state = value
            events.append(Output(received, state))
            return
        parent_id = received.parent_id
        if parent_id is None or parent_id not in self._pending:
            events.append(Unmatched(received))
        elif channel is Channel.STDIN:
            events.append(InputRequested(received, self._pending[parent_id]))
        else:
            events.append(Reply(received, self._pending.pop(parent_id)))


# -- the kernel's side ---------------------------------------------------------------


class KernelProtocol(_SessionProtocol):
    """A kernel's view of its connection: requests in (fully parsed), signed messages out.

    Receiving belongs to one thread (the replay guard is not shared);
    building and signing messages is safe from any thread.
    """

    def __init__(
        self, signer: Signer, *, session: str | None = None, clock: Callable[[], datetime]
    ) -> None:
        super().__init__(signer, session=session, username="kernel", clock=clock)

    def receive(self, channel: Channel, frames: Frames) -> Request | Dropped:
        """The request in ``frames``, or why it was dropped."""
        try:
            return Request(self._verify(channel, frames, parse_all=True))
        except RemoteProtocolError as exc:
            return Dropped(channel, exc)

    def message(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None,
        parent: Message | None,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Frames = (),
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
