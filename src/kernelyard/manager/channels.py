"""ManagedChannels: the KernelChannels of a kernel that a KernelManager runs.

One DEALER per request channel (shell, control, stdin, all with one routing
identity, so the kernel sends ``input_request`` to the socket that shares
the execute's identity) and one SUB for IOPub with no high-water mark, so a
flood is read into memory instead of being dropped by ZeroMQ. Incoming
messages are verified with the kernel's key and handed out as raw parts.

A watcher follows the manager's lifecycle (by its death and restart counts,
so nothing is missed when several changes happen between two wakeups) and
reports it as notices: a death the restarter will try to undo
(``restarting``), the kernel answering again (``restarted``; the sockets are
reopened first when the restart changed the ports), a death nobody will undo
(``dead``). Once the kernel is stopped, ``receive`` raises ChannelClosed.

Sends are held, in order, while the kernel is dead or restarting and until
the IOPub socket provably receives from the current kernel (its welcome, or
the status of a ``kernel_info_request`` probe): ZeroMQ silently drops what a
publisher sends before the subscriber's reconnect completes, so a request
sent earlier would get its reply but lose its output and idle status. The
request sockets queue only on a live connection (ZMQ_IMMEDIATE): a request
sent in the moment between a kernel's death and our noticing it waits, and
if the restart moved the ports it goes to the new kernel instead of being
stranded on a connection to the old port.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from kernelyard.backend import KernelNotice, Received
from kernelyard.errors import ChannelClosed, InvalidState, RemoteProtocolError
from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.state import KernelState
from kernelyard.transport import ChannelStream, open_channel
from kernelyard.wire import (
    Channel,
    ConnectionInfo,
    MessageFactory,
    ReplayGuard,
    Signer,
    encode_parts,
    message_parts,
    split,
)

__all__ = ["ManagedChannels"]

log = logging.getLogger(__name__)

Frame = bytes | memoryview

_CHANNELS = (Channel.SHELL, Channel.CONTROL, Channel.STDIN, Channel.IOPUB)
#: Messages held while the kernel is down before sends fail with ChannelClosed.
MAX_HELD = 1000
#: Seconds to wait for IOPub to connect to a (re)started kernel before sending anyway.
IOPUB_WAIT = 10.0
#: Seconds between kernel_info probes while waiting for IOPub.
PROBE_INTERVAL = 0.25


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ManagedChannels:
    """KernelChannels over ZeroMQ for ``manager``'s kernel. Use as ``async with``.

    ``will_restart()`` says whether a dead kernel is going to be restarted
    automatically (a restarter is still supervising it).
    """

    def __init__(self, manager: KernelManager, *, will_restart: Callable[[], bool]) -> None:
        self._manager = manager
        self._will_restart = will_restart
        self._identity = uuid.uuid4().hex.encode()
        self._streams: dict[Channel, ChannelStream] = {}
        self._info: ConnectionInfo | None = None
        self._signer: Signer | None = None
        self._guard = ReplayGuard()
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[list[Received]](math.inf)
        self._tasks: TaskGroup | None = None
        self._readers: list[anyio.CancelScope] = []
        self._held: list[tuple[Channel, list[bytes]]] = []  # sent while the kernel was down
        self._flushing = anyio.Lock()
        # IOPub gate: sends wait until this socket provably receives the current
        # kernel's IOPub, so no reply comes without its output and idle status.
        self._live_generation = -1  # manager.restarts when IOPub was last confirmed live
        self._iopub_generation = -1  # manager.restarts when IOPub last delivered a message
        self._iopub_arrived = anyio.Event()
        self._factory = MessageFactory(
            session=self._identity.decode(), username="kernelyard", clock=_utcnow
        )

    # -- lifetime -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._manager.connection_info is None:
            raise InvalidState(f"kernel {self._manager.kernel_id} was never started")
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._open(self._manager.connection_info)
        self._tasks.start_soon(self._watch, name=f"watch {self._manager.kernel_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, None
        self._inbox_send.close()
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(exc_type, exc, tb)
        self._close_streams()
        self._inbox.close()

    def _open(self, info: ConnectionInfo) -> None:
        """Connect fresh sockets to ``info`` and start one reader per socket."""
        assert self._tasks is not None
        self._close_streams()
        self._info, self._signer = info, info.signer()
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

    async def send(self, channel: Channel, parts: Sequence[Frame]) -> None:
        """Send now, or, while the kernel is dead or restarting or IOPub is not yet
        connected to it, once it is (on whatever ports it then has): a message
        sent meanwhile is never lost, and its output is never missed.
        """
        manager = self._manager
        if (
            manager.state in (KernelState.DEAD, KernelState.RESTARTING)
            or self._live_generation != manager.restarts
            or self._held
        ):
            if len(self._held) >= MAX_HELD:
                raise ChannelClosed(
                    f"kernel {manager.kernel_id} is not running and {MAX_HELD} messages wait"
                )
            self._held.append((channel, [bytes(p) for p in parts]))
            return
        stream = self._streams.get(channel)
        try:
            await self._send_now(channel, parts)
        except ChannelClosed:
            # It waited for a connection (the kernel died, unnoticed yet) and the
            # watcher replaced the socket meanwhile: send it to the new kernel.
            if self._tasks is None or self._streams.get(channel) is stream:
                raise
            self._held.append((channel, [bytes(p) for p in parts]))
            if manager.state is KernelState.RUNNING and self._live_generation == manager.restarts:
                await self._flush_held()  # live again already: nobody else will send it

    async def _send_now(self, channel: Channel, parts: Sequence[Frame]) -> None:
        stream = self._streams.get(channel)
        if stream is None or self._signer is None:
            raise ChannelClosed(f"{channel.value} channel is not open")
        await stream.send(encode_parts(parts[:4], self._signer, buffers=parts[4:]))

    async def receive(self) -> list[Received]:
        try:
            batch = await self._inbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ChannelClosed(f"kernel {self._manager.kernel_id} channels are closed") from None
        while True:  # whatever else is already queued, in order
            try:
                batch.extend(self._inbox.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return batch

    # -- inside ------------------------------------------------------------------------

    async def _read(
        self, scope: anyio.CancelScope, channel: Channel, stream: ChannelStream
    ) -> None:
        signer, guard, put = self._signer, self._guard, self._inbox_send.send_nowait
        assert signer is not None
        with scope:
            while True:
                try:
                    batch = await stream.receive_batch()
                except ChannelClosed:
                    return
                out: list[Received] = []
                for frames in batch:
                    try:
                        raw = split(frames)
                        raw.verify(signer, guard)
                    except RemoteProtocolError as exc:
                        log.warning("dropping an invalid message on %s: %s", channel.value, exc)
                        continue
                    out.append((channel, [*raw.signed_parts, *raw.buffers]))  # type: ignore[list-item]
                if out and channel is Channel.IOPUB:
                    self._iopub_generation = self._manager.restarts
                    arrived, self._iopub_arrived = self._iopub_arrived, anyio.Event()
                    arrived.set()
                if out:
                    try:
                        put(out)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return

    def _notify(self, event: KernelNotice) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._inbox_send.send_nowait([event])

    async def _watch(self) -> None:
        """Turn lifecycle changes into notices; end the inbox when the kernel stops.

        Deaths and restarts are read from the manager's counters, so a death
        that is already undone by the time this task runs is still reported
        (``restarting`` then ``restarted``).
        """
        manager = self._manager
        deaths, restarts, dead_reported = manager.deaths, manager.restarts, False
        await self._become_live()
        while True:
            state = manager.state
            if state in (KernelState.SHUTTING_DOWN, KernelState.STOPPED):
                self._inbox_send.close()
                return
            if manager.deaths > deaths:
                deaths = manager.deaths
                if manager.restarts > restarts or self._will_restart():
                    reason = str(manager.death) if manager.death else "the kernel died"
                    self._notify(KernelNotice("restarting", reason))
            if manager.restarts > restarts:
                restarts, dead_reported = manager.restarts, False
                info = manager.connection_info
                if info is not None and info != self._info:
                    log.info("kernel %s has new ports: reconnecting", manager.kernel_id)
                    self._open(info)
                await self._become_live()
                self._notify(KernelNotice("restarted", "the kernel answers again"))
            elif state is KernelState.DEAD and not dead_reported and not self._will_restart():
                reason = str(manager.death) if manager.death else "the kernel died"
                self._notify(KernelNotice("dead", reason))
                dead_reported = True
                if self._held:
                    log.warning(
                        "kernel %s is dead: %d held messages dropped",
                        manager.kernel_id,
                        len(self._held),
                    )
                    self._held = []
            if state is KernelState.DEAD and self._will_restart():
                # The restarter may give up without a state change: poll its verdict.
                with anyio.move_on_after(0.2):
                    await manager.wait_for_change()
            else:
                await manager.wait_for_change()

    async def _become_live(self) -> None:
        """Wait until IOPub delivers from the current kernel (a welcome, or the status of
        a ``kernel_info_request`` probe; bounded by IOPUB_WAIT), then send what was held.
        """
        generation = self._manager.restarts
        with anyio.move_on_after(IOPUB_WAIT):
            while self._iopub_generation != generation:
                arrived = self._iopub_arrived
                probe = self._factory.message("kernel_info_request", channel=Channel.SHELL)
                with contextlib.suppress(ChannelClosed):
                    await self._send_now(Channel.SHELL, message_parts(probe))
                with anyio.move_on_after(PROBE_INTERVAL):
                    await arrived.wait()
        if self._iopub_generation != generation:
            log.warning("kernel %s: IOPub silent for %s s", self._manager.kernel_id, IOPUB_WAIT)
        self._live_generation = generation
        await self._flush_held()

    async def _flush_held(self) -> None:
        """Send what was held, in order (one flusher at a time keeps the order)."""
        async with self._flushing:
            while self._held:
                channel, parts = self._held.pop(0)
                await self._send_now(channel, parts)
