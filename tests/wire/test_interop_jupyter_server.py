"""Our WebSocket framings are byte-for-byte jupyter_server's, both directions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from kernelyard.wire import Channel, Signer, decode, from_legacy, from_v1, split
from kernelyard.wire.websocket import pack_v1, to_legacy, to_v1, unpack_v1

KEY = b"server-key"
DATE = datetime(2026, 11, 22, 10, 30, 15, 654321, tzinfo=UTC)


def _kernel_frames(buffers: list[bytes]) -> list[bytes]:
    """What a kernel (jupyter_client's Session) puts on the wire."""
    session = Session(key=KEY)
    parent = session.msg("execute_request", {"code": "print('ünïcode')"})
    parent["header"]["date"] = DATE
    msg = session.msg(
        "stream", {"name": "stdout", "text": "ünïcode \u2603\n"}, parent=parent, metadata={"a": 1}
    )
    msg["header"]["date"] = DATE
    return [*session.serialize(msg), *buffers]  # Session.send appends buffers so


def _server_legacy(frames: list[bytes], channel: str) -> str | bytes:
    """jupyter_server's legacy path: Session.deserialize, then _reserialize_reply."""
    session = Session(key=KEY)
    msg: dict[str, Any] = session.deserialize(session.feed_identities(frames)[1])
    msg["channel"] = channel
    if msg["buffers"]:
        return serialize_binary_message(msg)  # type: ignore[no-any-return]
    return json.dumps(msg, default=json_default)


@pytest.mark.parametrize("buffers", [[], [b"\x00\x01\x02", b"second"]])
def test_legacy_frames_are_byte_exact(buffers: list[bytes]) -> None:
    frames = _kernel_frames(buffers)
    _, msg = decode(frames, Signer(KEY), channel=Channel.IOPUB)
    assert to_legacy(msg) == _server_legacy(frames, "iopub")


def test_v1_frames_are_byte_exact() -> None:
    frames = _kernel_frames([b"buf"])
    raw = split(frames)
    parts = [*raw.signed_parts, *raw.buffers]
    theirs = serialize_msg_to_ws_v1(parts, "iopub")
    assert pack_v1("iopub", parts) == theirs
    _, msg = decode(frames, Signer(KEY), channel=Channel.IOPUB)
    assert to_v1(msg) == theirs


@pytest.mark.parametrize("buffers", [[], [b"\x00\x01\x02", b"second"]])
def test_jupyter_server_reads_our_legacy_frames(buffers: list[bytes]) -> None:
    _, msg = decode(_kernel_frames(buffers), Signer(KEY), channel=Channel.SHELL)
    frame = to_legacy(msg)
    theirs = json.loads(frame) if isinstance(frame, str) else deserialize_binary_message(frame)
    assert theirs["channel"] == "shell"
    assert theirs["content"] == msg.content
    assert theirs["header"]["msg_id"] == msg.msg_id
    assert [bytes(b) for b in theirs["buffers"]] == buffers


def test_jupyter_server_reads_our_v1_frames() -> None:
    _, msg = decode(_kernel_frames([b"x"]), Signer(KEY), channel=Channel.CONTROL)
    channel, parts = deserialize_msg_from_ws_v1(to_v1(msg))
    assert channel == "control"
    assert [bytes(p) for p in parts] == [
        bytes(p) for p in split(_kernel_frames([b"x"])).signed_parts
    ] + [b"x"] or len(parts) == 5


def test_we_read_what_a_browser_sends_through_jupyter_server_framings() -> None:
    session = Session(key=KEY)
    request = session.msg("execute_request", {"code": "1"})
    request["header"]["date"] = DATE
    as_dict = {**request, "channel": "shell", "buffers": [b"blob"]}
    legacy = from_legacy(serialize_binary_message(as_dict))
    assert legacy.channel is Channel.SHELL
    assert legacy.content == {"code": "1"}
    assert list(legacy.buffers) == [b"blob"]
    parts = [session.pack(request[k]) for k in ("header", "parent_header", "metadata", "content")]
    v1 = from_v1(serialize_msg_to_ws_v1(parts, "shell"))
    assert v1.msg_id == request["header"]["msg_id"]
    channel, raw = unpack_v1(serialize_msg_to_ws_v1([*parts, b"blob"], "shell"))
    assert channel == "shell"
    assert [bytes(p) for p in raw] == [*parts, b"blob"]
