"""The kernel lifecycle state machine: its table, its events, supervision, mirrors."""

from __future__ import annotations

import pytest

from kernelyard.errors import InvalidState
from kernelyard.lifecycle import TRANSITIONS, Change, KernelEvent, KernelState, Lifecycle


def _recorded(life: Lifecycle) -> list[KernelEvent]:
    events: list[KernelEvent] = []
    life.subscribe(events.append)
    return events


def test_a_whole_life_is_announced_in_order() -> None:
    life = Lifecycle("k")
    events = _recorded(life)
    life.supervise(True)
    for change in (Change.START, Change.READY, Change.RESTART, Change.RESTARTED, Change.DIED):
        life.apply(change, "it crashed" if change is Change.DIED else "")
    life.apply(Change.RESTART)
    life.apply(Change.RESTARTED)
    life.apply(Change.SHUTDOWN, "culled")
    life.apply(Change.STOPPED, "culled")
    assert [e.change for e in events] == [
        Change.START,
        Change.READY,
        Change.RESTART,
        Change.RESTARTED,
        Change.DIED,
        Change.RESTART,
        Change.RESTARTED,
        Change.SHUTDOWN,
        Change.STOPPED,
    ]
    died = events[4]
    assert (died.previous, died.state, died.reason, died.will_restart) == (
        KernelState.RUNNING,
        KernelState.DEAD,
        "it crashed",
        True,
    )
    assert life.state is KernelState.STOPPED
    assert life.reason == "culled"


def test_a_death_nobody_supervises_is_given_up_at_once() -> None:
    life = Lifecycle("k")
    events = _recorded(life)
    life.apply(Change.START)
    life.apply(Change.READY)
    life.apply(Change.DIED, "exited with code 1")
    assert [(e.change, e.will_restart) for e in events[2:]] == [
        (Change.DIED, False),
        (Change.GAVE_UP, False),
    ]
    assert life.gone
    assert not life.alive
    life.apply(Change.RESTART)  # by hand it can still come back
    assert not life.gone
    assert life.state is KernelState.RESTARTING


def test_a_restarter_that_stops_supervising_a_dead_kernel_gives_it_up() -> None:
    life = Lifecycle("k")
    events = _recorded(life)
    life.supervise(True)
    life.apply(Change.START)
    life.apply(Change.READY)
    life.apply(Change.DIED, "killed")
    assert not life.gone
    life.supervise(False)
    assert events[-1].change is Change.GAVE_UP
    assert events[-1].reason == "killed"
    assert life.gone
    life.supervise(False)  # once only
    assert [e.change for e in events].count(Change.GAVE_UP) == 1


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], Change.READY),
        ([Change.START, Change.READY, Change.SHUTDOWN], Change.DIED),
        ([Change.STOPPED], Change.START),
        ([Change.START, Change.READY], Change.GAVE_UP),
    ],
)
def test_illegal_changes_raise(path: list[Change], illegal: Change) -> None:
    life = Lifecycle("k")
    for change in path:
        life.apply(change)
    assert not life.can(illegal)
    with pytest.raises(InvalidState, match=f"cannot {illegal.value}"):
        life.apply(illegal)


def test_nothing_revives_a_kernel_that_is_shutting_down_or_stopped() -> None:
    assert set(TRANSITIONS[KernelState.SHUTTING_DOWN].values()) == {KernelState.STOPPED}
    assert TRANSITIONS[KernelState.STOPPED] == {}
    for state, moves in TRANSITIONS.items():
        if KernelState.RESTARTING in moves.values():
            assert state in (KernelState.RUNNING, KernelState.DEAD)


def test_a_mirror_follows_events_and_a_broken_listener_hides_nothing() -> None:
    source, mirror = Lifecycle("k"), Lifecycle("k", KernelState.RUNNING)
    seen = _recorded(mirror)

    def broken(event: KernelEvent) -> None:
        raise RuntimeError("listener bug")

    source.subscribe(broken)
    source.subscribe(mirror.follow)
    source.apply(Change.START)
    source.apply(Change.READY)
    source.apply(Change.DIED, "segfault")
    assert mirror.state is KernelState.DEAD
    assert mirror.gone
    assert mirror.reason == "segfault"
    assert [e.change for e in seen] == [Change.START, Change.READY, Change.DIED, Change.GAVE_UP]
