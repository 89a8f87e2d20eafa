"""IOPub pacing per connection (pure): jupyter_server's limits, without the data loss.

jupyter_server drops IOPub messages once a connection exceeds its message or
data rate over a sliding window. We pace instead: :meth:`RatePacer.delay`
says how long to hold off; meanwhile the connection's output keeps piling up
in the replay log, where consecutive stream chunks are merged, so the client
later gets the same text in fewer, larger messages. ``status``,
``comm_open`` and ``execute_input`` are exempt from the message count, and
only ``stream`` messages count toward the data rate, as in jupyter_server.
"""

from __future__ import annotations

from collections import deque

__all__ = ["EXEMPT_MESSAGE_TYPES", "RatePacer"]

EXEMPT_MESSAGE_TYPES = frozenset({"status", "comm_open", "execute_input"})


class RatePacer:
    """Sliding-window accounting of messages and stream bytes sent to one client."""

    def __init__(self, *, msg_rate: float, data_rate: float, window: float) -> None:
        self.window = max(window, 1e-3)
        self.max_messages = msg_rate * self.window if msg_rate > 0 else float("inf")
        self.max_bytes = data_rate * self.window if data_rate > 0 else float("inf")
        self._sent: deque[tuple[float, int, int]] = deque()  # (time, messages, bytes)
        self._messages = 0
        self._bytes = 0
        #: Whether the last check found the connection over a limit.
        self.limited = False

    def record(self, now: float, messages: int, data: int) -> None:
        """Account for ``messages`` counted messages carrying ``data`` stream bytes."""
        if messages or data:
            self._sent.append((now, messages, data))
            self._messages += messages
            self._bytes += data

    def delay(self, now: float) -> float:
        """Seconds to wait before sending more (0: send now)."""
        sent = self._sent
        horizon = now - self.window
        while sent and sent[0][0] <= horizon:
            _, messages, data = sent.popleft()
            self._messages -= messages
            self._bytes -= data
        if self._messages < self.max_messages and self._bytes < self.max_bytes:
            self.limited = False
            return 0.0
        self.limited = True
        # Wait until enough of the window has expired to be back under 80 % of
        # both limits (hysteresis, like jupyter_server's resume threshold).
        messages, data = self._messages, self._bytes
        for when, m, d in sent:
            messages -= m
            data -= d
            if messages < 0.8 * self.max_messages and data < 0.8 * self.max_bytes:
                return max(when + self.window - now, 1e-3)
        return self.window

    def reset(self) -> None:
        """Forget the window (jupyter_server resets on ``status: idle``)."""
        self._sent.clear()
        self._messages = self._bytes = 0
        self.limited = False
