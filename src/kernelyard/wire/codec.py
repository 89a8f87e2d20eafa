"""Messages to ZeroMQ multipart frames and back.

The frames of one message::

    [*identities, b"<IDS|MSG>", signature, header, parent_header, metadata, content, *buffers]

:func:`encode` and :func:`decode` work on :class:`Message`. :func:`split` and
:func:`encode_parts` work on the raw JSON frames, for relays (the server's v1
WebSocket path) that pass frames through without parsing them.

Decoding any sequence of byte frames either returns a message or raises a
:class:`~kernelyard.errors.RemoteProtocolError` subclass; nothing else escapes.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from kernelyard.errors import LocalProtocolError, MalformedMessage
from kernelyard.wire.channel import Channel
from kernelyard.wire.frame import Frame, Frames
from kernelyard.wire.jsonutil import dumps, dumps_fast, loads_object
from kernelyard.wire.message import Message, check_header
from kernelyard.wire.signing import ReplayGuard, Signer

__all__ = [
    "DELIMITER",
    "RawMessage",
    "decode",
    "encode",
    "encode_parts",
    "message_parts",
    "parse",
    "split",
]

DELIMITER = b"<IDS|MSG>"

_orjson_loads = orjson.loads


class RawMessage(NamedTuple):
    """A message split into its frames, JSON still unparsed."""

    identities: tuple[Frame, ...]
    signature: Frame
    header: Frame
    parent_header: Frame
    metadata: Frame
    content: Frame
    buffers: tuple[Frame, ...]

    @property
    def signed_parts(self) -> tuple[Frame, Frame, Frame, Frame]:
        """The four frames the HMAC covers."""
        return (self.header, self.parent_header, self.metadata, self.content)

    def verify(self, signer: Signer, guard: ReplayGuard | None = None) -> None:
        """Check the signature, then (only then) record it in ``guard``."""
        signer.verify(self.signed_parts, self.signature)
        if guard is not None:
            guard.record(bytes(self.signature))


def split(frames: Frames) -> RawMessage:
    """Split multipart frames at the delimiter; bad framing raises MalformedMessage."""
    try:
        index = frames.index(DELIMITER)
    except ValueError:
        raise MalformedMessage("no <IDS|MSG> delimiter among the frames") from None
    body = frames[index + 1 :]
    if len(body) < 5:
        raise MalformedMessage(f"expected at least 5 frames after the delimiter, got {len(body)}")
    return RawMessage(
        identities=tuple(frames[:index]),
        signature=body[0],
        header=body[1],
        parent_header=body[2],
        metadata=body[3],
        content=body[4],
        buffers=tuple(body[5:]),
    )


def parse(raw: RawMessage, *, channel: Channel | None = None) -> Message:
    """Parse the JSON frames of ``raw`` (signature not checked here)."""
    try:  # the fast path: four objects, as every sane peer sends
        header = _orjson_loads(raw.header)
        parent_header = _orjson_loads(raw.parent_header)
        metadata = _orjson_loads(raw.metadata)
        content = _orjson_loads(raw.content)
    except orjson.JSONDecodeError:
        return _parse_naming_the_fault(raw, channel)
    if not (
        type(header) is dict
        and type(parent_header) is dict
        and type(metadata) is dict
        and type(content) is dict
    ):
        return _parse_naming_the_fault(raw, channel)
    return Message(check_header(header), parent_header, metadata, content, raw.buffers, channel)


def _parse_naming_the_fault(raw: RawMessage, channel: Channel | None) -> Message:
    """The slow path: part by part, so the MalformedMessage says which part is wrong."""
    return Message(
        header=check_header(loads_object(raw.header, "header")),
        parent_header=loads_object(raw.parent_header, "parent_header"),
        metadata=loads_object(raw.metadata, "metadata"),
        content=loads_object(raw.content, "content"),
        buffers=raw.buffers,
        channel=channel,
    )


def decode(
    frames: Frames,
    signer: Signer,
    *,
    guard: ReplayGuard | None = None,
    channel: Channel | None = None,
) -> tuple[tuple[Frame, ...], Message]:
    """Verify and parse one message; returns (routing identities, message)."""
    raw = split(frames)
    raw.verify(signer, guard)
    return raw.identities, parse(raw, channel=channel)


def encode_parts(
    parts: Frames,
    signer: Signer,
    *,
    buffers: Frames = (),
    identities: Frames = (),
) -> list[Frame]:
    """Frame four already-encoded JSON parts (header, parent, metadata, content) and sign them."""
    if len(parts) != 4:
        raise LocalProtocolError(f"expected 4 JSON parts, got {len(parts)}")
    return [*identities, DELIMITER, signer.sign(parts), *parts, *buffers]


def message_parts(msg: Message) -> list[Frame]:
    """The unsigned parts of ``msg``: header, parent, metadata, content (JSON), buffers.

    Unencodable content raises LocalProtocolError.
    """
    parent, metadata, content = msg.parent_header, msg.metadata, msg.content
    # Written out, not a loop: this is the hottest path of every sender, and
    # empty dicts (parent, metadata) are common enough to skip the encoder.
    try:
        parts: list[Frame] = [
            dumps_fast(msg.header),
            dumps_fast(parent) if parent else b"{}",
            dumps_fast(metadata) if metadata else b"{}",
            dumps_fast(content) if content else b"{}",
        ]
    except TypeError:  # slow path: retries, or a clear LocalProtocolError
        parts = [dumps(msg.header), dumps(parent), dumps(metadata), dumps(content)]
    parts.extend(msg.buffers)
    return parts


def encode(msg: Message, signer: Signer, *, identities: Frames = ()) -> list[Frame]:
    """The signed multipart frames of ``msg``; unencodable content raises LocalProtocolError."""
    parts = message_parts(msg)
    return [*identities, DELIMITER, signer.sign(parts[:4]), *parts]
