from __future__ import annotations

from datetime import datetime

import pytest

from kernelyard.errors import LocalProtocolError, MalformedMessage
from kernelyard.wire import PROTOCOL_VERSION, Channel, Message, MessageFactory, new_header

from ..strategies import FIXED_NOW


def test_new_header_has_every_field_of_protocol_5_5() -> None:
    header = new_header("execute_request", msg_id="m1", session="s1", now=FIXED_NOW)
    assert header == {
        "msg_id": "m1",
        "msg_type": "execute_request",
        "username": "username",
        "session": "s1",
        "date": "2026-11-22T10:30:15.123456Z",
        "version": PROTOCOL_VERSION,
    }
    assert PROTOCOL_VERSION == "5.5"


def test_subshell_id_is_in_the_header_only_when_set() -> None:
    header = new_header("execute_request", msg_id="m", session="s", now=FIXED_NOW, subshell_id="x")
    assert header["subshell_id"] == "x"


def test_factory_numbers_messages_within_its_session_and_links_parents() -> None:
    clock_readings: list[datetime] = []

    def clock() -> datetime:
        clock_readings.append(FIXED_NOW)
        return FIXED_NOW

    factory = MessageFactory(session="abc", username="me", clock=clock)
    request = factory.message("kernel_info_request", channel=Channel.SHELL)
    reply = factory.message("kernel_info_reply", {"status": "ok"}, parent=request)
    assert (request.msg_id, reply.msg_id) == ("abc_1", "abc_2")
    assert reply.parent_header == request.header
    assert reply.parent_msg_id == "abc_1"
    assert request.header["username"] == "me"
    assert request.date == FIXED_NOW
    assert len(clock_readings) == 2


def test_factory_makes_a_session_id_when_none_is_given() -> None:
    first = MessageFactory(clock=lambda: FIXED_NOW)
    second = MessageFactory(clock=lambda: FIXED_NOW)
    assert first.session != second.session
    assert len(first.session) == 32


def test_factory_refuses_an_empty_msg_type() -> None:
    with pytest.raises(LocalProtocolError):
        MessageFactory(clock=lambda: FIXED_NOW).message("")


def test_to_dict_and_from_dict_round_trip() -> None:
    factory = MessageFactory(session="s", clock=lambda: FIXED_NOW)
    msg = factory.message("comm_msg", {"data": {}}, buffers=[b"x"], channel=Channel.SHELL)
    data = msg.to_dict()
    assert list(data) == [
        "header",
        "msg_id",
        "msg_type",
        "parent_header",
        "metadata",
        "content",
        "buffers",
        "channel",
    ]
    assert Message.from_dict(data, channel=Channel.SHELL) == msg


def test_message_without_a_date_or_parent() -> None:
    msg = Message(header={"msg_id": "a", "msg_type": "t"})  # type: ignore[typeddict-item]
    assert msg.date is None
    assert msg.parent_msg_id is None
    assert msg.subshell_id is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "header is not a JSON object"),
        ({"header": {"msg_type": "x"}}, "header.msg_id"),
        ({"header": {"msg_id": "a", "msg_type": 3}}, "header.msg_type"),
        ({"header": {"msg_id": "a", "msg_type": "t", "date": 5}}, "header.date"),
        ({"header": {"msg_id": "a", "msg_type": "t"}, "content": []}, "content"),
        ({"header": {"msg_id": "a", "msg_type": "t"}, "buffers": ["text"]}, "buffers"),
    ],
)
def test_from_dict_names_what_is_wrong(data: dict[str, object], error: str) -> None:
    with pytest.raises(MalformedMessage, match=error):
        Message.from_dict(data)
