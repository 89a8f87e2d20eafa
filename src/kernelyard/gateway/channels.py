"""GatewayChannels: the KernelChannels of a remote kernel, over one upstream WebSocket.

The upstream is ``{ws_url}{kernels_endpoint}/{id}/channels?session_id=S``
with the gateway's headers, token, cookies and TLS. We offer
``v1.kernel.websocket.jupyter.org`` and speak whichever framing the upstream
chose; what we hand out is raw parts either way, so the server writes each
of its clients' frames in that client's framing (v1 to v1 stays byte-exact;
legacy binary frames keep their buffers as bytes).

The socket is an :class:`~kernelyard.gateway.upstream.UpstreamSocket`: each
message is handled in the callback that read it (:meth:`GatewayChannels._received`).
Messages go through a relay :class:`~kernelyard.wire.ClientProtocol` with
no key (a WebSocket carries unsigned messages): it matches replies and input
requests to the origin of their request and reads IOPub's status.

**When the upstream connection drops** (anything but our own close), sends
are held, in order, and we reconnect with the same ``session_id`` after
``min(retry_interval * 2**n, retry_interval_max)`` plus up to a tenth of
that at random, at most ``retry_max`` times. The upstream (a jupyter_server
or a kernelyard) replays what it buffered for the session; messages whose
``msg_id`` already arrived are dropped, so nothing is duplicated. We also
say which message arrived last (``resume_after``): a kernelyard upstream
then sends again what it wrote after that one, which a cut loses in flight
(no WebSocket acknowledges what it received), so nothing is lost either. The
consumer sees nothing of the gap but the wait. When the retries run out,
the kernel's lifecycle gets DIED (and so GAVE_UP): the server tells its
clients ``status: dead`` and closes them. A close that follows the remote
kernel's end (it was shut down or culled on the gateway: a ``GET`` of it
answers 404) is SHUTDOWN instead, with that reason.

Lifecycle events come from the remote kernel's :class:`~kernelyard.lifecycle.Lifecycle`
(the backend owns it and applies RESTART/RESTARTED around a restart): the
channels subscribe and forward them in order with the messages. After
RESTARTED the upstream socket is replaced by a new one (same session), as
JupyterLab does after a restart: Kernel Gateway's old socket stays deaf to
the restarted kernel. Sends wait for the new socket.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self
from urllib.parse import quote

import anyio
from anyio.abc import TaskGroup
from websockets.exceptions import InvalidHandshake, InvalidStatus

from kernelyard._clock import utcnow
from kernelyard._inbox import Inbox
from kernelyard.backend import ChannelEvent, Origin
from kernelyard.errors import (
    ChannelClosed,
    GatewayError,
    GatewayHTTPError,
    GatewayTimeout,
    GatewayUnreachable,
    MalformedMessage,
)
from kernelyard.gateway.http import GatewayHTTP, describe, tls_refused
from kernelyard.gateway.upstream import UpstreamSocket
from kernelyard.lifecycle import Change, KernelEvent, KernelState, Lifecycle
from kernelyard.wire import (
    DELIMITER,
    V1_SUBPROTOCOL,
    Channel,
    ClientProtocol,
    Dropped,
    Frame,
    Frames,
    IOPubReady,
    Output,
    Signer,
    Unmatched,
    frame_parts,
    legacy_from_parts,
    pack_v1,
)

__all__ = ["GatewayChannels"]

log = logging.getLogger(__name__)

#: Messages held while the upstream is away before sends fail with ChannelClosed.
MAX_HELD = 1000
#: msg_ids remembered to drop what an upstream replays twice.
SEEN_IDS = 20_000
#: Lifecycle states in which nothing is read or reconnected any more.
_ENDED = frozenset({KernelState.SHUTTING_DOWN, KernelState.STOPPED})
#: A message held while the upstream is away: channel, raw parts, msg_id, msg_type.
_Held = tuple[Channel, list[Frame], str, str]
#: Largest frame taken from the upstream (a kernel's output can be large).
MAX_FRAME = 1 << 30


class GatewayChannels:
    """KernelChannels over an upstream WebSocket. Use as ``async with``; see the module."""

    def __init__(
        self,
        http: GatewayHTTP,
        kernel_id: str,
        lifecycle: Lifecycle,
        *,
        session: str,
        is_gone: Callable[[], Awaitable[str | None]],
    ) -> None:
        """``is_gone()`` asks the gateway whether the kernel still exists: None if it
        does, else why not ("shut down on the gateway").
        """
        self._http = http
        self.kernel_id = kernel_id
        self._lifecycle = lifecycle
        self.session = session
        self._is_gone = is_gone
        self._protocol: ClientProtocol[Origin] = ClientProtocol(
            Signer(b""), session=session, clock=utcnow, parse_all=False
        )
        self._inbox = Inbox[ChannelEvent](f"kernel {kernel_id}")
        self._ws: UpstreamSocket | None = None
        self._v1 = False
        self._held: list[_Held] = []
        self._sending = anyio.Lock(fast_acquire=True)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._tasks: TaskGroup | None = None
        #: The gateway's connection to the kernel is not ours to know.
        self.encrypted: bool | None = None
        self._closed = False
        self._reopening = False  # a restart closed the upstream socket: open a new one
        self._unsubscribe: Callable[[], None] | None = None
        #: Upstream connections made (1 + reconnects); for tests and logs.
        self.connects = 0

    @property
    def upstream_connected(self) -> bool:
        """Whether the upstream WebSocket is open now (not while reconnecting)."""
        return self._ws is not None

    @property
    def subprotocol(self) -> str | None:
        """The framing the upstream chose (v1, or None for legacy)."""
        return V1_SUBPROTOCOL if self._v1 else None

    # -- lifetime -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._connect()  # a first connect that fails raises: open_channels fails
        except BaseException:
            self._inbox.close()
            raise
        self._unsubscribe = self._lifecycle.subscribe(self._forward)
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._run, name=f"upstream {self.kernel_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        tasks, self._tasks = self._tasks, None
        self._inbox.end()
        try:
            if tasks is not None:
                tasks.cancel_scope.cancel()
                await tasks.__aexit__(exc_type, exc, tb)
        finally:
            ws, self._ws = self._ws, None
            if ws is not None:
                with anyio.move_on_after(1, shield=True):
                    await ws.close()
            self._inbox.close()

    async def _connect(self) -> None:
        """Open the upstream WebSocket (once); GatewayError when it cannot be opened."""
        settings = self._http.settings
        path = f"{settings.kernels_endpoint}/{quote(self.kernel_id)}/channels"
        url = settings.websocket_url(path) + f"?session_id={quote(self.session)}"
        if self._seen:  # a kernelyard upstream resumes right after it; others ignore it
            url += f"&resume_after={quote(next(reversed(self._seen)))}"
        try:
            ws = await UpstreamSocket.open(
                url,
                headers=self._http.headers(),
                subprotocols=[V1_SUBPROTOCOL],
                on_message=self._received,
                ssl=self._http.ssl,
                open_timeout=settings.connect_timeout,
                max_size=MAX_FRAME,
                ping_interval=20,
                ping_timeout=settings.request_timeout,
            )
        except InvalidStatus as exc:
            response = exc.response
            body = response.body.decode("utf-8", "replace") if response.body else ""
            raise GatewayHTTPError(
                response.status_code,
                body or response.reason_phrase,
                url=settings.url,
                request=f"WebSocket {path}",
            ) from exc
        except TimeoutError as exc:
            raise GatewayTimeout(
                f"the gateway at {settings.url} did not open the WebSocket of kernel "
                f"{self.kernel_id} within {settings.connect_timeout:g} s",
                url=settings.url,
            ) from exc
        except (OSError, InvalidHandshake) as exc:
            raise GatewayUnreachable(
                f"could not connect to the gateway at {settings.url} (WebSocket of kernel "
                f"{self.kernel_id}): {describe(exc)}",
                url=settings.url,
            ) from exc
        self._http.took_cookies(ws.response.headers.get_all("set-cookie") if ws.response else [])
        self._ws = ws
        self._v1 = ws.subprotocol == V1_SUBPROTOCOL
        self._protocol.reconnected()
        self.connects += 1

    # -- KernelChannels --------------------------------------------------------------

    async def send(
        self, channel: Channel, parts: Frames, *, msg_id: str, msg_type: str, origin: Origin
    ) -> None:
        """Send now, or once the upstream is back (in order) while it is away."""
        if self._closed:
            raise ChannelClosed(f"kernel {self.kernel_id} channels are closed")
        self._protocol.send_parts(channel, parts, msg_id=msg_id, msg_type=msg_type, origin=origin)
        item: _Held = (channel, [bytes(p) for p in parts], msg_id, msg_type)
        if self._ws is None or self._held:
            self._hold(item)
            return
        async with self._sending:
            if not await self._send_now(item):
                self._hold(item)

    def _hold(self, item: _Held) -> None:
        if self._lifecycle.gone:
            raise ChannelClosed(f"kernel {self.kernel_id} is dead: the gateway is lost")
        if len(self._held) >= MAX_HELD:
            raise ChannelClosed(
                f"kernel {self.kernel_id}: the gateway is away and {MAX_HELD} messages wait"
            )
        self._held.append(item)

    async def _send_now(self, item: _Held) -> bool:
        """Write one message upstream; False if the connection is gone (hold it)."""
        ws = self._ws
        if ws is None:
            return False
        channel, parts, msg_id, msg_type = item
        frame = (
            pack_v1(channel.value, parts)
            if self._v1
            else legacy_from_parts(channel, parts, msg_id, msg_type)
        )
        return await ws.send(frame)

    async def _flush_held(self) -> None:
        async with self._sending:
            while self._held and self._ws is not None:
                if not await self._send_now(self._held[0]):
                    return
                self._held.pop(0)

    async def receive(self) -> list[ChannelEvent]:
        return await self._inbox.get()

    # -- inside ---------------------------------------------------------------------------

    def _forward(self, event: KernelEvent) -> None:
        if event.change in (Change.START, Change.READY, Change.STOPPED):
            return
        if event.change is Change.RESTARTED:
            self._reopen()
        if event.change is Change.GAVE_UP and self._held:
            log.warning("kernel %s: %d held messages dropped", self.kernel_id, len(self._held))
            self._held = []
        self._inbox.put([event])
        if event.change is Change.SHUTDOWN:
            self._inbox.end()

    def _reopen(self) -> None:
        """After a restart, open a new upstream socket, as JupyterLab does after its
        own (the kernel's ports may have changed: Kernel Gateway leaves the old socket
        deaf). Sends are held from now until the new one is open.
        """
        old, self._ws = self._ws, None
        if old is None or self._tasks is None:
            return
        self._reopening = True
        self._tasks.start_soon(old.close, name=f"close upstream {self.kernel_id}")

    async def _run(self) -> None:
        """Read upstream until it closes, reconnect; end as the module docstring says."""
        while not self._closed:
            ws = self._ws
            if ws is not None:
                await self._read(ws)
                if self._ws is ws:
                    self._ws = None
            if self._closed or self._lifecycle.state in _ENDED:
                return
            if self._reopening:
                self._reopening = False
                try:
                    await self._connect()
                except GatewayError as exc:
                    log.info("kernel %s: reopening after a restart: %s", self.kernel_id, exc)
                else:
                    await self._flush_held()
                    continue
            gone = await self._gone_reason()
            if gone is not None:
                if self._lifecycle.can(Change.SHUTDOWN):
                    self._lifecycle.apply(Change.SHUTDOWN, gone)
                self._inbox.end()
                return
            if not await self._reconnect():
                return

    async def _read(self, ws: UpstreamSocket) -> None:
        """Wait while ``ws`` delivers its messages (to :meth:`_received`) until it closes."""
        await ws.wait_closed()
        log.info("kernel %s: the gateway's WebSocket closed (%s)", self.kernel_id, ws.close_code)

    def _received(self, data: bytes | str) -> None:
        """One message from the upstream, as it arrives: its events into the inbox.

        The relay protocol reads each header once; a msg_id seen before is a
        replay of the upstream's after a reconnect, and dropped.
        """
        try:
            channel, parts = frame_parts(data, v1=self._v1)
        except MalformedMessage as exc:
            log.warning("kernel %s: a bad frame from the gateway: %s", self.kernel_id, exc)
            return
        out: list[ChannelEvent] = []
        for event in self._protocol.receive(channel, [DELIMITER, b"", *parts]):
            if isinstance(event, Dropped):
                log.warning("kernel %s: dropped %s", self.kernel_id, event.error)
                continue
            if isinstance(event, IOPubReady):
                continue
            msg_id = event.received.msg_id
            if msg_id:
                if msg_id in self._seen:
                    return  # replayed by the upstream after a reconnect
                self._seen[msg_id] = None
                if len(self._seen) > SEEN_IDS:
                    self._seen.popitem(last=False)
            if isinstance(event, Unmatched):
                log.debug("%s for no known request", event.received.msg_type)
            elif (
                isinstance(event, Output)
                and event.execution_state == "restarting"
                and self._lifecycle.state is KernelState.RESTARTING
            ):
                # Our restart: the server says so itself, from our lifecycle; a
                # second notice makes JupyterLab restart its connection twice.
                continue
            else:
                out.append(event)
        if out:
            self._inbox.put(out)

    async def _gone_reason(self) -> str | None:
        try:
            return await self._is_gone()
        except GatewayError:
            return None  # cannot tell: the gateway itself is away; reconnecting says more

    async def _reconnect(self) -> bool:
        """Reconnect within the retry settings; False (and the kernel DIED) if that fails."""
        settings = self._http.settings
        last: Exception | None = None
        for attempt in range(settings.retry_max):
            delay = min(settings.retry_interval * 2**attempt, settings.retry_interval_max)
            await anyio.sleep(delay + random.uniform(0, delay / 10))
            if self._closed:
                return False
            try:
                await self._connect()
            except GatewayError as exc:
                last = exc
                log.info(
                    "kernel %s: reconnect %d of %d failed: %s",
                    self.kernel_id,
                    attempt + 1,
                    settings.retry_max,
                    exc,
                )
                if isinstance(exc, GatewayHTTPError) and exc.status_code == 404:
                    break  # the kernel is gone there
                if tls_refused(exc):
                    break  # waiting does not heal a refused certificate
                continue
            log.info("kernel %s: reconnected to the gateway", self.kernel_id)
            await self._flush_held()
            return True
        gone = await self._gone_reason()
        if gone is not None:
            if self._lifecycle.can(Change.SHUTDOWN):
                self._lifecycle.apply(Change.SHUTDOWN, gone)
            self._inbox.end()
            return False
        reason = f"lost the gateway at {settings.url} after {settings.retry_max} reconnects"
        if last is not None:
            reason += f": {last}"
        log.warning("kernel %s: %s", self.kernel_id, reason)
        if self._lifecycle.can(Change.DIED):
            self._lifecycle.apply(Change.DIED, reason)
        return await self._revived()

    async def _revived(self) -> bool:
        """After giving up: wait for a restart by hand (RESTART), then connect again;
        False once the kernel is shut down instead.
        """
        while True:
            restarted = anyio.Event()

            def on_change(event: KernelEvent, restarted: anyio.Event = restarted) -> None:
                if event.change in (Change.RESTART, Change.SHUTDOWN):
                    restarted.set()

            unsubscribe = self._lifecycle.subscribe(on_change)
            try:
                await restarted.wait()
            finally:
                unsubscribe()
            if self._lifecycle.state is not KernelState.RESTARTING:
                return False
            try:
                await self._connect()
            except GatewayError as exc:
                log.warning("kernel %s: still no gateway: %s", self.kernel_id, exc)
                continue
            await self._flush_held()
            return True
