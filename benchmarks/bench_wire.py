"""Wire codec: encode+sign and decode+verify, kernelyard against jupyter_client's Session.

Both sides use the same key and scheme (hmac-sha256), orjson for JSON (the
Session default when orjson is installed), and a replay guard on decode. The
messages are a typical IOPub ``status`` and a typical ``execute_reply`` as
ipykernel sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jupyter_client.session import Session

from kernelyard.wire import Message, MessageFactory, ReplayGuard, Signer, decode, encode

from .harness import Comparison, compare

KEY = b"7b3c1a4e-2f0d-4c11-9d2e-5a6b7c8d9e0f"
REFERENCE = "jupyter_client Session"

STATUS = {"execution_state": "busy"}
EXECUTE_REPLY = {
    "status": "ok",
    "execution_count": 12,
    "user_expressions": {},
    "payload": [],
}
EXECUTE_REPLY_METADATA = {
    "started": "2026-11-22T10:30:15.123456Z",
    "dependencies_met": True,
    "engine": "5f0c8a1e-8c1d-4a2b-9f3e-1d2c3b4a5f6e",
    "status": "ok",
}
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("status", "status", STATUS, {}),
    ("execute_reply", "execute_reply", EXECUTE_REPLY, EXECUTE_REPLY_METADATA),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _decoders(frames: list[list[bytes]]) -> tuple[Callable[[], object], Callable[[], object]]:
    """Two decoders, each walking its own pass over the same distinct frames.

    Every decode must see a fresh signature (both sides reject replays), so
    each call takes the next of many distinct, pre-encoded messages.
    """
    signer, guard, receiver = Signer(KEY), ReplayGuard(), Session(key=KEY)
    ours, theirs = iter(frames), iter(frames)

    def decode_ours() -> object:
        return decode(next(ours), signer, guard=guard)

    def decode_theirs() -> object:
        return receiver.deserialize(receiver.feed_identities(next(theirs))[1])

    return decode_ours, decode_theirs


def run(rounds: int = 15, inner: int = 2000) -> list[Comparison]:
    _check_equivalent()
    results: list[Comparison] = []
    session = Session(key=KEY, username="bench")
    factory = MessageFactory(username="bench", clock=_now)
    signer = Signer(KEY)
    request = session.msg("execute_request", {"code": "pass"})
    parent = factory.message("execute_request", {"code": "pass"})

    def side_by_side(name: str, ours: Callable[[], object], theirs: Callable[[], object]) -> None:
        results.append(compare(name, ours, theirs, reference=REFERENCE, rounds=rounds, inner=inner))

    for label, msg_type, content, metadata in CASES:
        ours_msg = factory.message(msg_type, content, parent=parent, metadata=metadata)
        theirs_msg = session.msg(msg_type, content, parent=request, metadata=metadata)
        side_by_side(
            f"encode+sign {label}",
            lambda m=ours_msg: encode(m, signer),
            lambda m=theirs_msg: session.serialize(m),
        )
        side_by_side(
            f"build+encode+sign {label}",
            lambda t=msg_type, c=content, m=metadata: encode(
                factory.message(t, c, parent=parent, metadata=m), signer
            ),
            lambda t=msg_type, c=content, m=metadata: session.serialize(
                session.msg(t, c, parent=request, metadata=m)
            ),
        )
        frames = [
            session.serialize(session.msg(msg_type, content, parent=request, metadata=metadata))
            for _ in range((rounds + 1) * inner)
        ]
        side_by_side(f"decode+verify {label}", *_decoders(frames))
    return results


def _check_equivalent() -> None:
    """Both sides must produce messages the other accepts, or the race is meaningless."""
    session = Session(key=KEY)
    signer = Signer(KEY)
    msg: Message = MessageFactory(clock=_now).message("status", STATUS)
    assert session.deserialize(session.feed_identities(encode(msg, signer))[1])["content"] == STATUS
    theirs = session.serialize(session.msg("status", STATUS))
    assert decode(theirs, signer)[1].content == STATUS
