"""Output written below Python, to file descriptors 1 and 2, reaches the frontend.

``print`` goes through ``sys.stdout`` (:mod:`.streams`). A subprocess
(``os.system``, ``subprocess.run`` without capture), a C extension or
``os.write(1, ...)`` writes to the process's descriptors 1 and 2 instead.
:class:`FdCapture` points both at pipes; its thread (``kernelyard-fd-capture``)
reads them and publishes what arrives as stream output of the request the
code runs for (the main shell's execute, for threads and processes that have
no request of their own, as ipykernel does). What reaches descriptor 2 is
also copied to the original one, so the launcher's log still shows errors
written below Python (a crash in a C extension, say).

An execute drains the pipes before its reply (:meth:`FdCapture.drain`): what
a finished subprocess wrote comes before the reply, not after it. Text is
decoded as UTF-8 incrementally (a character split across two writes arrives
whole); undecodable bytes become U+FFFD.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import logging
import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from kernelyard.kernel.context import RequestContext
from kernelyard.kernel.publisher import Publisher

__all__ = ["FdCapture"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
#: Linux's default cap for an unprivileged process (/proc/sys/fs/pipe-max-size).
_PIPE_SIZE = 1 << 20


@dataclass
class _Captured:
    name: str  # "stdout" or "stderr"
    fd: int  # 1 or 2: now the write end of the pipe
    original: int  # a copy of what ``fd`` was
    read_end: int
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )


class FdCapture:
    """Captures descriptors 1 and 2 from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        publisher: Publisher,
        requests: RequestContext,
        *,
        on_thread: Callable[[threading.Thread], object] = lambda thread: None,
    ) -> None:
        self._publisher = publisher
        self._requests = requests
        self._on_thread = on_thread
        self._captured: list[_Captured] = []
        self._lock = threading.Lock()  # one reader of a pipe at a time
        self._by_fd: dict[int, _Captured] = {}
        self._ready = select.poll()  # for drain(); the thread polls with its own
        self._stop_r, self._stop_w = -1, -1
        self._thread: threading.Thread | None = None

    def open_original_stderr(self) -> TextIO:
        """A text stream to what descriptor 2 was before :meth:`start` (for the kernel's log).

        It has a descriptor of its own, so it stays usable after :meth:`stop`.
        """
        original = next((c.original for c in self._captured if c.fd == 2), 2)
        return open(os.dup(original), "w", buffering=1, encoding="utf-8", errors="replace")

    def start(self) -> None:
        """Point descriptors 1 and 2 at pipes and start reading them."""
        for name, fd in (("stdout", 1), ("stderr", 2)):
            read_end, write_end = os.pipe()  # neither end inherited by subprocesses
            # A C extension that writes while it holds the GIL blocks on a full pipe
            # that this thread cannot drain without the GIL: a roomy pipe makes that rare.
            with contextlib.suppress(OSError, AttributeError):  # capped, or not Linux
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            original = os.dup(fd)
            os.dup2(write_end, fd)  # fd itself stays inheritable: subprocesses write to it
            os.close(write_end)
            os.set_blocking(read_end, False)
            self._captured.append(_Captured(name, fd, original, read_end))
            self._by_fd[read_end] = self._captured[-1]
            self._ready.register(read_end, select.POLLIN)
        self._stop_r, self._stop_w = os.pipe()
        thread = threading.Thread(target=self._run, name="kernelyard-fd-capture", daemon=True)
        self._on_thread(thread)
        self._thread = thread
        thread.start()

    def drain(self) -> None:
        """Publish what the pipes hold now, from the calling thread (it does not wait).

        One ``poll`` when the pipes are empty, as they are after most cells.
        """
        for fd, _ in self._ready.poll(0):
            self._read(self._by_fd[fd])

    def stop(self) -> None:
        """Publish what is left, give the descriptors back, end the thread (idempotent)."""
        if self._thread is None:
            return
        os.write(self._stop_w, b"\0")
        self._thread.join(2.0)
        self._thread = None
        self.drain()
        for captured in self._captured:
            self._ready.unregister(captured.read_end)
            os.dup2(captured.original, captured.fd)
            os.close(captured.original)
            os.close(captured.read_end)
        self._captured = []
        self._by_fd = {}
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _run(self) -> None:
        poller = select.poll()
        by_fd = dict(self._by_fd)
        for read_end in by_fd:
            poller.register(read_end, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self._stop_r:
                    return
                self._read(by_fd[fd])

    def _read(self, captured: _Captured) -> None:
        while True:
            with self._lock:  # read and publish in one step: chunks stay in order
                try:
                    data = os.read(captured.read_end, _CHUNK)
                except OSError:  # BlockingIOError: empty; or closed under us by stop()
                    return
                if not data:
                    return
                text = captured.decoder.decode(data)
                if text:
                    request = self._requests.get()
                    self._publisher.stream(
                        captured.name, text, request.msg if request is not None else None
                    )
            if captured.fd == 2:  # outside the lock: a slow log must not hold up a drain
                with contextlib.suppress(OSError):
                    os.write(captured.original, data)
