"""ManagedChannels: the KernelChannels of a kernel that a KernelManager runs.

One DEALER per request channel (shell, control, stdin, all with one routing
identity, so the kernel sends ``input_request`` to the socket that shares
the execute's identity) and one SUB for IOPub with no high-water mark, so a
flood is read into memory instead of being dropped by ZeroMQ. What arrives
goes through a relay :class:`~kernelyard.wire.ClientProtocol` (verified,
header and parent parsed, replies matched to the origin of their request)
and is handed out with its raw parts.

The manager's lifecycle reaches the reader of :meth:`receive` in order with
the messages: the channels subscribe to it (no polling) and forward RESTART,
DIED, RESTARTED (after reopening the sockets, when the restart moved the
ports, and after IOPub delivers again), GAVE_UP and SHUTDOWN; after
SHUTDOWN, ``receive`` raises ChannelClosed.

Sends are held, in order, from a death or a restart until the kernel answers
and the IOPub socket provably receives from it (its welcome, or the status
of a ``kernel_info_request`` probe): ZeroMQ silently drops what a publisher
sends before the subscriber's reconnect completes, so a request sent earlier
would get its reply but lose its output and idle status. The request
sockets queue only on a live connection (ZMQ_IMMEDIATE): a request sent in
the moment between a kernel's death and our noticing it waits, and if the
restart moved the ports it goes to the new kernel instead of being stranded
on a connection to the old port.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from kernelyard._clock import utcnow
from kernelyard._inbox import Inbox
from kernelyard.backend import ChannelEvent, Origin
from kernelyard.errors import ChannelClosed, InvalidState
from kernelyard.lifecycle import Change, KernelEvent, KernelState
from kernelyard.manager.kernel import KernelManager
from kernelyard.transport import ChannelStream, open_channel
from kernelyard.wire import (
    Channel,
    ClientProtocol,
    ConnectionInfo,
    Dropped,
    Frame,
    Frames,
    IOPubReady,
    Unmatched,
)

__all__ = ["ManagedChannels"]

log = logging.getLogger(__name__)

_CHANNELS = (Channel.SHELL, Channel.CONTROL, Channel.STDIN, Channel.IOPUB)
#: Messages held while the kernel is down before sends fail with ChannelClosed.
MAX_HELD = 1000
#: Seconds to wait for IOPub to connect to a (re)started kernel before sending anyway.
IOPUB_WAIT = 10.0
#: Seconds between kernel_info probes while waiting for IOPub.
PROBE_INTERVAL = 0.25
#: Changes that close the gate: sends are held until the kernel answers again.
_HOLDING = frozenset({Change.RESTART, Change.DIED})


class ManagedChannels:
    """KernelChannels over ZeroMQ for ``manager``'s kernel. Use as ``async with``."""

    def __init__(self, manager: KernelManager) -> None:
        self._manager = manager
        self._identity = uuid.uuid4().hex.encode()
        self._streams: dict[Channel, ChannelStream] = {}
        self._info: ConnectionInfo | None = None
        self._protocol: ClientProtocol[Origin] | None = None
        self._inbox = Inbox[ChannelEvent](f"kernel {manager.kernel_id}")
        self._changes_send, self._changes = anyio.create_memory_object_stream[KernelEvent](math.inf)
        self._tasks: TaskGroup | None = None
        self._readers: list[anyio.CancelScope] = []
        self._held: list[tuple[Channel, list[Frame]]] = []  # signed, sent while it was down
        self._flushing = anyio.Lock()
        self._open_gate = False  # sends go out now (else they are held)
        self._iopub_ready = anyio.Event()
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def encrypted(self) -> bool:
        """True when the kernel's connection info has Curve keys (kept across restarts)."""
        info = self._manager.connection_info
        return info is not None and info.encrypted

    # -- lifetime -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        manager = self._manager
        if manager.connection_info is None:
            raise InvalidState(f"kernel {manager.kernel_id} was never started")
        self._protocol = ClientProtocol(
            manager.connection_info.signer(),
            session=self._identity.decode(),
            clock=utcnow,
            parse_all=False,
        )
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        try:
            self._unsubscribe.append(manager.subscribe(self._changes_send.send_nowait))
            self._open(manager.connection_info)
            self._tasks.start_soon(self._watch, name=f"watch {manager.kernel_id}")
        except BaseException:
            # No socket left open, and the task group left in this task: a socket that
            # cannot be made (too many open files) must not corrupt the caller's scopes.
            # (Not under a shield: the task group must be exited from its own scope.)
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        tasks, self._tasks = self._tasks, None
        self._inbox.end()
        self._changes_send.close()
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(exc_type, exc, tb)
        self._close_streams()
        self._inbox.close()
        self._changes.close()

    def _open(self, info: ConnectionInfo) -> None:
        """Connect fresh sockets to ``info`` and start one reader per socket."""
        assert self._tasks is not None
        assert self._protocol is not None
        self._close_streams()
        self._info = info
        self._protocol.reconnected()
        for channel in _CHANNELS:
            self._streams[channel] = open_channel(
                info, channel, identity=self._identity, unbounded=True, immediate=True
            )
        for channel, stream in self._streams.items():
            scope = anyio.CancelScope()
            self._readers.append(scope)
            self._tasks.start_soon(self._read, scope, channel, stream, name=f"read {channel.value}")

    def _close_streams(self) -> None:
        for scope in self._readers:
            scope.cancel()
        self._readers = []
        for stream in self._streams.values():
            stream.close()
        self._streams = {}

    # -- KernelChannels ------------------------------------------------------------

    async def send(
        self, channel: Channel, parts: Frames, *, msg_id: str, msg_type: str, origin: Origin
    ) -> None:
        """Send now, or, while the kernel is dead or restarting or IOPub is not yet
        connected to it, once it is (on whatever ports it then has): a message
        sent meanwhile is never lost, and its output is never missed.
        """
        if self._protocol is None or self._tasks is None:
            raise ChannelClosed(f"kernel {self._manager.kernel_id} channels are closed")
        frames = self._protocol.send_parts(
            channel, parts, msg_id=msg_id, msg_type=msg_type, origin=origin
        )
        if not self._open_gate or self._held:
            self._hold(channel, frames)
            return
        stream = self._streams.get(channel)
        try:
            await self._send_now(channel, frames)
        except ChannelClosed:
            # It waited for a connection (the kernel died, unnoticed yet) and the
            # watcher replaced the socket meanwhile: send it to the new kernel.
            if self._tasks is None or self._streams.get(channel) is stream:
                raise
            self._hold(channel, frames)
            if self._open_gate:
                await self._flush_held()  # live again already: nobody else will send it

    def _hold(self, channel: Channel, frames: list[Frame]) -> None:
        if self._manager.lifecycle.gone:
            raise ChannelClosed(f"kernel {self._manager.kernel_id} is dead")
        if len(self._held) >= MAX_HELD:
            raise ChannelClosed(
                f"kernel {self._manager.kernel_id} is not running and {MAX_HELD} messages wait"
            )
        self._held.append((channel, [bytes(f) for f in frames]))

    async def _send_now(self, channel: Channel, frames: Frames) -> None:
        stream = self._streams.get(channel)
        if stream is None:
            raise ChannelClosed(f"{channel.value} channel is not open")
        await stream.send(frames)

    async def receive(self) -> list[ChannelEvent]:
        return await self._inbox.get()

    # -- inside ------------------------------------------------------------------------

    async def _read(
        self, scope: anyio.CancelScope, channel: Channel, stream: ChannelStream
    ) -> None:
        protocol, put = self._protocol, self._inbox.put
        assert protocol is not None
        with scope:
            while True:
                try:
                    batch = await stream.receive_batch()
                except ChannelClosed:
                    return
                out: list[ChannelEvent] = []
                for event in protocol.receive_batch(channel, batch):
                    if isinstance(event, Dropped):
                        log.warning("dropping an invalid message on %s: %s", channel, event.error)
                    elif isinstance(event, IOPubReady):
                        self._iopub_ready.set()
                    elif isinstance(event, Unmatched):
                        log.debug("%s for no known request", event.received.msg_type)
                    else:
                        out.append(event)
                if out and not put(out):
                    return

    def _forward(self, event: KernelEvent) -> None:
        self._inbox.put([event])

    async def _watch(self) -> None:
        """Follow the kernel's lifecycle: hold sends while it is down, reconnect and
        flush when it is back, forward each change; end the inbox when it stops.
        """
        if self._manager.state is KernelState.RUNNING:
            await self._become_live()
        async for event in self._changes:
            if event.change in _HOLDING:
                self._open_gate = False
            elif event.change is Change.RESTARTED:
                info = self._manager.connection_info
                if info is not None and info != self._info:
                    log.info("kernel %s has new ports: reconnecting", event.kernel_id)
                    self._open(info)
                else:
                    assert self._protocol is not None
                    self._protocol.reconnected()  # the same sockets, a new publisher
                self._iopub_ready = anyio.Event()
                await self._become_live()
            elif event.change is Change.GAVE_UP and self._held:
                log.warning(
                    "kernel %s is dead: %d held messages dropped", event.kernel_id, len(self._held)
                )
                self._held = []
            if event.change in (Change.START, Change.READY, Change.STOPPED):
                continue
            self._forward(event)
            if event.change is Change.SHUTDOWN:
                self._inbox.end()
                return

    async def _become_live(self) -> None:
        """Wait until IOPub delivers from the current kernel (a welcome, or the status of
        a ``kernel_info_request`` probe; bounded by IOPUB_WAIT), then send what was held.
        """
        protocol = self._protocol
        assert protocol is not None
        with anyio.move_on_after(IOPUB_WAIT):
            while not protocol.iopub_ready:
                with contextlib.suppress(ChannelClosed):
                    await self._send_now(Channel.SHELL, protocol.probe())
                with anyio.move_on_after(PROBE_INTERVAL):
                    await self._iopub_ready.wait()
        if not protocol.iopub_ready:
            log.warning("kernel %s: IOPub silent for %s s", self._manager.kernel_id, IOPUB_WAIT)
        self._open_gate = True
        await self._flush_held()

    async def _flush_held(self) -> None:
        """Send what was held, in order (one flusher at a time keeps the order)."""
        async with self._flushing:
            while self._held and self._open_gate:
                channel, frames = self._held.pop(0)
                await self._send_now(channel, frames)
