"""The kernel's IOPub publisher: order kept, stream text coalesced, nothing dropped."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from kernelyard.kernel.publisher import Publisher
from kernelyard.kernel.session import KernelSession
from kernelyard.wire import Channel, ConnectionInfo, Frames, Message, decode

KEY = b"publisher-test"


class RecordingSender:
    """The publisher's side of KernelSockets, with the I/O thread's calls run by hand."""

    def __init__(self) -> None:
        self.sent: list[Frames] = []
        self.soon: list[Callable[[], None]] = []
        self.later: list[tuple[float, Callable[[], None]]] = []

    def send(self, channel: Channel, frames: Frames) -> None:
        assert channel is Channel.IOPUB
        self.sent.append(frames)

    def call_soon(self, func: Callable[[], None]) -> None:
        self.soon.append(func)

    def call_later(self, delay: float, func: Callable[[], None]) -> None:
        self.later.append((delay, func))

    def run_io(self) -> None:
        calls, self.soon = self.soon, []
        timers, self.later = self.later, []
        for func in [*calls, *(f for _, f in timers)]:
            func()

    def messages(self) -> list[Message]:
        return [decode(list(frames), ConnectionInfo(key=KEY).signer())[1] for frames in self.sent]


def make() -> tuple[Publisher, RecordingSender, KernelSession]:
    session = KernelSession(ConnectionInfo(key=KEY))
    sender = RecordingSender()
    return Publisher(session, sender, interval=0.05, max_chunk=100), sender, session


def test_stream_text_waits_for_the_timer_then_goes_as_one_message() -> None:
    publisher, sender, _ = make()
    for word in ("a", "b", "c"):
        publisher.stream("stdout", word, None)
    assert sender.sent == []
    assert [delay for delay, _ in sender.later] == [0.05]  # one timer, not one per write
    sender.run_io()
    [msg] = sender.messages()
    assert (msg.msg_type, msg.content) == ("stream", {"name": "stdout", "text": "abc"})


def test_flush_asks_the_io_thread_once_and_never_blocks() -> None:
    publisher, sender, _ = make()
    publisher.stream("stdout", "x", None)
    publisher.flush()
    publisher.stream("stdout", "y", None)
    publisher.flush()
    assert len(sender.soon) == 1
    sender.run_io()
    assert [m.content["text"] for m in sender.messages()] == ["xy"]


def test_other_messages_keep_their_place_after_pending_text() -> None:
    publisher, sender, session = make()
    parent = session.message("execute_request", {"code": ""}, None)
    publisher.stream("stdout", "before", parent)
    publisher.stream("stderr", "warn", parent)
    publisher.publish("display_data", {"data": {}, "metadata": {}}, parent)
    publisher.stream("stdout", "after", parent)
    publisher.flush_now()
    got = [(m.msg_type, m.content.get("name"), m.content.get("text")) for m in sender.messages()]
    assert got == [
        ("stream", "stdout", "before"),
        ("stream", "stderr", "warn"),
        ("display_data", None, None),
        ("stream", "stdout", "after"),
    ]
    assert all(m.parent_header == parent.header for m in sender.messages())


def test_text_of_different_parents_is_not_merged() -> None:
    publisher, sender, session = make()
    one = session.message("execute_request", {}, None)
    two = session.message("execute_request", {}, None)
    publisher.stream("stdout", "1", one)
    publisher.stream("stdout", "2", two)
    publisher.stream("stdout", "1", one)
    publisher.flush_now()
    assert [(m.parent_msg_id, m.content["text"]) for m in sender.messages()] == [
        (one.msg_id, "1"),
        (two.msg_id, "2"),
        (one.msg_id, "1"),
    ]


def test_a_big_chunk_goes_out_at_once() -> None:
    publisher, sender, _ = make()
    publisher.stream("stdout", "x" * 150, None)
    assert [m.content["text"] for m in sender.messages()] == ["x" * 150]


def test_empty_writes_send_nothing() -> None:
    publisher, sender, _ = make()
    publisher.stream("stdout", "", None)
    publisher.flush()
    publisher.flush_now()
    assert (sender.sent, sender.soon, sender.later) == ([], [], [])


@given(st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.text(max_size=30))))
def test_every_character_arrives_in_order(writes: list[tuple[str, str]]) -> None:
    publisher, sender, _ = make()
    for i, (name, text) in enumerate(writes):
        publisher.stream(name, text, None)
        if i % 7 == 0:
            sender.run_io()
    publisher.flush_now()
    got = [(m.content["name"], m.content["text"]) for m in sender.messages()]
    for name in ("stdout", "stderr"):
        sent = "".join(text for n, text in writes if n == name)
        assert "".join(text for n, text in got if n == name) == sent


def test_writers_on_many_threads_lose_nothing() -> None:
    publisher, sender, _ = make()

    def write(tag: str) -> None:
        for i in range(500):
            publisher.stream("stdout", f"{tag}{i};", None)

    threads = [threading.Thread(target=write, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.flush_now()
    text = "".join(m.content["text"] for m in sender.messages())
    for tag in "abcd":
        mine = [part for part in text.split(";") if part.startswith(tag)]
        assert mine == [f"{tag}{i}" for i in range(500)]  # each thread's order kept
