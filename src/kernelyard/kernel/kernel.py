"""The Kernel: sockets, workers and IPython put together.

The kernel's parts (shell workers and their handlers, control, the
debugger, stdin, comms, the IPython shell) are not written against this
class: each takes the kernel as its own small protocol of :mod:`.services`.

Start order, chosen for start-to-ready time: bind and start the I/O,
heartbeat and control threads, then run the main worker's loop at once, so
``kernel_info`` and ``iopub_welcome`` go out while a warm-up thread imports
IPython (about 100 ms). The shell is created on the main thread when the
import is done; requests that need it wait for it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import platform
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernelyard.kernel.context import RequestContext
from kernelyard.kernel.control import ControlThread
from kernelyard.kernel.debugger import Debugger
from kernelyard.kernel.debugpy_server import do_not_trace
from kernelyard.kernel.fdcapture import FdCapture
from kernelyard.kernel.handlers import SHELL_HANDLERS
from kernelyard.kernel.interrupts import Interrupts
from kernelyard.kernel.publisher import Publisher
from kernelyard.kernel.session import KernelSession, Request
from kernelyard.kernel.stdin import StdinBroker
from kernelyard.kernel.streams import OutStream
from kernelyard.kernel.subshells import Subshells
from kernelyard.kernel.worker import ShellWorker, subshell_not_found
from kernelyard.transport.curve import curve_supported
from kernelyard.transport.kernel_io import KernelSockets
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import ConnectionInfo
from kernelyard.wire.frame import Frames
from kernelyard.wire.message import PROTOCOL_VERSION

if TYPE_CHECKING:
    from comm.base_comm import CommManager

__all__ = ["Kernel"]

log = logging.getLogger(__name__)

#: Seconds the main thread gets to finish by itself after an exit was asked for.
EXIT_GRACE = 2.0


def _version() -> str:
    from kernelyard import __version__

    return __version__


#: How long after the I/O thread hands the main shell a request its sends may wait.
MAIN_DEFERS_FOR = 0.002


class _MainDefers:
    """The kernel's sender: what the main shell sends while it handles a request
    leaves when its loop goes idle, with one wake-up of the I/O thread.

    Woken at the request's busy status, the I/O thread would only wait for the
    GIL the shell holds, and be woken a second time when the shell lets go of it
    (a wake-up costs tens of microseconds on a VM; -4 to -5 % round trip in
    paired runs). Deferral is bounded: the I/O thread looks by itself
    :data:`MAIN_DEFERS_FOR` after it handed the request over, and from then on
    every send wakes it, so a long cell's busy is late by 2 ms at most. Sends
    from other threads are never deferred.
    """

    def __init__(self, sockets: KernelSockets) -> None:
        self._sockets = sockets
        self._main = threading.main_thread().ident

    def send(self, channel: Channel, frames: Frames) -> None:
        self._sockets.send(channel, frames, defer=threading.get_ident() == self._main)

    def call_soon(self, func: Callable[[], None]) -> None:
        self._sockets.call_soon(func)

    def call_later(self, delay: float, func: Callable[[], None]) -> None:
        self._sockets.call_later(delay, func)


class Kernel:
    """One kernel process.

    Construct, :meth:`bind`, :meth:`start`, then :meth:`run` on the main thread.
    It implements every protocol of :mod:`.services` (mypy checks each where
    the kernel hands itself to a part).
    """

    def __init__(self, info: ConnectionInfo, *, parent_pid: int | None = None) -> None:
        self.session = KernelSession(info)
        #: The connection is CurveZMQ-encrypted (the connection file has the key pair).
        self.encrypted = info.encrypted
        self.requests = RequestContext()
        self._parent_fd, watch = _watch_parent(parent_pid)
        self.sockets = KernelSockets(
            info,
            {
                Channel.SHELL: self._on_shell,
                Channel.CONTROL: self._on_control,
                Channel.STDIN: self._on_stdin,
            },
            on_subscribe=self._on_subscribe,
            watch_fd=self._parent_fd,
            on_watch_fd=self._on_parent_exit if watch else None,
        )
        self._outbox = _MainDefers(self.sockets)
        self.publisher = Publisher(self.session, self._outbox)
        self.stdin = StdinBroker(self)
        self.main = ShellWorker(self, None, SHELL_HANDLERS, on_idle=self.sockets.flush_deferred)
        self.subshells = Subshells(
            lambda subshell_id: ShellWorker(self, subshell_id, SHELL_HANDLERS)
        )
        self.interrupts = Interrupts(self.main, self.subshells.workers)
        self.control = ControlThread(self)
        self.debugger = Debugger(self)
        self.fd_capture = FdCapture(self.publisher, self.requests, on_thread=do_not_trace)
        self._shell: Any = None
        self._shell_future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._closed = threading.Lock()
        self._exit_asked = threading.Event()
        self.comms: CommManager

    # -- setup and run (main thread) -----------------------------------------------

    def bind(self) -> ConnectionInfo:
        """Bind every socket; returns the connection info with the real ports."""
        return self.sockets.bind()

    def start(self) -> None:
        """Start the socket threads and the control thread; install streams, input and SIGINT."""
        for thread in self.sockets.threads:
            do_not_trace(thread)
        self.sockets.start()
        self.control.start()
        self.fd_capture.start()
        sys.stdout = OutStream("stdout", self.publisher, self.requests, fileno=1)
        sys.stderr = OutStream("stderr", self.publisher, self.requests, fileno=2)
        self.stdin.install()
        self.interrupts.install()
        warm_up = threading.Thread(target=self._warm_up, name="kernelyard-warm-up", daemon=True)
        do_not_trace(warm_up).start()

    def run(self) -> None:
        """Serve the main shell until an exit is asked for, then close everything."""
        try:
            self.main.run_forever()
        finally:
            self.close()

    def close(self) -> None:
        """Stop every thread, save history, write what is queued and close the sockets."""
        if not self._closed.acquire(blocking=False):
            return
        self.subshells.close(timeout=1.0)
        self.control.stop()
        self.debugger.stop()
        if self._shell is not None:
            atexit.unregister(self._shell.atexit_operations)
            try:
                self._shell.atexit_operations()
            except Exception:  # history is nice to keep, not worth a hang or a crash
                log.exception("IPython's exit operations failed")
        self.fd_capture.stop()
        self.publisher.flush_now()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        self.sockets.close()
        if self._parent_fd is not None:
            os.close(self._parent_fd)

    def request_exit(self) -> None:
        """Stop serving (any thread); forces the exit if user code does not let go in time."""
        if self._exit_asked.is_set():
            return
        self._exit_asked.set()
        self.main.stop()
        force = threading.Thread(target=self._force_exit, name="kernelyard-exit", daemon=True)
        do_not_trace(force).start()

    def _force_exit(self) -> None:
        if self._closed.locked():
            return
        threading.Event().wait(EXIT_GRACE)
        if not self._closed.locked():
            log.warning("user code did not stop within %.1f s; exiting anyway", EXIT_GRACE)
            self.close()
            os._exit(0)

    # -- the IPython shell ----------------------------------------------------------

    def _warm_up(self) -> None:
        try:
            import kernelyard.kernel.comms
            import kernelyard.kernel.shell  # noqa: F401  # the slow import, off the main thread
        except BaseException as exc:  # pragma: no cover - a broken IPython install
            self._shell_future.set_exception(exc)
            return
        self.main.loop.call_soon_threadsafe(self._create_shell)

    def _create_shell(self) -> None:
        from kernelyard.kernel.comms import install_comms
        from kernelyard.kernel.shell import create_shell

        try:
            self.comms = install_comms(self)
            self._shell = create_shell(self)
        except BaseException as exc:
            log.exception("cannot create the IPython shell")
            self._shell_future.set_exception(exc)
            return
        self._shell_future.set_result(self._shell)

    async def shell(self) -> Any:
        """The IPython shell, once created (from any worker's loop)."""
        if self._shell is not None:
            return self._shell
        return await asyncio.wrap_future(self._shell_future)

    @property
    def main_loop(self) -> asyncio.AbstractEventLoop:
        """The main shell's loop (the debugger runs what reads user objects there)."""
        return self.main.loop

    # -- messages ------------------------------------------------------------------

    def kernel_info(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "protocol_version": PROTOCOL_VERSION,
            "implementation": "kernelyard",
            "implementation_version": _version(),
            "language_info": {
                "name": "python",
                "version": platform.python_version(),
                "mimetype": "text/x-python",
                "codemirror_mode": {"name": "ipython", "version": 3},
                "pygments_lexer": "ipython3",
                "nbconvert_exporter": "python",
                "file_extension": ".py",
            },
            "banner": f"Python {sys.version}\nkernelyard {_version()}: a concurrent IPython kernel",
            "help_links": [
                {"text": "Python Reference", "url": "https://docs.python.org/3/"},
                {"text": "IPython Reference", "url": "https://ipython.readthedocs.io/"},
            ],
            "debugger": self.debugger.available,
            "supported_features": [
                "kernel subshells",
                *(["debugger"] if self.debugger.available else []),
            ],
            # Not in the protocol (yet): the encryptions this kernel can take (Curve when
            # its libzmq has it; the kernelspec declares the same), and whether this
            # connection is encrypted.
            "supported_encryption": ["curve"] if curve_supported() else [],
            "encrypted": self.encrypted,
        }

    def send_reply(self, request: Request, content: dict[str, Any]) -> None:
        """Answer ``request`` (``foo_request`` -> ``foo_reply``) to the peer that sent it."""
        msg = self.session.message(request.reply_type, content, request.msg)
        self._outbox.send(request.channel, self.session.frames(msg, request.identities))

    def _on_shell(self, frames: list[bytes]) -> None:
        request = self.session.decode(Channel.SHELL, frames)
        if request is None:
            return
        subshell_id = request.subshell_id
        if subshell_id is None:
            self.sockets.look_soon(MAIN_DEFERS_FOR)  # see _MainDefers
            self.main.submit(request)
            return
        subshell = self.subshells.get(subshell_id)
        if subshell is not None:
            subshell.submit(request)
            return
        # JEP 91: an unknown subshell is an error reply, never a silent fallback.
        self.publisher.status("busy", request.msg)
        self.send_reply(request, subshell_not_found(subshell_id))
        self.publisher.status("idle", request.msg)

    def _on_control(self, frames: list[bytes]) -> None:
        request = self.session.decode(Channel.CONTROL, frames)
        if request is not None:
            self.control.submit(request)

    def _on_stdin(self, frames: list[bytes]) -> None:
        request = self.session.decode(Channel.STDIN, frames)
        if request is not None:
            self.stdin.deliver(request)

    def _on_subscribe(self, topic: bytes) -> None:
        self.publisher.publish(
            "iopub_welcome", {"subscription": topic.decode(errors="replace")}, None, topic=topic
        )

    def _on_parent_exit(self) -> None:
        log.warning("the parent process exited; shutting down")
        self.request_exit()


def _watch_parent(parent_pid: int | None) -> tuple[int | None, bool]:
    """A pidfd that becomes readable when ``parent_pid`` exits (Linux), or (None, False)."""
    if not parent_pid or parent_pid == os.getpid():
        return None, False
    try:
        fd = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        log.warning("the parent process %d is already gone", parent_pid)
        os._exit(0)
    except (OSError, AttributeError):  # not Linux, or an old kernel: no watching
        return None, False
    return fd, True
