"""Interrupts: one owner of SIGINT and of what an interrupt leaves behind.

An interrupt reaches the kernel one of two ways (the kernelspec's
``interrupt_mode``):

signal mode
    The kernel manager sends the process SIGINT.
message mode
    An ``interrupt_request`` arrives on control, and the control thread calls
    :meth:`Interrupts.interrupt`, which sends SIGINT to the main thread.

Either way the same handler runs, on the main thread (CPython runs signal
handlers there, between two bytecodes of whatever it runs), and does the
same, shell by shell:

* A cell that awaits (its loop waits for I/O) has its task cancelled.
* A cell that runs gets KeyboardInterrupt: the main shell's is raised by the
  handler itself, so in the cell's own code; a subshell's is raised
  asynchronously in its thread, at its next bytecode (a blocking C call,
  ``time.sleep`` say, returns first).
* A shell that runs no cell is left alone: an interrupt is for cells.

An interrupt is *pending* from the moment it arrives until the next cell
starts (:meth:`Interrupts.cell_starts`). While one is, a cell that ended in
CancelledError was cancelled by it, and the shell reports the
KeyboardInterrupt the user asked for instead.

A signal can come too early to cut a blocking call short: between the
interpreter's last check and the start of the call (``time.sleep``'s
syscall), the handler only runs once the call returns. So in message mode,
if the handler has not run RESEND_AFTER seconds later while the same cell
still executes, the main thread is signalled again; that one interrupts the
call. (Measured on a loaded machine before this: 8 of 60 interrupts sent
right after a cell's first output waited out a 6 s sleep.)
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kernelyard.kernel.worker import ShellWorker

__all__ = ["RESEND_AFTER", "Interrupts"]

#: Seconds after which a message-mode interrupt whose handler has not run is sent again.
RESEND_AFTER = 0.1


class Interrupts:
    """The kernel's interrupt state and its SIGINT handler; see the module docstring.

    ``main`` is the main shell's worker; ``subshells`` lists the subshells'
    workers at the moment it is called (from the handler, on the main thread).
    """

    def __init__(self, main: ShellWorker, subshells: Callable[[], Iterable[ShellWorker]]) -> None:
        self._main = main
        self._subshells = subshells
        self._pending = False
        self._cells = 0  # cells started so far: a resend never reaches a later cell
        self._handled = 0  # SIGINTs handled so far: a resend only for one not handled

    @property
    def pending(self) -> bool:
        """Whether an interrupt arrived since the latest cell started."""
        return self._pending

    def install(self) -> None:
        """Handle SIGINT from now on (main thread: only it may install signal handlers)."""
        signal.signal(signal.SIGINT, self._on_sigint)

    def interrupt(self) -> None:
        """Message mode: interrupt as SIGINT does (any thread; ``interrupt_request``),
        and once more if the first signal came too early (see the module docstring).
        """
        handled, cell = self._handled, self._cells
        _signal_main_thread()
        if self._main.executing:
            resend = threading.Timer(RESEND_AFTER, self._resend_if_lost, args=(handled, cell))
            resend.daemon = True
            resend.start()

    def _resend_if_lost(self, handled: int, cell: int) -> None:
        if self._handled == handled and self._cells == cell and self._main.executing:
            _signal_main_thread()

    def cell_starts(self) -> None:
        """A cell begins (on its shell's thread): earlier interrupts are no longer pending."""
        self._pending = False
        self._cells += 1

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT: cancel awaited cells, raise KeyboardInterrupt into running ones."""
        self._pending = True
        self._handled += 1
        for worker in self._subshells():
            _interrupt_subshell(worker)
        main = self._main
        if main.waiting:
            main.cancel_execute()
        elif main.executing:
            raise KeyboardInterrupt


def _signal_main_thread() -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def _interrupt_subshell(worker: ShellWorker) -> None:
    """Interrupt a subshell's cell from the main thread."""
    if worker.waiting:
        worker.cancel_execute()
    elif worker.executing and worker.thread_id is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.thread_id), ctypes.py_object(KeyboardInterrupt)
        )
