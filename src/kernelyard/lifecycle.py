"""The lifecycle of one kernel: the one state machine every layer asks (pure).

A kernel's life is a sequence of :class:`Change` s; :data:`TRANSITIONS` says,
for each :class:`KernelState`, which changes may happen and where they lead
(h11's event-triggered transitions, as data). Anything else raises
InvalidState. Every applied change is announced to the listeners as a
:class:`KernelEvent`, in order and synchronously, so nobody polls and nobody
misses a death that was undone before it looked.

Rules, each a consequence of the table:

* a kernel that is SHUTTING_DOWN or STOPPED is never revived;
* RESTARTING is entered from RUNNING (a restart by hand) or DEAD (a restart
  after a death, by the restarter or by hand);
* a death is "for good" once :attr:`Change.GAVE_UP` follows it: at once when
  no restarter supervises the kernel (:attr:`Lifecycle.supervised`), or when
  the restarter runs out of attempts or stops supervising. A restart by hand
  can still bring such a kernel back.

The manager moves the machine; channels, the restarter and the server
subscribe to it, and the server's REST model derives ``execution_state`` and
``reason`` from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from kernelyard.errors import InvalidState

__all__ = ["TRANSITIONS", "Change", "KernelEvent", "KernelState", "Lifecycle", "Listener"]

log = logging.getLogger(__name__)


class KernelState(Enum):
    NEW = "new"  # not started yet
    STARTING = "starting"  # process launched, not answering yet
    RUNNING = "running"  # answered; serving requests
    RESTARTING = "restarting"  # stopping and starting again
    DEAD = "dead"  # exited (or stopped answering) without being asked to
    SHUTTING_DOWN = "shutting_down"  # stopping on purpose
    STOPPED = "stopped"  # gone for good; files cleaned up


class Change(Enum):
    """Something that happened to a kernel."""

    START = "start"  # its process is being launched
    READY = "ready"  # it answered for the first time
    DIED = "died"  # it exited, or stopped answering, unasked (or a restart failed)
    RESTART = "restart"  # a restart begins (by hand, or by the restarter after a death)
    RESTARTED = "restarted"  # it answers again after a restart
    GAVE_UP = "gave_up"  # nobody will restart it: dead for good
    SHUTDOWN = "shutdown"  # it is being stopped on purpose (the reason says why)
    STOPPED = "stopped"  # it is gone and its files are removed


_LIVE = (KernelState.NEW, KernelState.STARTING, KernelState.RUNNING, KernelState.RESTARTING)

#: state -> {change: next state}: every legal move, and only those.
TRANSITIONS: dict[KernelState, dict[Change, KernelState]] = {
    KernelState.NEW: {Change.START: KernelState.STARTING, Change.STOPPED: KernelState.STOPPED},
    KernelState.STARTING: {
        Change.READY: KernelState.RUNNING,
        Change.DIED: KernelState.DEAD,
        Change.SHUTDOWN: KernelState.SHUTTING_DOWN,
    },
    KernelState.RUNNING: {
        Change.RESTART: KernelState.RESTARTING,
        Change.DIED: KernelState.DEAD,
        Change.SHUTDOWN: KernelState.SHUTTING_DOWN,
    },
    KernelState.RESTARTING: {
        Change.RESTARTED: KernelState.RUNNING,
        Change.DIED: KernelState.DEAD,
        Change.SHUTDOWN: KernelState.SHUTTING_DOWN,
    },
    KernelState.DEAD: {
        Change.RESTART: KernelState.RESTARTING,
        Change.GAVE_UP: KernelState.DEAD,
        Change.SHUTDOWN: KernelState.SHUTTING_DOWN,
    },
    KernelState.SHUTTING_DOWN: {Change.STOPPED: KernelState.STOPPED},
    KernelState.STOPPED: {},
}


@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One applied change. ``reason`` says why (a death's cause, "culled", ...);
    ``will_restart`` is set on DIED when a restarter is going to try.
    """

    kernel_id: str
    change: Change
    previous: KernelState
    state: KernelState
    reason: str = ""
    will_restart: bool = False


Listener = Callable[[KernelEvent], None]


class Lifecycle:
    """The state of one kernel and the only way to change it."""

    def __init__(self, kernel_id: str, state: KernelState = KernelState.NEW) -> None:
        """``state`` other than NEW is for a mirror (see :meth:`follow`)."""
        self.kernel_id = kernel_id
        self.state = state
        #: Why the kernel is in its state, when that needs saying (a death, a cull).
        self.reason = ""
        #: Whether a restarter will try to undo a death (see :meth:`supervise`).
        self.supervised = False
        #: True while DEAD after GAVE_UP: nothing will bring it back by itself.
        self.gone = False
        self._listeners: list[Listener] = []

    def can(self, change: Change) -> bool:
        return change in TRANSITIONS[self.state]

    def apply(self, change: Change, reason: str = "") -> KernelEvent:
        """Make ``change`` happen; illegal ones raise InvalidState. A death nobody
        supervises is followed at once by GAVE_UP.
        """
        target = TRANSITIONS[self.state].get(change)
        if target is None:
            raise InvalidState(
                f"kernel {self.kernel_id} is {self.state.value}: it cannot {change.value}"
            )
        event = KernelEvent(
            self.kernel_id,
            change,
            self.state,
            target,
            reason,
            will_restart=change is Change.DIED and self.supervised,
        )
        self._record(event)
        if change is Change.DIED and not self.supervised:
            self.apply(Change.GAVE_UP, reason)
        return event

    def follow(self, event: KernelEvent) -> None:
        """Mirror an event applied to the kernel's own lifecycle elsewhere (across the
        backend seam): take its state and reason, tell the listeners.
        """
        self._record(event)

    def _record(self, event: KernelEvent) -> None:
        self.state = event.state
        self.gone = event.change is Change.GAVE_UP
        if event.reason or event.change in (Change.READY, Change.RESTARTED, Change.START):
            self.reason = event.reason
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken listener must not hide the change from others
                log.exception("kernel %s: a lifecycle listener failed", self.kernel_id)

    def supervise(self, supervised: bool) -> None:
        """A restarter starts (True) or stops (False) supervising. Stopping while the
        kernel is dead and not yet given up gives it up.
        """
        self.supervised = supervised
        if not supervised and self.state is KernelState.DEAD and not self.gone:
            self.apply(Change.GAVE_UP, self.reason)

    @property
    def alive(self) -> bool:
        """Whether the kernel may still serve (not dead, not stopping, not stopped)."""
        return self.state in _LIVE

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe
