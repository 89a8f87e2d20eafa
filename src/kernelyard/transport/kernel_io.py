"""The kernel's side of the five channels: one I/O thread owns every socket.

:class:`KernelSockets` binds shell, control and stdin (ROUTER), iopub (XPUB)
and the heartbeat, then runs two threads:

* the **I/O thread** polls shell, control, stdin and iopub, plus a wake-up
  pipe. Incoming multipart messages go, as raw frames, to the per-channel
  callback given at construction (called on the I/O thread; it must not
  block). New iopub subscriptions go to ``on_subscribe``. Outgoing frames from
  any thread are queued by :meth:`send` and written by the I/O thread, in the
  order :meth:`send` was called. :meth:`call_soon` and :meth:`call_later` run
  small functions on the I/O thread (the kernel's output batching uses them).
* the **heartbeat thread** runs libzmq's proxy on a ROUTER that echoes every
  ping. The proxy runs without the GIL, so the heartbeat keeps answering while
  user code holds the interpreter.

With a key pair in the connection info, every bound socket is a Curve
server (:mod:`.curve`), and the registration REQ is a Curve client of the
launcher's socket. No other thread ever touches a socket. IOPub never drops: the XPUB has no send
high-water mark (the kernel coalesces output, so the message count stays low).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from kernelyard.errors import ConnectionInfoError
from kernelyard.transport.curve import check_keypair, secure_client, secure_server
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import ConnectionInfo
from kernelyard.wire.frame import Frames

__all__ = ["FrameHandler", "Frames", "KernelSockets"]

log = logging.getLogger(__name__)

FrameHandler = Callable[[list[bytes]], None]

_SOCKET_TYPES = {
    Channel.SHELL: zmq.ROUTER,
    Channel.CONTROL: zmq.ROUTER,
    Channel.STDIN: zmq.ROUTER,
    Channel.IOPUB: zmq.XPUB,
    Channel.HEARTBEAT: zmq.ROUTER,
}
_POLLED = (Channel.SHELL, Channel.CONTROL, Channel.STDIN, Channel.IOPUB)
#: How long closing waits for queued replies and output to leave, in ms.
_CLOSE_LINGER_MS = 2000


class KernelSockets:
    """The bound sockets of one kernel and the threads that own them.

    Lifecycle: ``bind()`` (on the constructing thread), ``start()``, then any
    number of ``send``/``call_soon``/``call_later`` from any thread, then
    ``close()`` once, from any thread but the I/O thread.
    """

    def __init__(
        self,
        info: ConnectionInfo,
        handlers: Mapping[Channel, FrameHandler],
        *,
        on_subscribe: Callable[[bytes], None],
        watch_fd: int | None = None,
        on_watch_fd: Callable[[], None] | None = None,
    ) -> None:
        self._info = info
        self._handlers = dict(handlers)
        self._on_subscribe = on_subscribe
        self._watch_fd = watch_fd
        self._on_watch_fd = on_watch_fd
        self._context = zmq.Context()
        self._sockets: dict[Channel, zmq.Socket[bytes]] = {}
        self._outbox: deque[tuple[Channel, Frames]] = deque()
        self._calls: list[tuple[float, int, Callable[[], None]]] = []
        self._call_order = itertools.count()
        self._lock = threading.Lock()
        self._woken = False
        self._look_at: float | None = None  # see look_soon()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._io_thread = threading.Thread(target=self._run, name="kernelyard-io", daemon=True)
        self._hb_thread = threading.Thread(
            target=self._run_heartbeat, name="kernelyard-hb", daemon=True
        )

    # -- setup ---------------------------------------------------------------

    def bind(self) -> ConnectionInfo:
        """Bind every channel; ports given as 0 are chosen here. Returns the bound info."""
        check_keypair(self._info.curve_keys)
        ports: dict[Channel, int] = {}
        for channel, kind in _SOCKET_TYPES.items():
            sock: zmq.Socket[bytes] = self._context.socket(kind)
            self._sockets[channel] = sock
            sock.linger = _CLOSE_LINGER_MS
            secure_server(sock, self._info.curve_keys)
            if channel is Channel.IOPUB:
                sock.sndhwm = 0  # never drop; output is coalesced upstream
                sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # report every subscriber
            if channel is Channel.SHELL or channel is Channel.CONTROL:
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client keeps its id
            ports[channel] = self._bind_one(sock, self._info.ports[channel])
        self._info = self._info.with_ports(ports)
        return self._info

    def _bind_one(self, sock: zmq.Socket[bytes], port: int) -> int:
        info = self._info
        try:
            if info.transport == "ipc":
                if port:
                    sock.bind(f"ipc://{info.ip}-{port}")
                    return port
                for candidate in range(1, 65536):
                    path = f"{info.ip}-{candidate}"
                    if not os.path.exists(path):
                        with contextlib.suppress(zmq.ZMQError):
                            sock.bind(f"ipc://{path}")
                            return candidate
                raise ConnectionInfoError(f"no free ipc path under {info.ip!r}")
            host = f"[{info.ip}]" if ":" in info.ip else info.ip
            if port:
                sock.bind(f"tcp://{host}:{port}")
                return port
            endpoint = sock.bind_to_random_port(f"tcp://{host}", max_tries=1000)
            return int(endpoint)
        except zmq.ZMQError as exc:
            raise ConnectionInfoError(
                f"cannot bind {info.transport}:{info.ip}:{port}: {exc}"
            ) from exc

    def register(self, endpoint: str, frames: Frames, *, timeout: float = 10.0) -> list[bytes]:
        """The kernel's half of the registration handshake (JEP 66), before ``start()``.

        Connects a REQ socket to the launcher's registration ``endpoint``, sends
        ``frames`` (a signed ``handshake_request``) and returns the reply frames.
        Raises :class:`ConnectionInfoError` when no reply comes within ``timeout``.
        """
        sock: zmq.Socket[bytes] = self._context.socket(zmq.REQ)
        sock.linger = 0
        try:
            secure_client(sock, self._info.curve_keys)
            sock.connect(endpoint)
            sock.send_multipart(frames)
            if not sock.poll(int(timeout * 1000)):
                raise ConnectionInfoError(f"no handshake reply from {endpoint} within {timeout} s")
            return sock.recv_multipart()
        finally:
            sock.close()

    def start(self) -> None:
        """Start the I/O and heartbeat threads."""
        self._hb_thread.start()
        self._io_thread.start()

    # -- any thread ----------------------------------------------------------

    def send(self, channel: Channel, frames: Frames, *, defer: bool = False) -> None:
        """Queue ``frames`` for ``channel``; the I/O thread writes them in call order.

        ``defer``: the caller will call :meth:`flush_deferred` soon, so the I/O thread
        is not woken now if it is going to look by itself shortly anyway
        (:meth:`look_soon`); otherwise it is woken as for any send.
        """
        with self._lock:
            self._outbox.append((channel, frames))
            if defer and self._look_at is not None:
                return
            self._wake_locked()

    def flush_deferred(self) -> None:
        """Have the I/O thread write what is queued (after deferred sends)."""
        with self._lock:
            if self._outbox:
                self._wake_locked()

    def call_soon(self, func: Callable[[], None]) -> None:
        """Run ``func`` on the I/O thread, after the sends queued before it."""
        self.call_later(0.0, func)

    def call_later(self, delay: float, func: Callable[[], None]) -> None:
        """Run ``func`` on the I/O thread in ``delay`` seconds."""
        with self._lock:
            heapq.heappush(self._calls, (time.monotonic() + delay, next(self._call_order), func))
            self._wake_locked()

    def _wake_locked(self) -> None:
        if not self._woken:
            self._woken = True
            with contextlib.suppress(OSError):  # only when closing
                os.write(self._wake_w, b"\0")

    @property
    def info(self) -> ConnectionInfo:
        return self._info

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The I/O and heartbeat threads (not started before :meth:`start`)."""
        return (self._io_thread, self._hb_thread)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop both threads, close every socket."""
        with self._lock:
            self._stopping = True
            self._wake_locked()
        if self._io_thread.is_alive():
            self._io_thread.join(timeout)
        if self._io_thread.is_alive():  # pragma: no cover - a wedged I/O thread
            log.error("the I/O thread did not stop within %.1f s", timeout)
            return
        hb_started = self._hb_thread.ident is not None
        for channel, sock in self._sockets.items():
            if channel is not Channel.HEARTBEAT or not hb_started:
                sock.close()  # (a running heartbeat thread closes its own socket)
        # Terminating the context ends the heartbeat's proxy (ETERM), whose thread then
        # closes its socket; term() returns once every socket is closed and what the
        # others still had queued has left (their linger).
        self._context.term()
        if self._hb_thread.is_alive():
            self._hb_thread.join(timeout)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- heartbeat thread ----------------------------------------------------

    def _run_heartbeat(self) -> None:
        hb = self._sockets[Channel.HEARTBEAT]
        try:
            zmq.proxy(hb, hb)  # returns only when the context is terminated
        except zmq.ZMQError as exc:
            log.debug("heartbeat proxy stopped: %s", exc)
        finally:
            hb.close(linger=0)

    # -- I/O thread ----------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        by_socket: dict[Any, Channel] = {}
        for channel in _POLLED:
            sock = self._sockets[channel]
            poller.register(sock, zmq.POLLIN)
            by_socket[sock] = channel
        poller.register(self._wake_r, zmq.POLLIN)
        if self._watch_fd is not None:
            poller.register(self._watch_fd, zmq.POLLIN)
        # Every step a round trip takes here is on its critical path: the wake-up pipe
        # is read only when it woke us, and the call heap and the outbox are looked
        # at without the lock first (a call or a send added after the look wakes us).
        wake_r = self._wake_r
        timeout: int | None = 0
        while True:
            events = poller.poll(timeout)
            for target, _ in events:
                polled = by_socket.get(target)
                if polled is not None:
                    self._drain(polled)
                elif target == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                elif target == self._watch_fd:
                    poller.unregister(target)
                    if self._on_watch_fd is not None:
                        self._guarded(self._on_watch_fd)
            if self._calls:
                self._run_due_calls()
            if (self._outbox or self._stopping) and self._flush_outbox():
                break
            timeout = self._next_timeout_ms()

    def look_soon(self, delay: float) -> None:
        """I/O thread only: look at the outbox within ``delay`` s, woken or not; until
        then deferred sends do not wake it.
        """
        self._look_at = time.monotonic() + delay

    def _next_timeout_ms(self) -> int | None:
        """How long to sleep; from here on a send or a call writes the wake-up pipe."""
        with self._lock:
            self._woken = False
            if self._outbox or self._stopping:
                return 0
            now = time.monotonic()
            due = self._calls[0][0] if self._calls else None
            if self._look_at is not None:
                if self._look_at <= now:
                    self._look_at = None
                elif due is None or self._look_at < due:
                    due = self._look_at
            if due is None:
                return None
            return max(0, int((due - now) * 1000) + 1)

    def _drain(self, channel: Channel) -> None:
        sock = self._sockets[channel]
        handler = self._handlers.get(channel)
        # Edge-triggered under the hood: read until EAGAIN so nothing is left behind.
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if channel is Channel.IOPUB:
                    if frames and frames[0][:1] == b"\x01":
                        self._on_subscribe(frames[0][1:])
                elif handler is not None:
                    handler(frames)
            except Exception:  # a handler bug must not kill the thread that owns every socket
                log.exception("error in a kernel I/O callback")

    def _run_due_calls(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._calls or self._calls[0][0] > now:
                    return
                _, _, func = heapq.heappop(self._calls)
            self._guarded(func)

    def _flush_outbox(self) -> bool:
        """Write every queued message; True when closing was asked for and all is written."""
        while True:
            with self._lock:
                if not self._outbox:
                    return self._stopping
                channel, frames = self._outbox.popleft()
            try:
                self._sockets[channel].send_multipart(frames)
            except zmq.ZMQError as exc:  # e.g. a ROUTER peer that went away
                log.warning("dropping a %s message the socket refused: %s", channel, exc)

    def _guarded(self, func: Callable[[], None]) -> None:
        try:
            func()
        except Exception:  # a handler bug must not kill the thread that owns every socket
            log.exception("error in a kernel I/O callback")
