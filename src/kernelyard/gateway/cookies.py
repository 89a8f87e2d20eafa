"""CookieJar: the gateway's cookies, kept and sent back (``accept_cookies``), pure.

Load balancers in front of a gateway pin a client to one replica with a
cookie; the kernel then lives on that replica, so every request (and the
WebSocket upgrade) must carry it. Cookies are stored by name with the time
they expire: ``Max-Age`` wins over ``Expires``, as RFC 6265 says; a cookie
with neither lives as long as the jar. Expired cookies are never sent. The
clock is a parameter (seconds, monotonic or wall, as long as it is one).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie

__all__ = ["CookieJar"]

log = logging.getLogger(__name__)


class CookieJar:
    """Cookies by name, each with the moment (``clock()`` seconds) it expires."""

    def __init__(self, clock: Callable[[], float], wall: Callable[[], float]) -> None:
        """``clock`` measures ages; ``wall`` is the Unix time ``Expires`` dates compare to."""
        self._clock = clock
        self._wall = wall
        self._cookies: dict[str, tuple[str, float]] = {}  # name -> (coded value, expires at)

    def __len__(self) -> int:
        return len(self._live())

    def update(self, set_cookie_headers: Iterable[str]) -> None:
        """Take the cookies of a response's ``Set-Cookie`` headers (one cookie each)."""
        now = self._clock()
        for header in set_cookie_headers:
            cookie = SimpleCookie()
            try:
                cookie.load(header)
            except CookieError as exc:
                log.warning("ignoring a cookie the gateway set (%r): %s", header, exc)
                continue
            for name, morsel in cookie.items():
                expires_at = math.inf
                if morsel["max-age"]:
                    try:
                        expires_at = now + float(morsel["max-age"])
                    except ValueError:
                        log.warning("cookie %s: bad Max-Age %r", name, morsel["max-age"])
                elif morsel["expires"]:
                    try:
                        when = parsedate_to_datetime(morsel["expires"]).timestamp()
                    except (TypeError, ValueError):
                        log.warning("cookie %s: bad Expires %r", name, morsel["expires"])
                    else:
                        expires_at = now + (when - self._wall())
                if expires_at <= now:
                    self._cookies.pop(name, None)  # the server deletes it
                else:
                    self._cookies[name] = (morsel.coded_value, expires_at)

    def _live(self) -> dict[str, str]:
        now = self._clock()
        for name in [n for n, (_, at) in self._cookies.items() if at <= now]:
            del self._cookies[name]
        return {name: value for name, (value, _) in self._cookies.items()}

    def header(self, existing: str = "") -> str:
        """The ``Cookie`` header to send: ``existing`` (the caller's own) and ours."""
        ours = "; ".join(f"{name}={value}" for name, value in self._live().items())
        return "; ".join(part for part in (existing, ours) if part)
