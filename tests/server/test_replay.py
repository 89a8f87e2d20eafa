from __future__ import annotations

import itertools

import orjson
from hypothesis import given
from hypothesis import strategies as st

from kernelyard.server.replay import LogEntry, ReplayLog, merge_streams
from kernelyard.wire import Channel


def stream(text: str, parent: str = "p", name: str = "stdout") -> LogEntry:
    parts = [
        orjson.dumps({"msg_type": "stream", "msg_id": text}),
        orjson.dumps({"msg_id": parent}),
        b"{}",
        orjson.dumps({"name": name, "text": text}),
    ]
    return LogEntry(Channel.IOPUB, parts, "stream", stream=(name, parent), text=[text])


def reply(session: str) -> LogEntry:
    return LogEntry(Channel.SHELL, [b"{}", b"{}", b"{}", b"{}"], "execute_reply", session)


def texts(entries: list[LogEntry]) -> str:
    return "".join(orjson.loads(e.materialize()[3])["text"] for e in entries)


def test_readers_get_broadcasts_and_their_own_replies_in_order() -> None:
    log = ReplayLog(max_messages=100, max_bytes=1 << 20)
    log.append(stream("a"))
    log.append(reply("s1"))
    log.append(reply("s2"))
    lost, entries, cursor = log.read(0, "s1")
    assert (lost, cursor) == (0, 3)
    assert [e.msg_type for e in entries] == ["stream", "execute_reply"]
    assert entries[1].session == "s1"
    assert log.read(cursor, "s1")[1] == []


def test_unread_stream_chunks_merge_instead_of_piling_up() -> None:
    log = ReplayLog(max_messages=100, max_bytes=1 << 20)
    for i in range(1000):
        log.append(stream(f"{i}\n"))
    assert len(log) == 1
    _, entries, _ = log.read(0, None)
    assert texts(entries) == "".join(f"{i}\n" for i in range(1000))
    log.append(stream("after\n"))  # the first entry was read: no merging into it
    assert len(log) == 2


def test_different_streams_or_parents_do_not_merge() -> None:
    log = ReplayLog(max_messages=100, max_bytes=1 << 20)
    for entry in (stream("a"), stream("b", name="stderr"), stream("c", parent="q")):
        log.append(entry)
    assert len(log) == 3


def test_bounds_evict_the_oldest_and_readers_learn_what_they_lost() -> None:
    log = ReplayLog(max_messages=3, max_bytes=1 << 20)
    for session in "abcde":
        log.append(reply(session))
    assert (log.first_seq, log.last_seq, len(log)) == (3, 5, 3)
    lost, entries, cursor = log.read(0, "d")
    assert lost == 2
    assert [e.session for e in entries] == ["d"]
    assert cursor == 5
    small = ReplayLog(max_messages=100, max_bytes=10)
    small.append(reply("x"))
    small.append(reply("y"))
    assert small.bytes <= 10 or len(small) == 1


@given(st.lists(st.tuples(st.sampled_from(["out", "err"]), st.text(max_size=5)), max_size=40))
def test_merging_keeps_every_character_of_each_stream(chunks: list[tuple[str, str]]) -> None:
    entries = [stream(text, name=name) for name, text in chunks]
    for i, entry in enumerate(entries, 1):
        entry.seq = i
    merged = merge_streams(entries)
    for name in ("out", "err"):
        assert "".join(
            orjson.loads(e.materialize()[3])["text"]
            for e in merged
            if e.stream and e.stream[0] == name
        ) == "".join(t for n, t in chunks if n == name)
    assert all(a.stream != b.stream for a, b in itertools.pairwise(merged))
    if merged:
        assert merged[-1].seq == len(entries)


def test_stream_chunks_for_different_sessions_do_not_merge() -> None:
    first, second = stream("a"), stream("b")
    second.session = "s1"
    log = ReplayLog(max_messages=100, max_bytes=1 << 20)
    log.append(first)
    log.append(second)
    assert len(log) == 2
    assert [e.session for e in merge_streams([first, second])] == [None, "s1"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["out", "err"]), st.sampled_from(["p", "q"]), st.text(max_size=3)
        ),
        max_size=30,
    )
)
def test_merge_streams_joins_what_an_unread_log_joins(chunks: list[tuple[str, str, str]]) -> None:
    def entries() -> list[LogEntry]:
        made = [stream(text, parent=parent, name=name) for name, parent, text in chunks]
        for i, entry in enumerate(made, 1):
            entry.seq = i
        return made

    inputs = entries()
    merged = merge_streams(inputs)
    assert [e.text for e in inputs] == [[t] for _, _, t in chunks]  # inputs untouched
    log = ReplayLog(max_messages=1000, max_bytes=1 << 20)
    for entry in entries():
        log.append(entry)
    _, logged, _ = log.read(0, None, limit=1000)
    assert [(e.stream, "".join(e.text)) for e in merged] == [
        (e.stream, "".join(e.text)) for e in logged
    ]
