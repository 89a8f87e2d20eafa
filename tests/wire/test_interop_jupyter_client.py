"""Our codec against jupyter_client's Session, in both directions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from jupyter_client.session import Session

from kernelyard.errors import InvalidSignature
from kernelyard.wire import Channel, Message, MessageFactory, ReplayGuard, Signer, decode, encode

from ..strategies import FIXED_NOW, messages

SCHEMES = ["hmac-sha256", "hmac-sha512", "hmac-md5"]


def _session(key: bytes, scheme: str = "hmac-sha256") -> Session:
    return Session(key=key, signature_scheme=scheme, username="someone")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_jupyter_client_accepts_our_frames(scheme: str) -> None:
    factory = MessageFactory(session="ours", clock=lambda: FIXED_NOW)
    request = factory.message("execute_request", {"code": "1+1", "silent": False})
    msg = factory.message(
        "comm_msg",
        {"comm_id": "c", "data": {"x": [1, 2.5, None]}},
        parent=request,
        metadata={"started": FIXED_NOW},
        buffers=[b"\x00\x01binary", b""],
    )
    frames = encode(msg, Signer(b"shared-key", scheme), identities=[b"router-id"])
    session = _session(b"shared-key", scheme)
    identities, rest = session.feed_identities(frames)
    got = session.deserialize(rest)
    assert identities == [b"router-id"]
    assert got["header"]["msg_id"] == msg.msg_id
    assert got["header"]["date"] == FIXED_NOW
    assert got["header"]["version"] == "5.5"
    assert got["parent_header"]["msg_id"] == request.msg_id
    assert got["content"] == msg.content
    assert got["metadata"] == {"started": "2026-11-22T10:30:15.123456Z"}
    assert [bytes(b) for b in got["buffers"]] == [b"\x00\x01binary", b""]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_we_accept_jupyter_client_frames(scheme: str) -> None:
    session = _session(b"shared-key", scheme)
    parent = session.msg("execute_request", {"code": "x"})
    msg = session.msg(
        "display_data",
        {"data": {"text/plain": "héllo"}, "metadata": {}, "transient": {}},
        parent=parent,
        metadata={"n": 1},
    )
    # Session.send appends the buffers after serialize; so do we here.
    frames = [*session.serialize(msg, ident=[b"a", b"b"]), b"buf-1", memoryview(b"buf-2")]
    identities, got = decode(frames, Signer(b"shared-key", scheme), guard=ReplayGuard())
    assert identities == (b"a", b"b")
    assert got.msg_type == "display_data"
    assert got.msg_id == msg["header"]["msg_id"]
    assert got.parent_msg_id == parent["header"]["msg_id"]
    assert got.content == msg["content"]
    assert got.metadata == {"n": 1}
    assert got.header["username"] == "someone"
    assert [bytes(b) for b in got.buffers] == [b"buf-1", b"buf-2"]
    assert got.date is not None
    assert got.date.tzinfo is not None


def test_unsigned_mode_matches_jupyter_client() -> None:
    session = _session(b"")
    frames = session.serialize(session.msg("status", {"execution_state": "idle"}))
    assert frames[1] == b""
    _, got = decode(frames, Signer(b""))
    assert got.content == {"execution_state": "idle"}
    ours = encode(got, Signer(b""))
    assert session.deserialize(session.feed_identities(ours)[1])["content"] == got.content


def test_wrong_key_is_rejected_both_ways() -> None:
    session = _session(b"their-key")
    frames = session.serialize(session.msg("status", {"execution_state": "idle"}))
    with pytest.raises(InvalidSignature):
        decode(frames, Signer(b"our-key"))
    ours = encode(
        Message(MessageFactory(clock=lambda: datetime.now(UTC)).header("x")), Signer(b"k")
    )
    with pytest.raises(ValueError, match="Invalid Signature"):
        session.deserialize(session.feed_identities(ours)[1])


@given(messages())
def test_any_message_we_encode_is_understood_by_jupyter_client(msg: Message) -> None:
    session = _session(b"k")
    got = session.deserialize(session.feed_identities(encode(msg, Signer(b"k")))[1])
    assert got["content"] == msg.content
    assert got["metadata"] == msg.metadata
    assert got["header"]["msg_type"] == msg.msg_type
    assert [bytes(b) for b in got["buffers"]] == [bytes(b) for b in msg.buffers]


def test_channel_is_taken_from_the_transport() -> None:
    session = _session(b"k")
    frames = session.serialize(session.msg("status", {"execution_state": "busy"}))
    _, got = decode(frames, Signer(b"k"), channel=Channel.IOPUB)
    assert got.to_dict()["channel"] == "iopub"
