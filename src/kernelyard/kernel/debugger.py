"""The kernel's debugger: JupyterLab's visual debugger, over debugpy (JEP 47, 92, 93).

A ``debug_request`` carries a Debug Adapter Protocol request; its
``debug_reply`` carries the DAP response, and the adapter's events reach the
frontend as ``debug_event`` on IOPub. The control thread hands every
``debug_request`` to :class:`Debugger`, which serves them on a thread of its
own (``kernelyard-debugger``, started by the first one) with an asyncio
loop, one request at a time, in arrival order: a request that waits for the
adapter never delays an interrupt or a shutdown on control.

The work is shared out so:

* :mod:`.dap_requests` answers each DAP request, itself or through the adapter;
* :mod:`.debug_session` holds the link to debugpy's adapter and follows its
  events (stopped threads, breakpoints);
* :mod:`.debugpy_server` starts debugpy in this process and keeps it off the
  kernel's own threads;
* :mod:`.cell_files` writes the cells that breakpoints are set in.

No user code runs on the debugger's thread: it reads user objects on the
main shell's loop, or asks debugpy, which evaluates on the stopped thread.
Every failure is a DAP response with ``success: false`` and a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

from kernelyard.kernel.cell_files import CellFiles
from kernelyard.kernel.dap_link import DapMessage
from kernelyard.kernel.dap_requests import DapRequests
from kernelyard.kernel.debug_session import DebugSession
from kernelyard.kernel.debugpy_server import debugpy_available, do_not_trace
from kernelyard.kernel.session import Request

if TYPE_CHECKING:
    from kernelyard.kernel.dap import CellNames
    from kernelyard.kernel.services import DebuggerServices

__all__ = ["Debugger"]


class Debugger:
    """Serves one kernel's ``debug_request`` messages; see the module docstring."""

    def __init__(self, services: DebuggerServices) -> None:
        self._services = services
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._cell_files = CellFiles()
        self._session = DebugSession(self._publish_event)
        self._requests = DapRequests(services, self._session, self._cell_files)

    @property
    def available(self) -> bool:
        """Whether this kernel can debug: debugpy is installed (checked once)."""
        return debugpy_available()

    @property
    def cells(self) -> CellNames:
        """The cells' file names (made on first use: nothing of it is on the start path)."""
        return self._cell_files.names

    # -- any thread --------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Serve ``request`` (a debug_request) on the debugger's thread; from the control thread."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = do_not_trace(
                threading.Thread(target=self._run, name="kernelyard-debugger", daemon=True)
            )
            self._thread.start()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, request)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving, close the adapter connection, remove the dumped cells."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed already
                loop.call_soon_threadsafe(self._queue.put_nowait, None)
            thread.join(timeout)
        self.remove_cells()

    def remove_cells(self) -> None:
        """Remove the cells ``dumpCell`` wrote (any thread; again is harmless)."""
        self._cell_files.remove()

    # -- the debugger's thread -------------------------------------------------------

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        while (request := await self._queue.get()) is not None:
            publisher = self._services.publisher
            publisher.status("busy", request.msg)
            try:
                reply = await self._requests.respond(request.content)
                self._services.send_reply(request, reply)
            finally:
                publisher.status("idle", request.msg)
        await self._session.close()

    def _publish_event(self, event: DapMessage) -> None:
        self._services.publisher.publish("debug_event", event, None)
