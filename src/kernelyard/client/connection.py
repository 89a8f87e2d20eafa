"""KernelConnection: the channels of one kernel, requests and replies, routing (async).

One reader task per channel decodes every message and dispatches it:

* shell and control replies resolve the one future registered for their
  request's msg_id, so any number of tasks may send requests at once and
  every reply reaches its caller; none is dropped because another caller
  read first (jupyter_client#429, #545);
* IOPub messages go to the route of the request they answer (output
  collection in :meth:`KernelClient.execute_interactive`) and to every
  subscriber of :meth:`KernelClient.iopub`;
* stdin ``input_request`` goes to the route of its execute, or to
  :meth:`KernelClient.stdin_requests`.

When the kernel dies (its process exits, reported through
:meth:`KernelClient.kernel_died`, or its heartbeat stops), every pending call
fails at once with KernelDied and new calls fail until it answers again.

The messages travel over a :class:`~kernelyard.client.links.Link`: the
kernel's ZeroMQ sockets given its connection info, or any backend's
:class:`~kernelyard.backend.KernelChannels` (``channels=``: a kernel behind a
gateway, over its WebSocket), opened anew each time the client is.

The connection is an async context manager that owns its tasks.
:class:`~kernelyard.client.KernelClient` adds the requests of the protocol.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from kernelyard._clock import utcnow
from kernelyard.client.execution import Execution
from kernelyard.client.links import ChannelsFactory, ChannelsLink, Link, ZmqLink
from kernelyard.errors import (
    ChannelClosed,
    InvalidState,
    KernelDied,
    LocalProtocolError,
    ReplyTimeout,
)
from kernelyard.wire import (
    MESSAGE_CHANNELS,
    Channel,
    ClientProtocol,
    ConnectionInfo,
    Dropped,
    Event,
    Frames,
    InputRequested,
    IOPubReady,
    Message,
    Reply,
    Signer,
)

__all__ = ["KernelConnection"]

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

_READY_PROBE_INTERVAL = 0.5

#: What a request waits with: its reply's future (None: sent without waiting).
Origin = asyncio.Future[Message] | None


class KernelConnection:
    """The connection to one kernel. Use as ``async with``; see the module docstring."""

    def __init__(
        self,
        connection_info: ConnectionInfo | None = None,
        *,
        channels: ChannelsFactory | None = None,
        session: str | None = None,
        username: str = "kernelyard",
        heartbeat: bool = True,
        heartbeat_interval: float = 0.5,
        time_to_dead: float = 3.0,
        kernel_id: str | None = None,
    ) -> None:
        """Over the kernel's sockets (``connection_info``) or a backend's channels
        (``channels()`` opens them, at each ``async with``; one of the two; the
        heartbeat settings apply to sockets only).
        """
        if (connection_info is None) == (channels is None):
            raise TypeError("give either connection_info or channels")
        self.connection_info = connection_info
        self.kernel_id = kernel_id
        self._protocol: ClientProtocol[Origin] = ClientProtocol(
            connection_info.signer() if connection_info is not None else Signer(b""),
            session=session,
            username=username,
            clock=utcnow,
        )
        self._link: Link
        if connection_info is not None:
            self._link = ZmqLink(
                connection_info,
                identity=self._protocol.session.encode(),
                heartbeat=heartbeat,
                heartbeat_interval=heartbeat_interval,
                time_to_dead=time_to_dead,
                kernel_id=kernel_id,
            )
        else:
            assert channels is not None
            self._link = ChannelsLink(channels, kernel_id=kernel_id)
        self._executions: dict[str, Execution] = {}
        self._subscribers: dict[MemoryObjectSendStream[Message], frozenset[Channel]] = {}
        self._stdin_send: MemoryObjectSendStream[Message] | None = None
        self._stdin_receive: MemoryObjectReceiveStream[Message] | None = None
        self._iopub_live = anyio.Event()
        self._dead: KernelDied | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._tasks: TaskGroup | None = None

    @property
    def session(self) -> str:
        return self._protocol.session

    @property
    def execution_state(self) -> str:
        """The last ``execution_state`` the kernel published ("unknown" before any,
        "dead" while it is reported dead).
        """
        return "dead" if self._dead is not None else self._protocol.execution_state

    @property
    def is_alive(self) -> bool:
        """False once the kernel was reported dead, until it answers again."""
        return self._dead is None

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._exit_stack is not None:
            raise InvalidState("client is already open")
        stack = AsyncExitStack()
        # A reopened connection has a new SUB socket: IOPub is live again only
        # once this socket delivers.
        self._iopub_reconnected()
        try:
            self._stdin_send, self._stdin_receive = anyio.create_memory_object_stream[Message](
                math.inf
            )
            stack.callback(self._close_everything)
            await self._link.connect(stack)
            self._tasks = await stack.enter_async_context(anyio.create_task_group())
            self._link.start(self._tasks, self._deliver, self)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the readers, close the sockets, fail what is still pending (idempotent)."""
        stack, self._exit_stack = self._exit_stack, None
        if stack is None:
            return
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()
        await stack.aclose()

    def _close_everything(self) -> None:
        self._fail_pending(ChannelClosed("the client was closed"))
        for stream in self._subscribers:
            stream.close()
        self._subscribers = {}
        if self._stdin_send is not None and self._stdin_receive is not None:
            self._stdin_send.close()
            self._stdin_receive.close()

    # -- death and rebirth -----------------------------------------------------

    def kernel_died(self, error: KernelDied) -> None:
        """Fail every pending call with ``error``; new calls fail until the kernel answers again."""
        self._dead = error
        self._fail_pending(error)

    def kernel_moved(self, connection_info: ConnectionInfo) -> None:
        """The kernel restarted at other endpoints (new ports, another node): reconnect
        there. The manager calls it before :meth:`kernel_restarted`.
        """
        self.connection_info = connection_info
        self._link.move(connection_info)
        self._iopub_reconnected()

    def kernel_restarted(self) -> None:
        """The kernel answers again (restarted in place): calls may proceed."""
        self._dead = None
        self._iopub_reconnected()  # its state is unknown until the new kernel publishes

    def _iopub_reconnected(self) -> None:
        self._protocol.reconnected()
        self._iopub_live = anyio.Event()

    def kernel_restarting(self) -> None:
        """A restart begins: what waits for the old kernel's replies fails now (the new
        kernel never answers them); what is sent meanwhile goes to the new one.
        """
        self._fail_pending(KernelDied("the kernel is restarting", kernel_id=self.kernel_id))

    def _fail_pending(self, error: Exception) -> None:
        for future in self._protocol.pending():
            if future is not None and not future.done():
                future.set_exception(error)
        for execution in self._executions.values():
            execution.fail(error)

    # -- receiving --------------------------------------------------------------

    def _deliver(self, channel: Channel, batch: Sequence[Frames]) -> None:
        """What the link received on ``channel``: verified, matched, dispatched."""
        dispatch = self._dispatch
        for event in self._protocol.receive_batch(channel, batch):
            dispatch(event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, IOPubReady):
            self._iopub_live.set()
            return
        if isinstance(event, Dropped):
            log.warning("dropping an invalid message on %s: %s", event.channel.value, event.error)
            return
        msg = event.received.message()
        self._broadcast(msg)
        parent = msg.parent_msg_id
        execution = self._executions.get(parent) if parent is not None else None
        if execution is not None:
            execution.on_message(msg)
        elif isinstance(event, Reply):
            future = event.origin
            if future is not None and not future.done():
                future.set_result(msg)
        elif msg.channel is Channel.STDIN:
            self._unclaimed_input(msg)
        elif msg.channel is not Channel.IOPUB and not isinstance(event, InputRequested):
            log.debug("reply %s to %s has no waiting caller", msg.msg_type, parent)

    def _unclaimed_input(self, msg: Message) -> None:
        """An input request for no execute_interactive: for :meth:`stdin_requests`."""
        try:
            if self._stdin_send is not None:
                self._stdin_send.send_nowait(msg)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.warning("input_request %s arrived after the client closed", msg.msg_id)

    def _broadcast(self, msg: Message) -> None:
        for subscriber, channels in list(self._subscribers.items()):
            if msg.channel in channels:
                try:
                    subscriber.send_nowait(msg)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._subscribers.pop(subscriber, None)

    @asynccontextmanager
    async def subscribe(
        self, channels: frozenset[Channel] = MESSAGE_CHANNELS
    ) -> AsyncIterator[MemoryObjectReceiveStream[Message]]:
        """Every message arriving on ``channels`` from now until the block ends, in order,
        none dropped (also those that answer a request or feed an execute_interactive).
        """
        send, receive = anyio.create_memory_object_stream[Message](math.inf)
        self._subscribers[send] = channels
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.pop(send, None)
            send.close()

    def iopub(self) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[Message]]:
        """Every IOPub message from now until the block ends, in order, none dropped."""
        return self.subscribe(frozenset({Channel.IOPUB}))

    async def stdin_requests(self) -> Message:
        """The next ``input_request`` that no :meth:`execute_interactive` is handling."""
        if self._stdin_receive is None:
            raise InvalidState("the client is not open: use 'async with KernelClient(...)'")
        try:
            return await self._stdin_receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ChannelClosed("the client was closed") from None

    # -- sending ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._exit_stack is None:
            raise InvalidState("the client is not open: use 'async with KernelClient(...)'")
        dead = self._dead
        if dead is not None:  # a fresh instance: re-raising one would pile up tracebacks
            raise KernelDied(str(dead), kernel_id=dead.kernel_id, exit_code=dead.exit_code)

    async def send(self, msg: Message) -> None:
        """Send ``msg`` on its channel (no reply is awaited)."""
        await self._send(msg, None)

    async def _send(self, msg: Message, origin: Origin) -> None:
        self._check_open()
        channel = msg.channel
        if channel is None or channel is Channel.IOPUB or channel is Channel.HEARTBEAT:
            raise LocalProtocolError(f"cannot send a message on channel {channel!r}")
        await self._link.send(channel, self._protocol.send(msg, origin), msg.msg_id, msg.msg_type)

    def message(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None = None,
        *,
        channel: Channel = Channel.SHELL,
        subshell_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes | memoryview] = (),
        parent: Message | None = None,
    ) -> Message:
        """A new message from this client's session."""
        return self._protocol.factory.message(
            msg_type,
            content,
            channel=channel,
            subshell_id=subshell_id,
            metadata=metadata,
            buffers=buffers,
            parent=parent,
        )

    async def request(self, msg: Message, *, timeout: float | None = None) -> Message:
        """Send ``msg`` and return its reply.

        Raises ReplyTimeout after ``timeout`` seconds, KernelDied if the kernel
        dies first, ChannelClosed if the client closes first.
        """
        self._check_open()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        try:
            await self._send(msg, future)
            return await self._wait(future, msg, timeout)
        finally:
            self._protocol.forget(msg.msg_id)

    async def _wait(
        self, future: asyncio.Future[Message], msg: Message, timeout: float | None
    ) -> Message:
        if timeout is None:  # no cancel scope to build: it shows in every round trip
            return await future
        try:
            with anyio.fail_after(timeout):
                return await future
        except TimeoutError:
            raise ReplyTimeout(
                f"no reply to {msg.msg_type} within {timeout} s",
                msg_id=msg.msg_id,
                msg_type=msg.msg_type,
            ) from None

    async def _call(
        self,
        msg_type: str,
        content: JSONDict | None = None,
        *,
        channel: Channel = Channel.SHELL,
        subshell_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        msg = self.message(msg_type, content, channel=channel, subshell_id=subshell_id)
        return await self.request(msg, timeout=timeout)

    # -- readiness -------------------------------------------------------------------

    async def wait_for_ready(self, timeout: float | None = 60.0) -> Message:
        """Wait until the kernel answers and IOPub delivers; returns the kernel_info reply.

        IOPub is live once it delivered anything: ``iopub_welcome`` (kernels
        with XPUB) or the status of one of our kernel_info requests (older
        kernels). No fixed drain delay, and no IOPub message is discarded.
        """
        try:
            with anyio.fail_after(timeout):
                reply = await self._probe()
                while not self._iopub_live.is_set():
                    with anyio.move_on_after(_READY_PROBE_INTERVAL):
                        await self._iopub_live.wait()
                    if not self._iopub_live.is_set():
                        reply = await self._probe()
                return reply
        except TimeoutError:
            hint = ""
            if self.connection_info is not None and self.connection_info.encrypted:
                # libzmq drops a Curve handshake with the wrong server key without a word.
                hint = (
                    " (the connection is CurveZMQ-encrypted: a kernel that is up but never"
                    " answers may have another key pair than curve_publickey says)"
                )
            raise ReplyTimeout(f"kernel not ready within {timeout} s{hint}") from None

    async def _probe(self) -> Message:
        return await self.request(self.message("kernel_info_request"))
