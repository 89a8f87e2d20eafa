"""Gateway mode in process: an upstream server on a FakeBackend, and what talks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kernelyard.gateway import GatewayBackend, GatewaySettings

from ..server.conftest import Served, serving


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings_for(upstream: Served, **knobs: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "url": upstream.url.rstrip("/"),
        "auth_token": upstream.token,
        "retry_interval": 0.05,
        "retry_interval_max": 0.2,
    }
    return GatewaySettings(**{**values, **knobs})


@asynccontextmanager
async def gateway_to(upstream: Served, **knobs: Any) -> AsyncIterator[GatewayBackend]:
    async with GatewayBackend(settings_for(upstream, **knobs), environ={}) as backend:
        yield backend


@pytest.fixture
async def upstream() -> AsyncIterator[Served]:
    async with serving() as running:
        yield running
