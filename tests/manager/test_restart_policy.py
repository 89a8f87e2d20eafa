from __future__ import annotations

import pytest

from kernelyard.manager import RestartBudget


def test_exactly_restart_limit_attempts() -> None:
    budget = RestartBudget(restart_limit=3, stable_start_time=10)
    budget.died(now=0)
    assert [budget.next_attempt() for _ in range(4)] == [1, 2, 3, None]


def test_a_stable_run_earns_a_fresh_budget() -> None:
    budget = RestartBudget(restart_limit=2, stable_start_time=10)
    budget.died(0)
    assert budget.next_attempt() == 1
    budget.started(1)
    budget.died(5)  # died again quickly: the budget keeps counting
    assert budget.next_attempt() == 2
    budget.started(6)
    budget.died(100)  # up for a long time: a fresh budget
    assert budget.next_attempt() == 1


def test_zero_means_never_restart_and_negative_is_refused() -> None:
    assert RestartBudget(restart_limit=0).next_attempt() is None
    with pytest.raises(ValueError, match="restart_limit"):
        RestartBudget(restart_limit=-1)
