"""Shared fixtures, hypothesis settings, and the in-loop bound of every async test."""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, settings

from .helpers import MakeSpec, make_spec_dir

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def make_spec() -> MakeSpec:
    """``make_spec(base, name, **fields)`` writes ``base/name/kernel.json``."""
    return make_spec_dir


# -- timeouts ------------------------------------------------------------------------------
#
# pytest-timeout (thread method, pyproject.toml) is the backstop: it dumps every
# thread's stack and ends the run, so a stuck test never hangs CI. Before it, an
# async test's body is cancelled in its own event loop (TimeoutError at the await
# that is stuck), so the test fails alone, its fixtures tear down, and the run goes
# on. The body gets what is left of the item's timeout after setup, less a margin
# for the teardown.

_STARTED = pytest.StashKey[float]()


def _item_timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.monotonic()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return
    timeout = _item_timeout(pyfuncitem)
    elapsed = time.monotonic() - pyfuncitem.stash.get(_STARTED, time.monotonic())
    limit = max(1.0, timeout - elapsed - min(5.0, timeout / 5))
    pyfuncitem.obj = _bounded(func, limit)


def _bounded(func: Callable[..., Awaitable[Any]], limit: float) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(func)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        reason = f"the test body ran {limit:.1f} s: its timeout less setup and a teardown margin"
        with anyio.fail_after(limit, reason=reason):
            return await func(*args, **kwargs)

    return bounded
