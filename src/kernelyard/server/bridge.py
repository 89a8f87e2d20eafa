"""KernelBridge: one kernel's channels, shared by every WebSocket connected to it.

The server opens one set of ZeroMQ sockets per kernel (through the backend's
``open_channels``) for the kernel's whole life, not one per connection. The
bridge reads them and files every message in the kernel's
:class:`~kernelyard.server.replay.ReplayLog`:

* IOPub for every connection; it also drives the kernel's activity and
  execution state (:mod:`kernelyard.server.activity`);
* shell and control replies for the session that sent the request (the
  bridge remembers which session sent each ``*_request``);
* stdin ``input_request`` for the session whose execute asks for input.

Connections read the log from their cursors (:mod:`kernelyard.server.websocket`);
a session has one connection at a time (a newer one replaces a stale one).
Kernel notices from the backend become ``status`` messages the server
injects (``restarting``, ``dead``) with complete headers. When the kernel is
shut down, culled or dies for good, :meth:`close` tells every connection to
finish what it has and close with a final code.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import orjson

from kernelyard.backend import KernelChannels, KernelNotice
from kernelyard.errors import ChannelClosed, KernelyardError
from kernelyard.server.activity import Activity
from kernelyard.server.replay import LogEntry, ReplayLog
from kernelyard.server.settings import ServerSettings
from kernelyard.wire import Channel, MessageFactory, message_parts

__all__ = ["KernelBridge"]

log = logging.getLogger(__name__)

Frame = bytes | memoryview

#: How many requests awaiting replies the bridge remembers (oldest forgotten first).
MAX_PENDING_REQUESTS = 10_000
#: How many disconnected sessions keep their cursor for a reconnect.
MAX_SESSIONS = 1_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _loads(part: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(part)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class Connection(Protocol):
    """A client connection as the bridge sees it."""

    #: The last log sequence number sent to it.
    cursor: int

    def replace(self) -> None:
        """A newer connection of the same session takes over: close this one."""


class KernelBridge:
    """The server's side of one kernel; see the module docstring."""

    def __init__(
        self,
        kernel_id: str,
        channels: KernelChannels,
        settings: ServerSettings,
        *,
        factory: MessageFactory,
        on_dead: Callable[[str], object] | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.channels = channels
        self.settings = settings
        self.log = ReplayLog(
            max_messages=settings.replay_max_messages, max_bytes=settings.replay_max_bytes
        )
        self.activity = Activity(last_activity=_utcnow())
        self._factory = factory
        self._on_dead = on_dead
        self._pending: OrderedDict[str, str] = OrderedDict()  # request msg_id -> session
        self._cursors: OrderedDict[str, int] = OrderedDict()  # session -> cursor, offline
        self._live: dict[str, Connection] = {}  # session -> its open connection
        self._appended = anyio.Event()
        #: (close code, reason) once the kernel is gone for good.
        self.closing: tuple[int, str] | None = None

    # -- connections ---------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._live)

    def attach(self, session: str, connection: Connection, *, replay_all: bool = False) -> int:
        """Register ``connection`` of ``session``; returns the cursor it reads from.

        A session seen before resumes where it left off (everything it missed
        that the log still holds); a new one starts at the end of the log, or
        at its beginning with ``replay_all`` (broadcast messages only). A
        session has one connection: an open one is stale (its client came
        back before the server saw it go), so it is replaced, as jupyter_server
        does, and the new connection goes on from the stale one's cursor.
        """
        stale = self._live.get(session)
        self._live[session] = connection
        if stale is not None:
            stale.replace()
            return stale.cursor
        cursor = self._cursors.pop(session, None)
        if cursor is not None:
            return cursor
        return self.log.first_seq - 1 if replay_all else self.log.last_seq

    def detach(self, session: str, connection: Connection) -> None:
        """``connection`` of ``session`` closed; its cursor is kept for a reconnect."""
        if self._live.get(session) is not connection:
            return  # replaced: the newer connection holds the session now
        del self._live[session]
        self._cursors[session] = max(connection.cursor, self._cursors.get(session, 0))
        self._cursors.move_to_end(session)
        while len(self._cursors) > MAX_SESSIONS:
            self._cursors.popitem(last=False)

    async def wait_beyond(self, cursor: int) -> None:
        """Return once the log has entries after ``cursor`` or the bridge is closing."""
        while self.log.last_seq <= cursor and self.closing is None:
            await self._appended.wait()

    def _wake(self) -> None:
        appended, self._appended = self._appended, anyio.Event()
        appended.set()

    # -- client -> kernel ------------------------------------------------------------

    async def send(
        self, session: str, channel: Channel, parts: Sequence[Frame], msg_id: str, msg_type: str
    ) -> None:
        """Forward a client's message; its reply will be filed for ``session``."""
        if channel in (Channel.SHELL, Channel.CONTROL) and msg_type.endswith("_request"):
            self._pending[msg_id] = session
            while len(self._pending) > MAX_PENDING_REQUESTS:
                self._pending.popitem(last=False)
        await self.channels.send(channel, parts)

    def publish(self, entry: LogEntry) -> None:
        """File a message the server made (a reply to a refused request, a status)."""
        self.log.append(entry)
        self._wake()

    def inject_status(self, state: str) -> None:
        """Tell every connection the kernel is ``state`` (restarting, dead) on IOPub."""
        msg = self._factory.message("status", {"execution_state": state}, channel=Channel.IOPUB)
        self.activity.execution_state = state
        self.publish(LogEntry(Channel.IOPUB, message_parts(msg), "status"))  # type: ignore[arg-type]

    def close(self, code: int, reason: str) -> None:
        """The kernel is gone: connections send what is left, then close with ``code``."""
        if self.closing is None:
            self.closing = (code, reason)
            self._wake()

    def reopen(self) -> None:
        """The kernel was restarted by hand after it was gone: accept connections again."""
        self.closing = None

    # -- kernel -> clients ---------------------------------------------------------------

    async def run(self) -> None:
        """Read the kernel's channels into the log until they close."""
        while True:
            try:
                batch = await self.channels.receive()
            except ChannelClosed:
                return
            except KernelyardError as exc:
                log.warning("kernel %s: channels failed: %s", self.kernel_id, exc)
                return
            now = _utcnow()
            for item in batch:
                if isinstance(item, KernelNotice):
                    self._on_notice(item)
                    continue
                channel, parts = item
                entry = self._file(channel, parts, now)
                if entry is not None:
                    self.log.append(entry)
            self._wake()

    def _on_notice(self, notice: KernelNotice) -> None:
        log.info("kernel %s: %s (%s)", self.kernel_id, notice.event, notice.reason)
        if notice.event == "restarting":
            self.inject_status("restarting")
        elif notice.event == "restarted":
            self.activity.execution_state = "idle"
        else:
            self.inject_status("dead")
            if self._on_dead is not None:
                self._on_dead(notice.reason)

    def _file(self, channel: Channel, parts: list[bytes], now: datetime) -> LogEntry | None:
        """The log entry for one kernel message (None: nobody to give it to)."""
        header = _loads(parts[0])
        msg_type = header.get("msg_type")
        if not isinstance(msg_type, str):
            return None
        parent = _loads(parts[1])
        parent_id = parent.get("msg_id")
        if channel is Channel.IOPUB:
            return self._file_iopub(parts, msg_type, parent, now)
        if not isinstance(parent_id, str):
            return None
        if channel is Channel.STDIN:
            session = self._pending.get(parent_id)
        else:
            session = self._pending.pop(parent_id, None)
        if session is None:
            log.debug("kernel %s: %s for no known request", self.kernel_id, msg_type)
            return None
        if msg_type == "execute_reply" and not self.settings.allow_tracebacks:
            parts = self._scrubbed(parts, only_errors=True)
        return LogEntry(channel, parts, msg_type, session)

    def _file_iopub(
        self, parts: list[bytes], msg_type: str, parent: dict[str, Any], now: datetime
    ) -> LogEntry:
        parent_type = parent.get("msg_type")
        if msg_type == "status":
            state = _loads(parts[3]).get("execution_state")
            self.activity.on_iopub(
                msg_type,
                parent_type if isinstance(parent_type, str) else None,
                state if isinstance(state, str) else None,
                now,
            )
            return LogEntry(Channel.IOPUB, parts, msg_type)
        self.activity.on_iopub(
            msg_type, parent_type if isinstance(parent_type, str) else None, None, now
        )
        if msg_type == "stream":
            content = _loads(parts[3])
            name, text, parent_id = content.get("name"), content.get("text"), parent.get("msg_id")
            if isinstance(name, str) and isinstance(text, str) and len(parts) == 4:
                key = (name, parent_id if isinstance(parent_id, str) else "")
                return LogEntry(Channel.IOPUB, parts, msg_type, stream=key, text=[text])
        elif msg_type == "error" and not self.settings.allow_tracebacks:
            parts = self._scrubbed(parts, only_errors=False)
        return LogEntry(Channel.IOPUB, parts, msg_type)

    def _scrubbed(self, parts: list[bytes], *, only_errors: bool) -> list[bytes]:
        """``parts`` with the error's name, value and traceback replaced."""
        content = _loads(parts[3])
        if only_errors and content.get("status") != "error":
            return parts
        content.update(
            ename="ExecutionError",
            evalue="Execution error",
            traceback=[self.settings.traceback_replacement],
        )
        return [*parts[:3], orjson.dumps(content), *parts[4:]]
