"""Activity and execution state of a served kernel, by jupyter_server's rules (pure).

``last_activity`` moves when an IOPub message's type or its parent's type is
tracked (not in :data:`UNTRACKED_MESSAGE_TYPES`), or while the kernel is
busy; so polling, probes and output alone do not keep a kernel alive.
``execution_state`` follows ``status`` messages answering tracked requests;
the first status after start becomes ``idle`` whatever it answered. (The
REST model shows it while the kernel runs; otherwise the kernel's lifecycle
says what to show, see :func:`~kernelyard.server.policy.execution_state`.)
:func:`should_cull` is the culler's verdict on one kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["UNTRACKED_MESSAGE_TYPES", "Activity", "should_cull"]

#: jupyter_server's default ``untracked_message_types``.
UNTRACKED_MESSAGE_TYPES = frozenset(
    {
        "comm_info_request",
        "comm_info_reply",
        "kernel_info_request",
        "kernel_info_reply",
        "shutdown_request",
        "shutdown_reply",
        "interrupt_request",
        "interrupt_reply",
        "debug_request",
        "debug_reply",
        "stream",
        "display_data",
        "update_display_data",
        "execute_input",
        "execute_result",
        "error",
        "status",
        "clear_output",
        "debug_event",
        "input_request",
        "input_reply",
    }
)


@dataclass(slots=True)
class Activity:
    """What the server shows of a kernel's activity in its model."""

    last_activity: datetime
    execution_state: str = "starting"

    def on_iopub(
        self, msg_type: str, parent_type: str | None, state: str | None, now: datetime
    ) -> None:
        """Account for one IOPub message (``state``: a status message's execution_state)."""
        if (
            msg_type not in UNTRACKED_MESSAGE_TYPES
            or parent_type not in UNTRACKED_MESSAGE_TYPES
            or self.execution_state == "busy"
        ):
            self.last_activity = now
        if msg_type == "status" and state is not None:
            if parent_type not in UNTRACKED_MESSAGE_TYPES:
                self.execution_state = state
            elif self.execution_state == "starting" and state != "starting":
                self.execution_state = "idle"


def should_cull(
    execution_state: str,
    last_activity: datetime,
    *,
    now: datetime,
    idle_timeout: float,
    connections: int,
    cull_busy: bool,
    cull_connected: bool,
) -> bool:
    """Whether the culler should shut the kernel down now (dead kernels always go)."""
    if execution_state == "dead":
        return True
    if idle_timeout <= 0:
        return False
    return (
        now - last_activity > timedelta(seconds=idle_timeout)
        and (cull_busy or execution_state != "busy")
        and (cull_connected or connections == 0)
    )
