from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelyard.errors import (
    InvalidSignature,
    LocalProtocolError,
    MalformedMessage,
    RemoteProtocolError,
    ReplayedMessage,
)
from kernelyard.wire import (
    DELIMITER,
    Channel,
    Message,
    MessageFactory,
    ReplayGuard,
    Signer,
    decode,
    encode,
    encode_parts,
    split,
)

from ..strategies import FIXED_NOW, messages

SIGNER = Signer(b"a-secret-key")
signers = st.sampled_from([SIGNER, Signer(b""), Signer(b"k", "hmac-sha512")])


def _status() -> Message:
    factory = MessageFactory(session="s", clock=lambda: FIXED_NOW)
    return factory.message("status", {"execution_state": "busy"}, channel=Channel.IOPUB)


def test_frames_follow_the_protocol_layout() -> None:
    frames = encode(_status(), SIGNER, identities=[b"peer"])
    assert frames[0] == b"peer"
    assert frames[1] == DELIMITER
    assert frames[2] == SIGNER.sign(frames[3:7])
    assert frames[6] == b'{"execution_state":"busy"}'
    assert frames[4] == b"{}"


@given(messages(), signers, st.lists(st.binary(max_size=8), max_size=2))
def test_round_trip(msg: Message, signer: Signer, identities: list[bytes]) -> None:
    frames = encode(msg, signer, identities=identities)
    got_ids, got = decode(frames, signer, guard=ReplayGuard())
    assert list(got_ids) == identities
    assert got == msg


@given(st.lists(st.binary(max_size=40), max_size=10))
def test_arbitrary_frames_never_crash_the_decoder(frames: list[bytes]) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(frames, SIGNER)


@given(messages(), st.integers(min_value=0, max_value=4), st.data())
def test_any_change_to_a_signed_frame_is_rejected(
    msg: Message, which: int, data: st.DataObject
) -> None:
    frames = encode(msg, SIGNER)
    target = bytearray(frames[1 + which])  # signature, header, parent, metadata, content
    position = data.draw(st.integers(min_value=0, max_value=len(target) - 1))
    target[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    frames[1 + which] = bytes(target)
    with pytest.raises(InvalidSignature):
        decode(frames, SIGNER)


@given(messages())
def test_replayed_frames_are_rejected(msg: Message) -> None:
    guard = ReplayGuard()
    frames = encode(msg, SIGNER)
    decode(frames, SIGNER, guard=guard)
    with pytest.raises(ReplayedMessage):
        decode(frames, SIGNER, guard=guard)


def test_forged_frames_do_not_enter_the_replay_guard() -> None:
    guard = ReplayGuard()
    frames = encode(_status(), SIGNER)
    forged = [*frames[:2], b'{"msg_id":"x","msg_type":"y"}', *frames[3:]]
    with pytest.raises(InvalidSignature):
        decode(forged, SIGNER, guard=guard)
    assert len(guard) == 0
    decode(frames, SIGNER, guard=guard)  # the genuine message is still accepted once


def test_buffers_are_not_signed_and_pass_through() -> None:
    msg = _status()
    msg = Message(msg.header, content=msg.content, buffers=(b"\x00raw",), channel=msg.channel)
    frames = encode(msg, SIGNER)
    assert frames[-1] == b"\x00raw"
    _, got = decode([*frames[:-1], b"changed"], SIGNER)
    assert list(got.buffers) == [b"changed"]


def test_memoryview_frames_decode() -> None:
    frames = [memoryview(f) for f in encode(_status(), SIGNER)]
    _, got = decode(frames, SIGNER, channel=Channel.IOPUB)
    assert got.content == {"execution_state": "busy"}
    assert got.channel is Channel.IOPUB


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([b"a", b"b"], "no <IDS|MSG> delimiter"),
        ([DELIMITER, b"", b"{}", b"{}", b"{}"], "at least 5 frames"),
        ([DELIMITER, b"", b"nope", b"{}", b"{}", b"{}"], "invalid JSON"),
        ([DELIMITER, b"", b"[]", b"{}", b"{}", b"{}"], "header is not a JSON object"),
        ([DELIMITER, b"", b'{"msg_id":"a"}', b"{}", b"{}", b"{}"], "header.msg_type"),
        ([DELIMITER, b"", b'{"msg_id":"a","msg_type":"t"}', b"1", b"{}", b"{}"], "parent_header"),
        ([DELIMITER, b"", b'{"msg_id":"a","msg_type":"t"}', b"{}", b"{}", b"\xff"], "JSON"),
    ],
)
def test_malformed_frames_get_named_errors(frames: list[bytes], error: str) -> None:
    with pytest.raises(MalformedMessage, match=error):
        decode(frames, Signer(b""))


def test_split_keeps_raw_frames_for_relays() -> None:
    frames = encode(_status(), SIGNER, identities=[b"id1", b"id2"])
    raw = split(frames)
    assert raw.identities == (b"id1", b"id2")
    relayed = encode_parts(raw.signed_parts, SIGNER, buffers=raw.buffers)
    assert relayed == frames[2:]


def test_encode_parts_needs_four_parts() -> None:
    with pytest.raises(ValueError, match="4 JSON parts"):
        encode_parts([b"{}"], SIGNER)


def test_unencodable_content_is_a_local_error() -> None:
    msg = Message(_status().header, content={"x": {1, 2}})
    with pytest.raises(LocalProtocolError):
        encode(msg, SIGNER)
