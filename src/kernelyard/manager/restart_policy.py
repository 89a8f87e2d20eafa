"""When to restart a dead kernel: a pure budget of attempts.

A kernel gets at most ``restart_limit`` restart attempts in a row. A kernel
that stayed up for ``stable_start_time`` seconds earns a fresh budget, so a
kernel that crashes once a day is always brought back, while one that dies at
every start is given up after exactly ``restart_limit`` attempts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestartBudget"]


@dataclass
class RestartBudget:
    restart_limit: int = 5
    stable_start_time: float = 10.0
    attempts: int = 0
    _started_at: float | None = None

    def __post_init__(self) -> None:
        if self.restart_limit < 0:
            raise ValueError("restart_limit must be 0 or more")

    def started(self, now: float) -> None:
        """The kernel is up (first start or a successful restart) at time ``now``."""
        self._started_at = now

    def died(self, now: float) -> None:
        """The kernel died at ``now``: a stable run since the last start resets the budget."""
        if self._started_at is not None and now - self._started_at >= self.stable_start_time:
            self.attempts = 0
        self._started_at = None

    def next_attempt(self) -> int | None:
        """Spend one attempt and return its number (1-based), or None when none are left."""
        if self.attempts >= self.restart_limit:
            return None
        self.attempts += 1
        return self.attempts
