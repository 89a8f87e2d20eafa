"""What each part of the kernel may ask of the kernel: one small Protocol per part.

:class:`~kernelyard.kernel.kernel.Kernel` puts the parts together and hands
itself to each as that part's services; it implements every protocol here
structurally, and mypy checks that where it hands itself over. A part sees
its own protocol only, so what it depends on is written down here, with the
threads each member may be used from.

===============================  ===========================================
part                             its services
===============================  ===========================================
shell workers, shell handlers    :class:`ShellServices`
the control thread               :class:`ControlServices`
the debugger                     :class:`DebuggerServices`
``input()`` and ``getpass()``    :class:`StdinServices`
comms                            :class:`CommServices`
the IPython shell                :class:`IPythonServices`
===============================  ===========================================

Members are read-only properties: a part uses the objects it is given and
never replaces them. This module imports nothing at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from comm.base_comm import CommManager

    from kernelyard.kernel.context import RequestContext
    from kernelyard.kernel.debugger import Debugger
    from kernelyard.kernel.fdcapture import FdCapture
    from kernelyard.kernel.interrupts import Interrupts
    from kernelyard.kernel.publisher import Publisher
    from kernelyard.kernel.session import KernelSession, Request
    from kernelyard.kernel.subshells import Subshells
    from kernelyard.wire.channel import Channel
    from kernelyard.wire.frame import Frames

__all__ = [
    "CommServices",
    "ControlServices",
    "DebuggerServices",
    "FrameSink",
    "IPythonServices",
    "RequestServices",
    "ShellServices",
    "StdinServices",
]


class RequestServices(Protocol):
    """What every part that serves requests needs: IOPub and the way back to the sender.

    Each request is bracketed by ``busy`` and ``idle`` status messages on
    :attr:`publisher`, with its reply (:meth:`send_reply`) in between.
    """

    @property
    def publisher(self) -> Publisher:
        """IOPub; from any thread, in order per thread."""
        ...

    def send_reply(self, request: Request, content: dict[str, Any]) -> None:
        """Answer ``request`` (``foo_request`` -> ``foo_reply``) to the peer that sent it;
        from any thread."""
        ...


class ShellServices(RequestServices, Protocol):
    """A shell worker's and its handlers' (:mod:`.worker`, :mod:`.handlers`).

    Used from the worker's own thread (the main thread for the main shell).
    """

    @property
    def requests(self) -> RequestContext:
        """Which request running code works for; the main shell's execute sets the fallback."""
        ...

    @property
    def fd_capture(self) -> FdCapture:
        """Output written to descriptors 1 and 2: an execute drains it before its reply."""
        ...

    @property
    def interrupts(self) -> Interrupts:
        """An execute tells it when its cell starts (interrupts before then are done with)."""
        ...

    @property
    def comms(self) -> CommManager:
        """The comm manager: there once :meth:`shell` has returned."""
        ...

    def kernel_info(self) -> dict[str, Any]:
        """The ``kernel_info_reply`` content (pure, any thread)."""
        ...

    async def shell(self) -> Any:
        """The IPython shell, waiting (on the calling worker's loop) until it is created."""
        ...


class ControlServices(RequestServices, Protocol):
    """The control thread's (:mod:`.control`): never blocked by user code, so none of
    these may wait for a shell."""

    @property
    def interrupts(self) -> Interrupts:
        """``interrupt_request`` calls its ``interrupt()`` (message mode)."""
        ...

    @property
    def subshells(self) -> Subshells:
        """The subshell requests of JEP 91 create, delete and list them here."""
        ...

    @property
    def debugger(self) -> Debugger:
        """``debug_request`` goes to its ``submit()``; shutdown calls ``remove_cells()``."""
        ...

    def kernel_info(self) -> dict[str, Any]:
        """The ``kernel_info_reply`` content (pure, any thread)."""
        ...

    def request_exit(self) -> None:
        """Stop the kernel (returns at once; the process exits soon after)."""
        ...


class DebuggerServices(RequestServices, Protocol):
    """The debugger's (:mod:`.debugger`), used from the debugger's own thread."""

    @property
    def main_loop(self) -> asyncio.AbstractEventLoop:
        """The main shell's loop. What is handed to it (``call_soon_threadsafe``) runs on
        the thread that runs cells, after a running cell: where user objects are read."""
        ...

    async def shell(self) -> Any:
        """The IPython shell, waiting (on the debugger's loop) until it is created."""
        ...


class FrameSink(Protocol):
    """Where a message's frames go out (the I/O thread's sockets)."""

    def send(self, channel: Channel, frames: Frames) -> None:
        """Queue ``frames`` for ``channel``, waking the I/O thread now; any thread."""
        ...


class StdinServices(Protocol):
    """``input()``'s and ``getpass()``'s (:mod:`.stdin`), from whichever thread asks."""

    @property
    def requests(self) -> RequestContext:
        """Whose client is asked: the request the calling code works for."""
        ...

    @property
    def publisher(self) -> Publisher:
        """Flushed before the prompt, so the prompt shows below what was printed."""
        ...

    @property
    def session(self) -> KernelSession:
        """Builds and signs the ``input_request``."""
        ...

    @property
    def sockets(self) -> FrameSink:
        """Sends the ``input_request`` at once: the asking thread then blocks for the
        answer, so nothing may hold the request back until that thread goes idle."""
        ...


class CommServices(Protocol):
    """The comms' (:mod:`.comms`), from any thread that sends a comm message."""

    @property
    def requests(self) -> RequestContext:
        """A comm message's parent: the request the sending code works for."""
        ...

    @property
    def publisher(self) -> Publisher:
        """Where comm messages go (IOPub)."""
        ...


class IPythonServices(Protocol):
    """The IPython shell's (:mod:`.shell`): its display hook, display publisher and
    traceback handler, from any thread that runs user code."""

    @property
    def requests(self) -> RequestContext:
        """Output goes to the request the running code works for."""
        ...

    @property
    def publisher(self) -> Publisher:
        """Results, displays and errors go out here (IOPub)."""
        ...

    @property
    def interrupts(self) -> Interrupts:
        """Whether an interrupt is ``pending``: then a cancelled cell was interrupted."""
        ...

    @property
    def debugger(self) -> Debugger:
        """When it is ``available``, cells are compiled under its ``cells`` file names."""
        ...
