from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelyard.errors import MalformedMessage
from kernelyard.wire import (
    Channel,
    Message,
    MessageFactory,
    client_frame,
    frame_parts,
    message_parts,
    pack_v1,
    unpack_v1,
)
from kernelyard.wire.websocket import from_legacy, from_v1, legacy_from_parts, to_legacy, to_v1

from ..strategies import FIXED_NOW, messages


def _msg(buffers: tuple[bytes, ...] = ()) -> Message:
    factory = MessageFactory(session="s", clock=lambda: FIXED_NOW)
    return factory.message("comm_msg", {"data": {"é": 1}}, buffers=buffers, channel=Channel.SHELL)


def test_legacy_text_is_the_message_dict_with_its_channel() -> None:
    frame = to_legacy(_msg())
    assert isinstance(frame, str)
    data = json.loads(frame)
    assert data["channel"] == "shell"
    assert data["buffers"] == []
    assert data["msg_type"] == "comm_msg"
    assert "\\u00e9" in frame  # ASCII escapes, as jupyter_server writes


def test_legacy_binary_layout() -> None:
    frame = to_legacy(_msg((b"abc", b"")))
    assert isinstance(frame, bytes)
    count, first, second, third = struct.unpack_from("!4I", frame)
    assert (count, first) == (3, 16)
    assert frame[second:third] == b"abc"
    assert third == len(frame)  # the empty buffer runs to the end
    assert "buffers" not in json.loads(frame[first:second])


@given(messages(with_channel=True))
def test_legacy_round_trip(msg: Message) -> None:
    assert from_legacy(to_legacy(msg)) == msg


@given(messages(with_channel=True))
def test_v1_round_trip(msg: Message) -> None:
    assert from_v1(to_v1(msg)) == msg


@given(messages(with_channel=True))
def test_legacy_from_raw_parts_decodes_to_the_message(msg: Message) -> None:
    assert msg.channel is not None
    frame = legacy_from_parts(msg.channel, message_parts(msg), msg.msg_id, msg.msg_type)
    assert isinstance(frame, bytes) == bool(msg.buffers)
    assert from_legacy(frame) == msg


def test_legacy_from_raw_parts_never_fails_on_bad_utf8() -> None:
    parts = [b'{"msg_id":"m"}', b"{}", b"{}", b'{"text":"\xff"}']  # not UTF-8
    frame = legacy_from_parts(Channel.IOPUB, parts, "m", "stream")
    assert isinstance(frame, str)
    assert json.loads(frame)["content"] == {"text": "\ufffd"}


def test_v1_raw_parts_pass_through() -> None:
    parts = [b"{}", b"{}", b"{}", b"{}", b"\x00buffer"]
    frame = pack_v1("iopub", parts)
    channel, got = unpack_v1(frame)
    assert channel == "iopub"
    assert [bytes(p) for p in got] == parts
    (count,) = struct.unpack_from("<Q", frame)
    assert count == 2 + len(parts)
    assert struct.unpack_from("<Q", frame, 8 * count)[0] == len(frame)


def test_legacy_without_a_channel_leaves_the_choice_to_the_server() -> None:
    data = _msg().to_dict()
    del data["channel"]
    assert from_legacy(json.dumps(data)).channel is None


@pytest.mark.parametrize("channel", ["hb", "nope", 3])
def test_unknown_channels_are_rejected(channel: object) -> None:
    data = {**_msg().to_dict(), "channel": channel}
    with pytest.raises(MalformedMessage, match="unknown channel"):
        from_legacy(json.dumps(data))
    if isinstance(channel, str):
        with pytest.raises(MalformedMessage, match="unknown channel"):
            from_v1(pack_v1(channel, [b"{}"] * 4))


def test_v1_needs_a_channel_to_encode() -> None:
    with pytest.raises(ValueError, match="channel"):
        to_v1(Message(_msg().header))


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x01\x00", "shorter"),
        (struct.pack("!I", 0) + b"xxxx", "claims 0 parts"),
        (struct.pack("!I", 1000) + b"xxxx", "claims 1000 parts"),
        (struct.pack("!3I", 2, 12, 11) + b"{}", "bad offsets"),
        (struct.pack("!2I", 1, 4), "bad offsets"),
        (struct.pack("!2I", 1, 8) + b"[]", "not a JSON object"),
    ],
)
def test_bad_legacy_binary_frames(frame: bytes, error: str) -> None:
    with pytest.raises(MalformedMessage, match=error):
        from_legacy(frame)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x01", "shorter"),
        (struct.pack("<Q", 1) + b"x" * 16, "claims 1 offsets"),
        (struct.pack("<Q", 2**40), "claims"),
        (struct.pack("<3Q", 2, 24, 99), "bad offsets"),
        (struct.pack("<3Q", 2, 8, 24), "bad offsets"),
        (struct.pack("<4Q", 3, 32, 31, 32), "bad offsets"),
        (struct.pack("<3Q", 2, 24, 25) + b"\xff", "not UTF-8"),
        (pack_v1("shell", [b"{}", b"{}"]), "2 parts"),
        (pack_v1("shell", [b'{"msg_id":"a","msg_type":"t"}', b"{}", b"{}", b"no"]), "JSON"),
    ],
)
def test_bad_v1_frames(frame: bytes, error: str) -> None:
    with pytest.raises(MalformedMessage, match=error):
        from_v1(frame)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_crash_the_decoders(data: bytes) -> None:
    for decoder in (from_legacy, from_v1, unpack_v1):
        with contextlib.suppress(MalformedMessage):
            decoder(data)


@given(st.text(max_size=80))
def test_arbitrary_text_never_crashes_the_legacy_decoder(text: str) -> None:
    with contextlib.suppress(MalformedMessage):
        from_legacy(text)


@given(messages(with_channel=True), st.data())
def test_mutated_frames_never_crash_the_decoders(msg: Message, data: st.DataObject) -> None:
    for encoder, decoder in ((to_v1, from_v1), (to_legacy, from_legacy)):
        frame = encoder(msg)
        raw = bytearray(frame.encode() if isinstance(frame, str) else frame)
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
        with contextlib.suppress(MalformedMessage):
            decoder(bytes(raw))


@given(messages(with_channel=True))
def test_frame_parts_are_client_frames_parts_without_reading_them(msg: Message) -> None:
    for frame, v1 in ((to_v1(msg), True), (to_legacy(msg), False)):
        channel, parts = frame_parts(frame, v1=v1)
        expected_channel, expected_parts, _ = client_frame(frame, v1=v1)
        assert channel is expected_channel
        assert [bytes(p) for p in parts] == [bytes(p) for p in expected_parts]
        assert from_v1(pack_v1(channel.value, parts)).content == msg.content


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (pack_v1("nope", [b"{}"] * 4), "unknown channel"),
        (pack_v1("shell", [b"{}"] * 3), "expected 4 or more"),
        (b"\x00" * 3, "v1"),
    ],
)
def test_frame_parts_rejects_what_client_frame_rejects(frame: bytes, error: str) -> None:
    for read in (frame_parts, client_frame):
        with pytest.raises(MalformedMessage, match=error):
            read(frame, v1=True)
