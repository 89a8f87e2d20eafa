"""The session protocol, fed literal frames: no sockets, no loop, no clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kernelyard.errors import InvalidSignature, MalformedMessage, ReplayedMessage
from kernelyard.wire import (
    DELIMITER,
    Channel,
    ClientProtocol,
    Dropped,
    InputRequested,
    IOPubReady,
    KernelProtocol,
    Message,
    Output,
    Reply,
    Request,
    Signer,
    Unmatched,
)

KEY = b"secret"
SIGNER = Signer(KEY)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def frames(
    msg_type: str,
    msg_id: str,
    *,
    parent: str | None = None,
    content: bytes = b"{}",
    signer: Signer = SIGNER,
    identities: tuple[bytes, ...] = (),
) -> list[bytes]:
    """A kernel's message as it comes off the wire."""
    header = (
        b'{"msg_id":"%s","msg_type":"%s","session":"k","username":"kernel",'
        % (
            msg_id.encode(),
            msg_type.encode(),
        )
        + b'"date":"2026-01-02T03:04:05.000000Z","version":"5.5"}'
    )
    parent_header = b'{"msg_id":"%s","msg_type":"x_request"}' % parent.encode() if parent else b"{}"
    parts = [header, parent_header, b"{}", content]
    return [*identities, DELIMITER, signer.sign(parts), *parts]


def client(**options: object) -> ClientProtocol[str]:
    return ClientProtocol(SIGNER, session="c", clock=lambda: NOW, **options)  # type: ignore[arg-type]


def request(protocol: ClientProtocol[str], msg_type: str, channel: Channel) -> Message:
    return protocol.factory.message(msg_type, {}, channel=channel)


def test_a_reply_reaches_the_origin_of_its_request_once() -> None:
    protocol = client()
    sent = request(protocol, "kernel_info_request", Channel.SHELL)
    out = protocol.send(sent, "session-a")
    assert out[0] == DELIMITER
    assert out[1] == SIGNER.sign(out[2:6])
    [event] = protocol.receive(Channel.SHELL, frames("kernel_info_reply", "r1", parent=sent.msg_id))
    assert isinstance(event, Reply)
    assert event.origin == "session-a"
    assert event.received.msg_type == "kernel_info_reply"
    assert event.received.parent_id == sent.msg_id
    # Answered: a second reply to the same request is nobody's.
    [again] = protocol.receive(Channel.SHELL, frames("kernel_info_reply", "r2", parent=sent.msg_id))
    assert isinstance(again, Unmatched)


def test_input_requests_go_to_the_execute_that_asked_and_keep_it_pending() -> None:
    protocol = client()
    sent = request(protocol, "execute_request", Channel.SHELL)
    protocol.send(sent, "session-b")
    [asked] = protocol.receive(Channel.STDIN, frames("input_request", "i1", parent=sent.msg_id))
    assert isinstance(asked, InputRequested)
    assert asked.origin == "session-b"
    [reply] = protocol.receive(Channel.SHELL, frames("execute_reply", "r1", parent=sent.msg_id))
    assert isinstance(reply, Reply)
    assert reply.origin == "session-b"


def test_only_requests_wait_for_replies() -> None:
    protocol = client()
    comm = request(protocol, "comm_msg", Channel.SHELL)
    protocol.send(comm, "x")
    [event] = protocol.receive(Channel.SHELL, frames("comm_reply", "r", parent=comm.msg_id))
    assert isinstance(event, Unmatched)
    assert list(protocol.pending()) == []


def test_forgetting_and_the_bound_on_pending_requests() -> None:
    protocol = client(max_pending=2)
    first, second, third = (request(protocol, "is_complete_request", Channel.SHELL) for _ in "abc")
    protocol.send(first, "1")
    protocol.send(second, "2")
    protocol.send(third, "3")  # the oldest, "1", is forgotten
    protocol.forget(second.msg_id)
    assert list(protocol.pending()) == ["3"]
    kinds = [
        type(
            protocol.receive(Channel.SHELL, frames("is_complete_reply", f"r{n}", parent=m.msg_id))[
                0
            ]
        )
        for n, m in enumerate((first, second, third))
    ]
    assert kinds == [Unmatched, Unmatched, Reply]


def test_raw_parts_from_a_relay_are_signed_and_matched() -> None:
    protocol = client(parse_all=False)
    parts = [b'{"msg_id":"m1","msg_type":"execute_request"}', b"{}", b"{}", b'{"code":"1"}']
    out = protocol.send_parts(
        Channel.SHELL, parts, msg_id="m1", msg_type="execute_request", origin="s"
    )
    assert out == [DELIMITER, SIGNER.sign(parts), *parts]
    [event] = protocol.receive(Channel.SHELL, frames("execute_reply", "r", parent="m1"))
    assert isinstance(event, Reply)
    assert event.origin == "s"


def test_iopub_is_ready_at_its_first_message_and_tracks_the_status() -> None:
    protocol = client()
    assert not protocol.iopub_ready
    events = protocol.receive(Channel.IOPUB, frames("iopub_welcome", "w"))
    assert [type(e) for e in events] == [IOPubReady, Output]
    assert protocol.iopub_ready
    busy = frames("status", "s1", content=b'{"execution_state":"busy"}')
    [status] = protocol.receive(Channel.IOPUB, busy)
    assert isinstance(status, Output)
    assert status.execution_state == "busy"
    assert protocol.execution_state == "busy"
    [stream] = protocol.receive(Channel.IOPUB, frames("stream", "s2", content=b'{"text":"x"}'))
    assert isinstance(stream, Output)
    assert stream.execution_state is None
    protocol.reconnected()
    assert (protocol.iopub_ready, protocol.execution_state) == (False, "unknown")
    events = protocol.receive(
        Channel.IOPUB, frames("status", "s3", content=b'{"execution_state":"idle"}')
    )
    assert [type(e) for e in events] == [IOPubReady, Output]


def test_a_probe_is_a_signed_kernel_info_request_whose_reply_is_unmatched() -> None:
    protocol = client()
    probe = protocol.probe()
    assert probe[0] == DELIMITER
    assert probe[1] == SIGNER.sign(probe[2:6])
    assert b'"kernel_info_request"' in probe[2]
    msg_id = probe[2].split(b'"msg_id":"')[1].split(b'"')[0].decode()
    [event] = protocol.receive(Channel.SHELL, frames("kernel_info_reply", "r", parent=msg_id))
    assert isinstance(event, Unmatched)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (frames("status", "f", signer=Signer(b"wrong")), InvalidSignature),
        ([b"no delimiter", b"{}"], MalformedMessage),
        ([DELIMITER, b"", b"{}", b"{}", b"{}", b"{}"], InvalidSignature),
        (frames("status", "j", content=b"not json"), MalformedMessage),
        (frames("status", "l", content=b"[]"), MalformedMessage),
    ],
)
def test_bad_frames_are_dropped_with_the_reason(bad: list[bytes], error: type[Exception]) -> None:
    [event] = client().receive(Channel.IOPUB, bad)
    assert isinstance(event, Dropped)
    assert event.channel is Channel.IOPUB
    assert isinstance(event.error, error)


def test_a_replayed_message_is_dropped_and_a_forged_one_evicts_nothing() -> None:
    protocol = client()
    good = frames("status", "once")
    protocol.receive(Channel.IOPUB, frames("status", "forged", signer=Signer(b"x")))
    assert isinstance(protocol.receive(Channel.IOPUB, good)[-1], Output)
    [event] = protocol.receive(Channel.IOPUB, good)
    assert isinstance(event, Dropped)
    assert isinstance(event.error, ReplayedMessage)


def test_a_relay_parses_only_header_and_parent_and_keeps_the_parts() -> None:
    protocol = client(parse_all=False)
    sent = frames("execute_result", "e", content=b"not json", identities=(b"topic",))
    events = protocol.receive(Channel.IOPUB, sent)
    output = events[-1]
    assert isinstance(output, Output)
    received = output.received
    assert received.parts == sent[3:]
    assert received.identities == (b"topic",)
    assert received.content == {}  # lenient: a relay forwards what it cannot read
    with pytest.raises(MalformedMessage):
        received.message()
    batch = protocol.receive_batch(Channel.IOPUB, [frames("stream", "a"), [b"junk"]])
    assert [type(e) for e in batch] == [Output, Dropped]


def test_the_kernel_side_receives_requests_and_signs_replies() -> None:
    kernel = KernelProtocol(SIGNER, session="k", clock=lambda: NOW)
    sent = client().factory.message(
        "execute_request", {"code": "1"}, channel=Channel.SHELL, subshell_id="sub"
    )
    event = kernel.receive(Channel.SHELL, [b"peer", *client().frames(sent)])
    assert isinstance(event, Request)
    assert event.received.identities == (b"peer",)
    assert event.message.content == {"code": "1"}
    reply = kernel.message("execute_reply", {"status": "ok"}, event.message)
    assert reply.subshell_id == "sub"
    assert reply.parent_header["msg_id"] == sent.msg_id
    back = client().receive(Channel.SHELL, kernel.frames(reply, [b"peer"])[1:])
    assert isinstance(back[0], Unmatched)
    assert back[0].received.message().content == {"status": "ok"}
    dropped = kernel.receive(Channel.SHELL, [b"peer", DELIMITER, b"x"])
    assert isinstance(dropped, Dropped)
