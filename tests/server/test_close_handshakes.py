"""Closing handshakes are answered at once, whatever a client sent and whatever the
kernel is doing (here on a FakeBackend; tests/integration runs it on our kernel).
"""

from __future__ import annotations

import pytest

from ..wsclient import close_handshakes_under_load
from .conftest import Served

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


async def test_every_close_is_answered_while_another_client_is_busy(served: Served) -> None:
    kid = await served.start()
    seen = await close_handshakes_under_load(served, kid, connections=50)
    assert seen.unanswered == []
    assert seen.answered == 50
    assert seen.slowest_close < 1.0
    assert seen.busy_replies >= 5  # the busy client was served all along
