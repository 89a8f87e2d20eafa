"""The lifecycle of one kernel as an explicit state machine.

Every legal move is in :data:`TRANSITIONS`; anything else raises InvalidState.
Rule: a kernel that is SHUTTING_DOWN or STOPPED is never revived, and the
restarter only acts on a kernel that is DEAD.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from kernelyard.errors import InvalidState

__all__ = ["TRANSITIONS", "KernelState", "Lifecycle"]


class KernelState(Enum):
    NEW = "new"  # not started yet
    STARTING = "starting"  # process launched, not answering yet
    RUNNING = "running"  # answered; serving requests
    RESTARTING = "restarting"  # stopping and starting again on purpose
    DEAD = "dead"  # exited (or stopped answering) without being asked to
    SHUTTING_DOWN = "shutting_down"  # stopping on purpose
    STOPPED = "stopped"  # gone for good; files cleaned up


TRANSITIONS: dict[KernelState, frozenset[KernelState]] = {
    KernelState.NEW: frozenset({KernelState.STARTING, KernelState.STOPPED}),
    KernelState.STARTING: frozenset(
        {KernelState.RUNNING, KernelState.DEAD, KernelState.SHUTTING_DOWN}
    ),
    KernelState.RUNNING: frozenset(
        {KernelState.RESTARTING, KernelState.DEAD, KernelState.SHUTTING_DOWN}
    ),
    KernelState.RESTARTING: frozenset(
        {KernelState.RUNNING, KernelState.DEAD, KernelState.SHUTTING_DOWN}
    ),
    KernelState.DEAD: frozenset({KernelState.RESTARTING, KernelState.SHUTTING_DOWN}),
    KernelState.SHUTTING_DOWN: frozenset({KernelState.STOPPED}),
    KernelState.STOPPED: frozenset(),
}


class Lifecycle:
    """Holds the current state and allows only the moves in TRANSITIONS."""

    def __init__(
        self, kernel_id: str, on_change: Callable[[KernelState, KernelState], None] | None = None
    ) -> None:
        self.kernel_id = kernel_id
        self.state = KernelState.NEW
        self._on_change = on_change

    def can_move(self, to: KernelState) -> bool:
        return to in TRANSITIONS[self.state]

    def move(self, to: KernelState) -> KernelState:
        """Move to ``to``; returns the previous state. Illegal moves raise InvalidState."""
        if to not in TRANSITIONS[self.state]:
            raise InvalidState(
                f"kernel {self.kernel_id}: cannot go from {self.state.value} to {to.value}"
            )
        previous, self.state = self.state, to
        if self._on_change is not None:
            self._on_change(previous, to)
        return previous
