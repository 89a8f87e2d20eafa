"""The two WebSocket framings of kernel messages, both directions.

**Legacy** (no subprotocol): a text frame holding the message dict as JSON, or,
when the message has buffers, a binary frame::

    uint32 BE nparts | nparts x uint32 BE start offsets | JSON (no "buffers") | buffer 1 | ...

**v1** (``v1.kernel.websocket.jupyter.org``)::

    uint64 LE n | n x uint64 LE offsets | channel | header | parent | metadata | content | bufs

where the last offset is the end of the frame. The parts are the kernel's
own ZeroMQ frames, so a relay passes them through unparsed
(:func:`pack_v1` / :func:`unpack_v1`).

What we write is byte-for-byte what jupyter_server writes for the same
message (its ``serialize_binary_message``, ``serialize_msg_to_ws_v1`` and
``json.dumps(msg, default=json_default)``); dates are passed through as the
kernel wrote them. Decoding any bytes either returns or raises
MalformedMessage.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from kernelyard.errors import LocalProtocolError, MalformedMessage
from kernelyard.wire.channel import MESSAGE_CHANNELS, Channel
from kernelyard.wire.codec import RawMessage, message_parts, parse
from kernelyard.wire.frame import Frame
from kernelyard.wire.jsonutil import dumps, loads_object
from kernelyard.wire.message import Message

__all__ = [
    "V1_SUBPROTOCOL",
    "choose_subprotocol",
    "client_frame",
    "frame_parts",
    "from_legacy",
    "from_v1",
    "legacy_from_parts",
    "pack_v1",
    "to_legacy",
    "to_v1",
    "unpack_v1",
]

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"


def _message_channel(value: object) -> Channel | None:
    """The channel a client named; None when it named none."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            channel = Channel(value)
        except ValueError:
            pass
        else:
            if channel in MESSAGE_CHANNELS:
                return channel
    raise MalformedMessage(f"unknown channel: {value!r}")


# -- legacy -------------------------------------------------------------------


def to_legacy(msg: Message) -> str | bytes:
    """The legacy WebSocket frame of ``msg``: text JSON, or binary when it has buffers."""
    data: dict[str, Any] = {
        "header": msg.header,
        "msg_id": msg.msg_id,
        "msg_type": msg.msg_type,
        "parent_header": msg.parent_header,
        "metadata": msg.metadata,
        "content": msg.content,
    }
    if not msg.buffers:
        data["buffers"] = []
        if msg.channel is not None:
            data["channel"] = msg.channel.value
        # stdlib json on purpose: its separators and ASCII escapes are what
        # jupyter_server writes, so clients see the same bytes from either.
        return json.dumps(data)
    if msg.channel is not None:
        data["channel"] = msg.channel.value
    return _pack_legacy_binary(json.dumps(data).encode("utf-8"), msg.buffers)


def legacy_from_parts(
    channel: Channel, parts: Sequence[Frame], msg_id: str, msg_type: str
) -> str | bytes:
    """The legacy frame of raw parts (header, parent, metadata, content, buffers...).

    The parts' JSON is spliced in as the kernel wrote it, not parsed and
    re-encoded: a server relaying to many clients builds each frame once and
    cheaply. Bytes that are not UTF-8 become U+FFFD rather than an error.
    """
    json_part = b"".join(
        [
            b'{"header":',
            parts[0],
            b',"msg_id":',
            dumps(msg_id),
            b',"msg_type":',
            dumps(msg_type),
            b',"parent_header":',
            parts[1],
            b',"metadata":',
            parts[2],
            b',"content":',
            parts[3],
            b',"channel":"',
            channel.value.encode(),
            b'"',
        ]
    )
    if len(parts) == 4:
        return (json_part + b',"buffers":[]}').decode("utf-8", errors="replace")
    return _pack_legacy_binary(json_part + b"}", parts[4:])


def _pack_legacy_binary(json_part: bytes, buffers: Sequence[Frame]) -> bytes:
    """The binary legacy frame: a table of offsets, the JSON, then each buffer."""
    parts = [json_part, *buffers]
    offsets = [4 * (len(parts) + 1)]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part))
    return b"".join([struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets), *parts])


def from_legacy(data: str | bytes) -> Message:
    """Decode a legacy frame (text or binary); ``channel`` is None if the client named none."""
    if isinstance(data, str):
        msg = loads_object(data, "WebSocket message")
        buffers: list[Frame] = []
    else:
        json_part, buffers = _split_legacy_binary(data)
        msg = loads_object(json_part, "WebSocket message")
    channel = _message_channel(msg.get("channel"))
    if buffers:
        msg["buffers"] = buffers
    return Message.from_dict(msg, channel=channel)


def _split_legacy_binary(data: bytes) -> tuple[memoryview, list[Frame]]:
    view = memoryview(data)
    if len(view) < 8:
        raise MalformedMessage("binary WebSocket message shorter than its offset table")
    (count,) = struct.unpack_from("!I", view)
    table_end = 4 * (count + 1)
    if count < 1 or table_end > len(view):
        raise MalformedMessage(f"binary WebSocket message claims {count} parts")
    starts = list(struct.unpack_from(f"!{count}I", view, 4))
    bounds = [*starts, len(view)]
    if starts[0] < table_end or any(a > b for a, b in pairwise(bounds)):
        raise MalformedMessage("binary WebSocket message has bad offsets")
    parts = [view[a:b] for a, b in pairwise(bounds)]
    return parts[0], [bytes(p) for p in parts[1:]]


# -- v1 -----------------------------------------------------------------------


def pack_v1(channel: str, parts: Sequence[Frame]) -> bytes:
    """A v1 frame of raw parts (header, parent, metadata, content, buffers...)."""
    name = channel.encode("utf-8")
    offsets = [8 * (len(parts) + 3), 8 * (len(parts) + 3) + len(name)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    table = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return b"".join([table, name, *parts])


def unpack_v1(data: bytes) -> tuple[str, list[memoryview]]:
    """Split a v1 frame into its channel name and raw parts (views into ``data``)."""
    view = memoryview(data)
    if len(view) < 8:
        raise MalformedMessage("v1 WebSocket message shorter than its offset count")
    (count,) = struct.unpack_from("<Q", view)
    table_end = 8 * (count + 1)
    if count < 2 or table_end > len(view):
        raise MalformedMessage(f"v1 WebSocket message claims {count} offsets")
    offsets = struct.unpack_from(f"<{count}Q", view, 8)
    if (
        offsets[0] < table_end
        or offsets[-1] > len(view)
        or any(a > b for a, b in pairwise(offsets))
    ):
        raise MalformedMessage("v1 WebSocket message has bad offsets")
    try:
        channel = bytes(view[offsets[0] : offsets[1]]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage("v1 channel name is not UTF-8") from exc
    parts = [view[a:b] for a, b in pairwise(offsets[1:])]
    return channel, parts


def to_v1(msg: Message) -> bytes:
    """The v1 frame of ``msg`` (its channel must be set)."""
    if msg.channel is None:
        raise LocalProtocolError("a v1 WebSocket message needs a channel")
    parts = [dumps(msg.header), dumps(msg.parent_header), dumps(msg.metadata), dumps(msg.content)]
    return pack_v1(msg.channel.value, [*parts, *msg.buffers])


def from_v1(data: bytes) -> Message:
    """Decode and parse a v1 frame into a message with its channel."""
    name, parts = unpack_v1(data)
    channel = _message_channel(name)
    if len(parts) < 4:
        raise MalformedMessage(f"v1 WebSocket message has {len(parts)} parts, expected 4 or more")
    header, parent_header, metadata, content = parts[:4]
    raw = RawMessage(
        identities=(),
        signature=b"",
        header=header,
        parent_header=parent_header,
        metadata=metadata,
        content=content,
        buffers=tuple(bytes(b) for b in parts[4:]),
    )
    return parse(raw, channel=channel)


# -- what a client sends a server -----------------------------------------------


def choose_subprotocol(offered: Sequence[str], preference: str | None) -> str | None:
    """v1 only when the client offers it and ``preference`` (None or v1) allows it;
    ``preference`` "" means always the legacy framing.
    """
    if preference == "":
        return None
    wanted = preference or V1_SUBPROTOCOL
    return wanted if wanted in offered else None


def client_frame(data: str | bytes, *, v1: bool) -> tuple[Channel, list[Frame], dict[str, Any]]:
    """A client's frame as (channel, raw parts, header): v1 binary frames are split
    without parsing their parts (only the header is read), anything else is read as
    the legacy framing (a missing channel means shell, as in jupyter_server).
    Raises MalformedMessage.
    """
    if not (v1 and isinstance(data, bytes)):
        msg = from_legacy(data)
        return msg.channel or Channel.SHELL, message_parts(msg), dict(msg.header)
    channel, parts = _v1_parts(data)
    return channel, parts, loads_object(parts[0], "header")


def frame_parts(data: str | bytes, *, v1: bool) -> tuple[Channel, list[Frame]]:
    """A frame as (channel, raw parts), framed as :func:`client_frame` reads it, but
    without reading any part of a v1 frame (for a relay that parses what it needs once).
    Raises MalformedMessage.
    """
    if not (v1 and isinstance(data, bytes)):
        msg = from_legacy(data)
        return msg.channel or Channel.SHELL, message_parts(msg)
    return _v1_parts(data)


def _v1_parts(data: bytes) -> tuple[Channel, list[Frame]]:
    name, parts = unpack_v1(data)
    try:
        channel = Channel(name)
    except ValueError:
        raise MalformedMessage(f"unknown channel: {name!r}") from None
    if len(parts) < 4:
        raise MalformedMessage(f"v1 message has {len(parts)} parts, expected 4 or more")
    return channel, list(parts)
