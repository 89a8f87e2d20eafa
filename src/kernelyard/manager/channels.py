"""ManagedChannels: the KernelChannels of a kernel that a KernelManager runs.

One DEALER per request channel (shell, control, stdin, all with one routing
identity, so the kernel sends ``input_request`` to the socket that shares
the execute's identity) and one SUB for IOPub with no high-water mark, so a
flood is read into memory instead of being dropped by ZeroMQ. Incoming
messages are verified with the kernel's key and handed out as raw parts.

A watcher follows the manager's lifecycle and reports it as notices: a death
the restarter will try to undo (``restarting``), the kernel answering again
(``restarted``; the sockets are reopened first when the restart changed the
ports), a death nobody will undo (``dead``). Once the kernel is stopped,
``receive`` raises ChannelClosed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from kernelyard.backend import KernelNotice, Received
from kernelyard.errors import ChannelClosed, InvalidState, RemoteProtocolError
from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.state import KernelState
from kernelyard.transport import ChannelStream, open_channel
from kernelyard.wire import Channel, ConnectionInfo, ReplayGuard, Signer, encode_parts, split

__all__ = ["ManagedChannels"]

log = logging.getLogger(__name__)

Frame = bytes | memoryview

_CHANNELS = (Channel.SHELL, Channel.CONTROL, Channel.STDIN, Channel.IOPUB)


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
                info, channel, identity=self._identity, unbounded=True
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
        info = self._manager.connection_info
        if info is not None and info != self._info and self._manager.state is KernelState.RUNNING:
            self._open(info)  # restarted on new ports: never send to the old ones
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
                if out:
                    try:
                        put(out)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return

    def _notify(self, event: KernelNotice) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._inbox_send.send_nowait([event])

    async def _watch(self) -> None:
        """Turn lifecycle changes into notices; end the inbox when the kernel stops."""
        manager, announced = self._manager, False
        while True:
            state = manager.state
            if state is KernelState.DEAD:
                reason = str(manager.death) if manager.death else "the kernel died"
                if not self._will_restart():
                    self._notify(KernelNotice("dead", reason))
                    await self._wait_while(KernelState.DEAD, poll=False)
                    continue
                if not announced:
                    self._notify(KernelNotice("restarting", reason))
                    announced = True
                # The restarter may give up without a state change: poll its verdict.
                await self._wait_while(KernelState.DEAD, poll=True)
                continue
            if state is KernelState.RUNNING and (
                announced or manager.connection_info != self._info
            ):
                if manager.connection_info is not None and manager.connection_info != self._info:
                    log.info("kernel %s has new ports: reconnecting", manager.kernel_id)
                    self._open(manager.connection_info)
                self._notify(KernelNotice("restarted", "the kernel answers again"))
                announced = False
            if state in (KernelState.SHUTTING_DOWN, KernelState.STOPPED):
                self._inbox_send.close()
                return
            previous = state
            await manager.wait_for_change()
            if previous is KernelState.RESTARTING and manager.state is KernelState.RUNNING:
                announced = True  # report "restarted" (and reconnect) on the next turn

    async def _wait_while(self, state: KernelState, *, poll: bool) -> None:
        """Wait until the state leaves ``state`` (or, polling, the restarter gives up)."""
        manager = self._manager
        if not poll:
            await manager.wait_for_change()
            return
        while manager.state is state and self._will_restart():
            with anyio.move_on_after(0.2):
                await manager.wait_for_change()
