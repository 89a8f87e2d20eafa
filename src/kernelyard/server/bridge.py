"""KernelBridge: one kernel's channels, shared by every WebSocket connected to it.

The server opens one set of ZeroMQ sockets per kernel (through the backend's
``open_channels``) for the kernel's whole life, not one per connection. The
bridge reads them and files every message in the kernel's
:class:`~kernelyard.server.replay.ReplayLog`:

* IOPub for every connection; it also drives the kernel's activity
  (:mod:`kernelyard.server.activity`);
* replies and input requests for the session whose request they answer
  (the channels match them: the session is the request's origin).

Lifecycle events from the channels keep the bridge's mirror of the kernel's
lifecycle (the REST model's ``execution_state`` and ``reason`` come from it)
and become the ``status`` messages the server injects, with complete
headers (:func:`~kernelyard.server.policy.injected_status`).

The bridge owns the connections' endings: each connection reads the log
through a :class:`Reader` the bridge hands out, and the bridge decides when a
reader must close and with which code (:class:`~kernelyard.server.policy.CloseCode`):
when the kernel is gone for good, when the server stops, or when a newer
connection of the same session replaced it. Nothing calls back into the
connection.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import datetime

import anyio

from kernelyard._clock import utcnow
from kernelyard.backend import ChannelEvent, KernelChannels
from kernelyard.errors import ChannelClosed, KernelyardError
from kernelyard.lifecycle import Change, KernelEvent, KernelState, Lifecycle
from kernelyard.server.activity import Activity
from kernelyard.server.policy import (
    CloseCode,
    closing_for,
    execution_state,
    injected_status,
    scrub_traceback,
)
from kernelyard.server.replay import LogEntry, ReplayLog
from kernelyard.server.settings import ServerSettings
from kernelyard.wire import (
    Channel,
    Frame,
    InputRequested,
    MessageFactory,
    Output,
    Reply,
    message_parts,
)

__all__ = ["KernelBridge", "Reader"]

log = logging.getLogger(__name__)

#: How many disconnected sessions keep their cursor for a reconnect.
MAX_SESSIONS = 1_000
#: How many written messages a connection remembers for a resume (``resume_after``).
RESUME_WINDOW = 4_096
#: ... and how many once it is closed (only what was in flight at the cut matters; a
#: thousand offline sessions must not keep RESUME_WINDOW msg_ids each).
OFFLINE_RESUME_WINDOW = 64


class Reader:
    """One connection's place in the kernel's log, owned by the bridge.

    ``cursor`` is the last sequence number the connection was given;
    ``closing`` is set (code, reason) when the bridge wants it to close.
    ``written`` remembers, for the last RESUME_WINDOW messages written to
    the connection, the cursor after each (by msg_id): a client that
    reconnects saying which message it got last resumes right after it,
    so what was written but lost with the old connection is sent again.
    """

    __slots__ = ("closing", "cursor", "session", "written")

    def __init__(
        self, session: str, cursor: int, written: deque[tuple[str, int]] | None = None
    ) -> None:
        self.session = session
        self.cursor = cursor
        self.closing: tuple[int, str] | None = None
        self.written: deque[tuple[str, int]] = (
            written if written is not None else deque(maxlen=RESUME_WINDOW)
        )

    def wrote(self, msg_id: str, cursor: int) -> None:
        """``msg_id`` was written to the connection; the cursor after it is ``cursor``."""
        self.written.append((msg_id, cursor))

    def cursor_after(self, msg_id: str) -> int | None:
        """The cursor right after ``msg_id`` was written (None: not among the last written)."""
        for written, cursor in reversed(self.written):
            if written == msg_id:
                return cursor
        return None


class KernelBridge:
    """The server's side of one kernel; see the module docstring."""

    def __init__(
        self,
        kernel_id: str,
        channels: KernelChannels,
        settings: ServerSettings,
        *,
        factory: MessageFactory,
    ) -> None:
        self.kernel_id = kernel_id
        self.channels = channels
        self.settings = settings
        self.log = ReplayLog(
            max_messages=settings.replay_max_messages, max_bytes=settings.replay_max_bytes
        )
        self.activity = Activity(last_activity=utcnow())
        #: A mirror of the kernel's lifecycle (it answered kernel_info: it runs).
        self.lifecycle = Lifecycle(kernel_id, KernelState.RUNNING)
        self._factory = factory
        self._offline: OrderedDict[str, Reader] = OrderedDict()  # session -> its last reader
        self._live: dict[str, Reader] = {}  # session -> its open connection's reader
        self._appended = anyio.Event()
        #: (close code, reason) once every connection is to close.
        self.closing: tuple[int, str] | None = None

    # -- connections ---------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._live)

    @property
    def execution_state(self) -> str:
        """What the REST model shows (see :func:`~kernelyard.server.policy.execution_state`)."""
        return execution_state(self.lifecycle, self.activity.execution_state)

    @property
    def reason(self) -> str:
        """Why the kernel is not running, if it is not (else "")."""
        return "" if self.lifecycle.state is KernelState.RUNNING else self.lifecycle.reason

    def attach(
        self, session: str, *, replay_all: bool = False, resume_after: str | None = None
    ) -> Reader:
        """A reader for a new connection of ``session``.

        A session seen before resumes where it left off (everything it missed
        that the log still holds), or right after ``resume_after`` when that is
        the msg_id of a message it was written lately (the client got that one
        last: what followed may have been lost in flight). A new session starts
        at the end of the log, or at its beginning with ``replay_all``
        (broadcast messages only). A session has one connection: an open one
        is stale (its client came back before the server saw it go), so it is
        told to close with REPLACED, as jupyter_server does, and the new
        connection goes on from the stale one's cursor.
        """
        previous = self._live.get(session)
        if previous is not None:
            log.info("kernel %s: replacing a stale connection of %s", self.kernel_id, session)
            previous.closing = (
                CloseCode.REPLACED,
                "replaced by a newer connection of this session",
            )
            self._wake()
        else:
            previous = self._offline.pop(session, None)
        if previous is None:
            cursor = self.log.first_seq - 1 if replay_all else self.log.last_seq
            reader = Reader(session, cursor)
        else:
            cursor = previous.cursor
            if resume_after is not None:
                after = previous.cursor_after(resume_after)
                if after is not None:
                    cursor = min(cursor, after)
            reader = Reader(session, cursor, previous.written)
        self._live[session] = reader
        return reader

    def detach(self, reader: Reader) -> None:
        """``reader``'s connection closed; its place is kept for a reconnect."""
        session = reader.session
        if self._live.get(session) is not reader:
            return  # replaced: the newer connection holds the session now
        del self._live[session]
        written = reader.written
        while len(written) > OFFLINE_RESUME_WINDOW:
            written.popleft()
        self._offline[session] = reader
        self._offline.move_to_end(session)
        while len(self._offline) > MAX_SESSIONS:
            self._offline.popitem(last=False)

    async def wait(self, reader: Reader) -> None:
        """Return once the log has entries after ``reader``'s cursor or it is to close."""
        while self.log.last_seq <= reader.cursor and self.closing_of(reader) is None:
            await self._appended.wait()

    def closing_of(self, reader: Reader) -> tuple[int, str] | None:
        """How ``reader`` is to close now, if it is: replaced at once, or, when the
        kernel is gone or the server stops, once it has read everything.
        """
        if reader.closing is not None:
            return reader.closing
        if self.closing is not None and self.log.last_seq <= reader.cursor:
            return self.closing
        return None

    def _wake(self) -> None:
        appended, self._appended = self._appended, anyio.Event()
        appended.set()

    # -- client -> kernel ------------------------------------------------------------

    async def send(
        self, reader: Reader, channel: Channel, parts: Sequence[Frame], msg_id: str, msg_type: str
    ) -> None:
        """Forward a client's message; its reply will be filed for the reader's session."""
        await self.channels.send(
            channel, parts, msg_id=msg_id, msg_type=msg_type, origin=reader.session
        )

    def publish(self, entry: LogEntry) -> None:
        """File a message the server made (a reply to a refused request, a status)."""
        self.log.append(entry)
        self._wake()

    def inject_status(self, state: str) -> None:
        """Tell every connection the kernel is ``state`` (restarting, dead) on IOPub."""
        msg = self._factory.message("status", {"execution_state": state}, channel=Channel.IOPUB)
        self.publish(LogEntry(Channel.IOPUB, message_parts(msg), "status", msg_id=msg.msg_id))

    def close(self, code: int, reason: str) -> None:
        """Every connection sends what is left, then closes with ``code`` (first call wins)."""
        if self.closing is None:
            self.closing = (code, reason)
            self._wake()

    # -- kernel -> clients ---------------------------------------------------------------

    async def run(self) -> None:
        """Read the kernel's channels into the log until they close; then every
        connection is told to close (if nothing closed them yet).
        """
        try:
            while True:
                try:
                    batch = await self.channels.receive()
                except ChannelClosed:
                    return
                except KernelyardError as exc:
                    log.warning("kernel %s: channels failed: %s", self.kernel_id, exc)
                    return
                self._take(batch)
        finally:
            if self.closing is None:
                self.inject_status("dead")
                self.close(CloseCode.FINAL, "the server lost the kernel's channels")

    def _take(self, batch: list[ChannelEvent]) -> None:
        now = utcnow()
        for event in batch:
            if isinstance(event, Output):
                self.log.append(self._file_iopub(event, now))
            elif isinstance(event, Reply | InputRequested):
                entry = self._file_answer(event)
                if entry is not None:
                    self.log.append(entry)
            else:
                self._on_lifecycle(event)
        self._wake()

    def _on_lifecycle(self, event: KernelEvent) -> None:
        log.info("kernel %s: %s (%s)", self.kernel_id, event.change.value, event.reason)
        self.lifecycle.follow(event)
        status = injected_status(event)
        if status is not None:
            self.inject_status(status)
        if event.change is Change.RESTARTED:
            self.activity.execution_state = "idle"
            self.closing = None  # restarted by hand after it was gone: accept connections
        closing = closing_for(event)
        if closing is not None:
            self.close(*closing)

    def _file_answer(
        self, event: Reply[str | None] | InputRequested[str | None]
    ) -> LogEntry | None:
        """The log entry of a reply or input request, for the session that asked."""
        received, session = event.received, event.origin
        if session is None:
            return None
        parts = received.parts
        if received.msg_type == "execute_reply" and not self.settings.allow_tracebacks:
            parts = scrub_traceback(parts, self.settings.traceback_replacement, only_errors=True)
        return LogEntry(received.channel, parts, received.msg_type, session, msg_id=received.msg_id)

    def _file_iopub(self, event: Output, now: datetime) -> LogEntry:
        received = event.received
        msg_type = received.msg_type
        self.activity.on_iopub(msg_type, received.parent_type, event.execution_state, now)
        parts = received.parts
        if msg_type == "stream" and len(parts) == 4:
            content = received.content
            name, text = content.get("name"), content.get("text")
            if isinstance(name, str) and isinstance(text, str):
                key = (name, received.parent_id or "")
                return LogEntry(
                    Channel.IOPUB, parts, msg_type, stream=key, text=[text], msg_id=received.msg_id
                )
        elif msg_type == "error" and not self.settings.allow_tracebacks:
            parts = scrub_traceback(parts, self.settings.traceback_replacement, only_errors=False)
        return LogEntry(Channel.IOPUB, parts, msg_type, msg_id=received.msg_id)
