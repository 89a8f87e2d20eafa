"""Authentication, origin checks and CORS, as jupyter_server does them, as ASGI middleware.

One pipeline for HTTP and WebSocket requests:

* **Token**: ``Authorization: token T`` or ``bearer T``, or ``?token=T``,
  compared in constant time. A token-authenticated HTTP request gets a login
  cookie (an HMAC of the token under a per-process secret, never the token)
  and an ``_xsrf`` cookie; cookie-authenticated writes must echo the latter
  in ``X-XSRFToken`` (unless ``disable_check_xsrf``). Without credentials an
  API request gets 403 with a JSON body; ``GET /api`` needs none.
* **Origin**: a WebSocket is accepted when it is token-authenticated, has no
  Origin, its Origin's host is the Host, ``allow_origin`` is ``*`` or that
  origin, or the origin matches ``allow_origin_pat``; otherwise 403. An HTTP
  request from a foreign origin gets 404, as in jupyter_server.
* **CORS**: ``OPTIONS`` preflights are answered without authentication;
  answers carry ``Access-Control-Allow-Origin`` for allowed origins.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernelyard.server.settings import ServerSettings

__all__ = ["AuthMiddleware"]

log = logging.getLogger(__name__)

Credential = Literal["token", "cookie", "open"] | None

_AUTH_HEADER = re.compile(r"^(token|bearer)\s+(.+)$", re.IGNORECASE)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW_HEADERS = "accept, content-type, authorization, x-xsrftoken"
ALLOW_METHODS = "GET, PUT, POST, PATCH, DELETE, OPTIONS"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class AuthMiddleware:
    """Wraps the app; see the module docstring for the rules."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        self._secret = secrets.token_bytes(32)
        self.cookie_name = f"kernelyard-auth-{settings.port}"
        self._cookie_value = (
            hmac.new(self._secret, settings.token.encode(), hashlib.sha256).hexdigest()
            if settings.token
            else ""
        )
        self._xsrf = secrets.token_hex(16)
        self._origin_pat = (
            re.compile(settings.allow_origin_pat) if settings.allow_origin_pat else None
        )
        base = settings.base_url
        self._public = {base + "api", base + "api/"}

    # -- decisions (pure) ----------------------------------------------------------------

    def credential(self, headers: dict[str, str], query: str) -> Credential:
        """How the request proves itself (None: it does not)."""
        token = self.settings.token
        if not token:
            return "open"
        match = _AUTH_HEADER.match(headers.get("authorization", "").strip())
        offered: str | None = match.group(2).strip() if match else None
        if offered is None:
            offered = next(iter(parse_qs(query).get("token", [])), None)
        if offered is not None and hmac.compare_digest(offered.encode(), token.encode()):
            return "token"
        cookie = self._cookies(headers).get(self.cookie_name)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self._cookie_value.encode()):
            return "cookie"
        return None

    def _cookies(self, headers: dict[str, str]) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header counts as no cookie
            return {}
        return {name: morsel.value for name, morsel in jar.items()}

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Whether a request from ``origin`` to ``host`` may proceed (same origin always)."""
        if self.settings.allow_origin == "*":
            return True
        if urlsplit(origin).netloc.lower() == host.lower():
            return True
        if self.settings.allow_origin and origin == self.settings.allow_origin:
            return True
        return bool(self._origin_pat and self._origin_pat.match(origin))

    def cors_headers(self, origin: str | None, credential: Credential) -> list[tuple[bytes, bytes]]:
        """``Access-Control-*`` headers for a response to ``origin``."""
        if not origin:
            return []
        allow = self.settings.allow_origin
        value: str | None = None
        if allow == "*" or (allow and origin == allow):
            value = allow
        elif self._origin_pat and self._origin_pat.match(origin):
            value = origin
        elif not allow and credential == "token":
            value = origin  # jupyter_server: token users may call from anywhere
        if value is None:
            return []
        out = [(b"access-control-allow-origin", value.encode("latin-1"))]
        if self.settings.allow_credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        origin = headers.get("origin")
        credential = self.credential(headers, query)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, headers, origin, credential)
            return
        method = scope["method"]
        cors = self.cors_headers(origin, credential)
        if method == "OPTIONS":
            await _respond(send, 204, None, [*cors, *self._preflight_headers()])
            return
        if (
            origin
            and credential != "token"
            and not self.origin_allowed(origin, headers.get("host", ""))
        ):
            log.warning("blocking a request from origin %s", origin)
            await _respond(send, 404, "Not Found", cors)
            return
        if credential is None and scope["path"] not in self._public:
            await _respond(send, 403, "Forbidden", cors)
            return
        if (
            credential == "cookie"
            and method not in _SAFE_METHODS
            and not self.settings.disable_check_xsrf
            and headers.get("x-xsrftoken") != self._cookies(headers).get("_xsrf")
        ):
            await _respond(send, 403, "'_xsrf' argument missing or not matching X-XSRFToken", cors)
            return
        extra = [*cors, *self._login_cookies()] if credential == "token" else cors
        await self.app(scope, receive, _adding_headers(send, extra))

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        origin: str | None,
        credential: Credential,
    ) -> None:
        if credential is None:
            await _deny(send, 403, "Forbidden")
            return
        if (
            origin
            and credential != "token"
            and not self.origin_allowed(origin, headers.get("host", ""))
        ):
            log.warning("blocking a cross-origin WebSocket from %s", origin)
            await _deny(send, 403, "Cross origin WebSocket not allowed")
            return
        await self.app(scope, receive, send)

    def _preflight_headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
        ]

    def _login_cookies(self) -> list[tuple[bytes, bytes]]:
        attrs = f"Path={self.settings.base_url}; SameSite=Lax"
        login = f"{self.cookie_name}={self._cookie_value}; {attrs}; HttpOnly"
        return [
            (b"set-cookie", login.encode()),
            (b"set-cookie", f"_xsrf={self._xsrf}; {attrs}".encode()),
        ]


def error_body(message: str, reason: str | None = None) -> bytes:
    """jupyter_server's JSON error body."""
    return orjson.dumps({"message": message, "reason": reason})


async def _respond(
    send: Send, status: int, message: str | None, headers: Iterable[tuple[bytes, bytes]]
) -> None:
    body = b"" if message is None else error_body(message)
    head = [*headers]
    if message is not None:
        head.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _deny(send: Send, status: int, message: str) -> None:
    """Refuse a WebSocket upgrade with an HTTP status and a JSON body."""
    body = error_body(message)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    if not extra:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
