from __future__ import annotations

import pytest

from kernelyard.errors import InvalidState
from kernelyard.manager import TRANSITIONS, KernelState, Lifecycle


def test_the_happy_path_and_the_change_callback() -> None:
    changes: list[tuple[KernelState, KernelState]] = []
    life = Lifecycle("k", lambda a, b: changes.append((a, b)))
    for state in (
        KernelState.STARTING,
        KernelState.RUNNING,
        KernelState.RESTARTING,
        KernelState.RUNNING,
        KernelState.DEAD,
        KernelState.RESTARTING,
        KernelState.RUNNING,
        KernelState.SHUTTING_DOWN,
        KernelState.STOPPED,
    ):
        life.move(state)
    assert life.state is KernelState.STOPPED
    assert changes[0] == (KernelState.NEW, KernelState.STARTING)
    assert len(changes) == 9


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], KernelState.RUNNING),
        ([KernelState.STARTING, KernelState.RUNNING, KernelState.SHUTTING_DOWN], KernelState.DEAD),
        ([KernelState.STOPPED], KernelState.STARTING),
    ],
)
def test_illegal_moves_raise(path: list[KernelState], illegal: KernelState) -> None:
    life = Lifecycle("k")
    for state in path:
        life.move(state)
    assert not life.can_move(illegal)
    with pytest.raises(InvalidState, match=f"to {illegal.value}"):
        life.move(illegal)


def test_nothing_revives_a_kernel_that_is_shutting_down_or_stopped() -> None:
    assert TRANSITIONS[KernelState.SHUTTING_DOWN] == {KernelState.STOPPED}
    assert TRANSITIONS[KernelState.STOPPED] == frozenset()
    for state, targets in TRANSITIONS.items():
        if KernelState.RESTARTING in targets:
            assert state in (KernelState.RUNNING, KernelState.DEAD)
