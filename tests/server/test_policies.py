from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kernelyard import errors
from kernelyard.server.activity import Activity, should_cull
from kernelyard.server.ratelimit import RatePacer
from kernelyard.server.status import status_for
from kernelyard.wire import V1_SUBPROTOCOL, choose_subprotocol

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_activity_follows_jupyter_servers_rules() -> None:
    activity = Activity(last_activity=T0)
    later = T0 + timedelta(seconds=5)
    activity.on_iopub("status", "kernel_info_request", "busy", later)
    assert activity.execution_state == "idle"  # first status after start, untracked parent
    assert activity.last_activity == T0  # probes are not activity
    activity.on_iopub("status", "execute_request", "busy", later)
    assert (activity.execution_state, activity.last_activity) == ("busy", later)
    evenlater = later + timedelta(seconds=1)
    activity.on_iopub("stream", "execute_request", None, evenlater)
    assert activity.last_activity == evenlater
    activity.on_iopub("status", "execute_request", "idle", evenlater)
    quiet = Activity(last_activity=T0, execution_state="idle")
    quiet.on_iopub("stream", "comm_info_request", None, later)
    assert quiet.last_activity == T0


@pytest.mark.parametrize(
    ("state", "connections", "busy_ok", "connected_ok", "expected"),
    [
        ("idle", 0, False, False, True),
        ("busy", 0, False, False, False),
        ("busy", 0, True, False, True),
        ("idle", 2, False, False, False),
        ("idle", 2, False, True, True),
        ("dead", 2, False, False, True),
    ],
)
def test_culling_decision(
    state: str, connections: int, busy_ok: bool, connected_ok: bool, expected: bool
) -> None:
    verdict = should_cull(
        state,
        T0,
        now=T0 + timedelta(seconds=61),
        idle_timeout=60,
        connections=connections,
        cull_busy=busy_ok,
        cull_connected=connected_ok,
    )
    assert verdict is expected
    fresh = should_cull(
        "starting",
        T0,
        now=T0,
        idle_timeout=60,
        connections=0,
        cull_busy=True,
        cull_connected=True,
    )
    assert fresh is False


def test_pacer_holds_off_until_the_window_slides() -> None:
    pacer = RatePacer(msg_rate=10, data_rate=0, window=1.0)
    for i in range(10):
        assert pacer.delay(i * 0.01) == 0
        pacer.record(i * 0.01, 1, 0)
    wait = pacer.delay(0.1)
    assert 0 < wait <= 1.0
    assert pacer.limited
    assert pacer.delay(0.1 + wait + 0.01) == 0
    pacer.record(2.0, 0, 5_000_000)
    data = RatePacer(msg_rate=0, data_rate=1000, window=1.0)
    data.record(0, 0, 5000)
    assert data.delay(0.5) > 0
    data.reset()
    assert data.delay(0.5) == 0


def test_v1_only_when_offered_and_allowed() -> None:
    assert choose_subprotocol([V1_SUBPROTOCOL], None) == V1_SUBPROTOCOL
    assert choose_subprotocol([], None) is None
    assert choose_subprotocol(["other"], None) is None
    assert choose_subprotocol([V1_SUBPROTOCOL], "") is None


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NoSuchKernel("k"), 404),
        (errors.NoSuchKernelSpec("x"), 404),
        (errors.RequestRejected(403, "limit"), 403),
        (errors.InvalidState("s"), 409),
        (errors.ReplyTimeout("t"), 504),
        (errors.LaunchError("l"), 500),
        (ValueError("?"), 500),
    ],
)
def test_every_error_has_a_status(error: BaseException, status: int) -> None:
    code, message = status_for(error)
    assert code == status
    assert message
