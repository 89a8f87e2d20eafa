"""ReplayLog: the sequence-numbered, bounded log of what a kernel sent to clients (pure).

Every message the server forwards to WebSocket clients goes through the log
of its kernel: IOPub for everyone, replies and input requests for the one
session they answer. Each connection reads the log from its own cursor, so
the log is also the send queue: fan-out costs one append, a slow client only
lags, and a client that reconnects with its session id resumes at the cursor
it left at and gets everything it missed.

Bounds: at most ``max_messages`` entries and ``max_bytes`` bytes; the oldest
go first, and a reader whose cursor fell behind them learns how many it
lost. Before anything is evicted, output is merged instead: a ``stream``
message that follows another of the same stream and request, while no reader
has taken the first yet, is appended to it. So a flood that outruns every
client shrinks to a few large messages rather than losing lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kernelyard.wire import Channel, Frame

__all__ = ["LogEntry", "ReplayLog", "StreamKey", "merge_streams"]

#: (stream name, parent msg_id): stream messages with equal keys may be joined.
StreamKey = tuple[str, str]


@dataclass(slots=True, eq=False)
class LogEntry:
    """One message as the server forwards it: raw parts plus what routing needs."""

    channel: Channel
    parts: list[Frame]  # header, parent_header, metadata, content, *buffers
    msg_type: str
    session: str | None = None  # the only session it is for; None: every client
    stream: StreamKey | None = None  # set on stream messages (their text may be merged)
    text: list[str] = field(default_factory=list)  # stream text, while it may still grow
    seq: int = 0
    size: int = 0
    #: Encodings already built for a framing ("legacy", "v1"), shared by all readers.
    frames: dict[str, Any] = field(default_factory=dict)
    msg_id: str = ""  # of the message (the first one, when stream text was merged)

    def __post_init__(self) -> None:
        self.size = sum(map(len, self.parts))

    def continued_by(self, other: LogEntry) -> bool:
        """Whether ``other`` may be merged into this entry: the rule both merges follow.

        It may when it is a stream message of the same stream and request
        (the stream key) for the same session.
        """
        return (
            other.stream is not None
            and other.stream == self.stream
            and other.session == self.session
        )

    def absorb(self, other: LogEntry) -> None:
        """Append ``other``'s stream text to this entry (``continued_by(other)`` holds)."""
        self.text.extend(other.text)
        self.size += sum(len(t) for t in other.text)
        self.frames.clear()

    def materialize(self) -> list[Frame]:
        """The parts, with merged stream text written into the content."""
        if len(self.text) > 1:
            assert self.stream is not None
            content = {"name": self.stream[0], "text": "".join(self.text)}
            self.text = [content["text"]]
            self.parts = [*self.parts[:3], orjson.dumps(content), *self.parts[4:]]
        return self.parts


def merge_streams(entries: Iterable[LogEntry]) -> list[LogEntry]:
    """Join runs of stream entries with equal keys (inputs untouched).

    A joined entry is a fresh copy whose ``seq`` is that of the last entry it holds.
    """
    out: list[LogEntry] = []
    copies: set[int] = set()  # ids of the fresh copies in ``out``
    for entry in entries:
        last = out[-1] if out else None
        if last is not None and last.continued_by(entry):
            if id(last) not in copies:
                last = LogEntry(
                    last.channel,
                    last.materialize(),
                    last.msg_type,
                    last.session,
                    last.stream,
                    list(last.text),
                    msg_id=last.msg_id,
                )
                out[-1] = last
                copies.add(id(last))
            last.absorb(entry)
            last.seq = entry.seq
            continue
        out.append(entry)
    return out


class ReplayLog:
    """Entries numbered from 1 in order of arrival; see the module docstring."""

    def __init__(self, *, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max(1, max_messages)
        self.max_bytes = max(1, max_bytes)
        self._entries: list[LogEntry] = []
        self._head = 0  # index of the oldest live entry in _entries
        self._first_seq = 1  # seq of the oldest live entry
        self.last_seq = 0  # seq of the newest entry (0: none yet)
        self.bytes = 0
        self._taken = 0  # highest seq any reader has been given
        #: Entries evicted because of the bounds (each may hold merged messages).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries) - self._head

    @property
    def first_seq(self) -> int:
        return self._first_seq

    def append(self, entry: LogEntry) -> bool:
        """Add ``entry`` (numbering it); returns False when it was merged into the last one."""
        if entry.stream is not None and len(self) and self.last_seq > self._taken:
            last = self._entries[-1]
            if last.continued_by(entry):
                before = last.size
                last.absorb(entry)
                self.bytes += last.size - before
                self._evict()
                return False
        self.last_seq += 1
        entry.seq = self.last_seq
        self._entries.append(entry)
        self.bytes += entry.size
        self._evict()
        return True

    def _evict(self) -> None:
        while len(self) > 1 and (len(self) > self.max_messages or self.bytes > self.max_bytes):
            self.bytes -= self._entries[self._head].size
            self._entries[self._head] = _EVICTED
            self._head += 1
            self._first_seq += 1
            self.evicted += 1
        if self._head > 1024 and self._head * 2 > len(self._entries):
            del self._entries[: self._head]
            self._head = 0

    def read(
        self, after: int, session: str | None, *, limit: int = 512
    ) -> tuple[int, list[LogEntry], int]:
        """Entries after seq ``after`` for ``session`` (and for everyone), up to ``limit``.

        Returns (how many entries the reader missed because they were evicted,
        the entries, the new cursor). ``session`` None reads only broadcast entries.
        """
        after = max(0, min(after, self.last_seq))
        lost = max(0, self._first_seq - 1 - after)
        start = self._head + max(0, after + 1 - self._first_seq)
        out: list[LogEntry] = []
        cursor = max(after, self._first_seq - 1)
        index, end = start, len(self._entries)
        while index < end and len(out) < limit:
            entry = self._entries[index]
            cursor = entry.seq
            if entry.session is None or entry.session == session:
                out.append(entry)
            index += 1
        if cursor > self._taken:
            self._taken = cursor
        return lost, out, cursor


_EVICTED = LogEntry(Channel.IOPUB, [], "evicted")
