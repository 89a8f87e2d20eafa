"""GatewayHTTP: requests to the gateway, with jupyter_server's retries and clear errors.

One ``httpx.AsyncClient`` per backend (kept-alive connections, so a request
costs no new TCP and TLS handshake), configured from
:class:`~kernelyard.gateway.GatewaySettings`: timeouts, TLS (client
certificate, CA file, ``validate_cert``), basic auth, extra headers, the auth
header with a token renewed before each request, and the gateway's cookies.

Retries are jupyter_server's ``RetryableHTTPClient``'s: only GET and DELETE
(a POST that timed out may have started a kernel), on 502, 503 and 504, a
timeout or a lost connection, waiting ``0.1 * 2**n`` s, at most
``max_request_retries`` times. Certificate failures are not retried: they do
not heal.

Every failure is a :class:`~kernelyard.errors.GatewayError` that names the
hop: GatewayHTTPError (the gateway's status and the reason it gave),
GatewayUnreachable, GatewayTimeout. Each outcome is also reported to
``on_event`` with the fields of jupyter_server's ``gateway_client/v1`` events
(``status``, ``status_code``, ``msg``).
"""

from __future__ import annotations

import http.cookiejar
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
import orjson

from kernelyard.errors import GatewayError, GatewayHTTPError, GatewayTimeout, GatewayUnreachable
from kernelyard.gateway.cookies import CookieJar
from kernelyard.gateway.renewer import TokenRenewal, load_renewer
from kernelyard.gateway.settings import GatewaySettings

__all__ = [
    "RETRIED_METHODS",
    "RETRIED_STATUS",
    "GatewayEvent",
    "GatewayHTTP",
    "describe",
    "ssl_context",
    "tls_refused",
]

log = logging.getLogger(__name__)

RETRIED_METHODS = frozenset({"GET", "DELETE"})
RETRIED_STATUS = frozenset({502, 503, 504})
BACKOFF_FACTOR = 0.1

#: A ``gateway_client/v1`` record: ``status`` ("success" or "error"), ``status_code``, ``msg``.
GatewayEvent = dict[str, Any]


def ssl_context(settings: GatewaySettings) -> ssl.SSLContext:
    """The TLS context for HTTPS and WSS to the gateway.

    ``ca_certs`` is honoured on its own (jupyter_server applies it only with a
    client certificate); ``validate_cert=False`` turns checking off entirely.
    """
    context = ssl.create_default_context(cafile=settings.ca_certs or None)
    if not settings.validate_cert:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert:
        context.load_cert_chain(settings.client_cert, settings.client_key or None)
    return context


class GatewayHTTP:
    """Requests to one gateway. Use as ``async with``; see the module docstring."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        on_event: Callable[[GatewayEvent], object] | None = None,
    ) -> None:
        self.settings = settings
        self._on_event = on_event
        self._renewal = TokenRenewal(
            load_renewer(settings.token_renewer),
            settings.auth_token,
            header_key=settings.auth_header_key,
            scheme=settings.auth_scheme,
        )
        self._cookies = (
            CookieJar(clock=time.monotonic, wall=time.time) if settings.accept_cookies else None
        )
        self._client: httpx.AsyncClient | None = None
        #: The TLS context of every connection (HTTPS and WSS), set on entry.
        self.ssl: ssl.SSLContext | None = None

    async def __aenter__(self) -> Self:
        settings = self.settings
        for name in ("ca_certs", "client_cert", "client_key"):
            path = getattr(settings, name)
            if path and not os.path.isfile(path):  # ssl's own error names no file
                raise GatewayError(
                    f"the TLS files for the gateway cannot be used: {name}={path!r} is not a file",
                    url=settings.url,
                )
        try:
            verify = ssl_context(settings)
        except (OSError, ssl.SSLError) as exc:
            raise GatewayError(
                f"the TLS files for the gateway cannot be used: {exc}", url=settings.url
            ) from exc
        self.ssl = verify
        auth = None
        if settings.http_user is not None or settings.http_pwd is not None:
            auth = httpx.BasicAuth(settings.http_user or "", settings.http_pwd or "")
        self._client = httpx.AsyncClient(
            base_url=settings.url,
            timeout=httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout),
            verify=verify,
            auth=auth,
            follow_redirects=False,
            # Cookies are ours to keep (accept_cookies, expiry honoured), not httpx's.
            cookies=http.cookiejar.CookieJar(
                http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            ),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- what every request carries -------------------------------------------------

    def headers(self) -> dict[str, str]:
        """The headers for the next request or WebSocket upgrade (the token renewed now)."""
        settings = self.settings
        headers = dict(settings.headers)
        auth = settings.auth_value(self._renewal.token())
        if auth:
            headers[settings.auth_header_key] = auth
        if self._cookies is not None:
            existing = next((k for k in headers if k.lower() == "cookie"), "Cookie")
            cookie = self._cookies.header(headers.get(existing, ""))
            if cookie:
                headers[existing] = cookie
        return headers

    def took_cookies(self, set_cookie: list[str]) -> None:
        """Keep the cookies of a response (HTTP or the WebSocket upgrade's)."""
        if self._cookies is not None and set_cookie:
            self._cookies.update(set_cookie)

    # -- requests ------------------------------------------------------------------------

    async def json(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a request and return its JSON body (None when empty)."""
        response = await self.request(method, path, body=body, params=params)
        if not response.content:
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(
                f"the gateway at {self.settings.url} answered {method} {path} with a body "
                f"that is not JSON: {response.content[:200]!r}",
                url=self.settings.url,
            ) from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request (retrying as the module docstring says); return a 2xx response.

        Raises GatewayHTTPError, GatewayUnreachable or GatewayTimeout.
        """
        if self._client is None:
            raise GatewayError("the gateway client is closed", url=self.settings.url)
        retries = self.settings.max_request_retries if method in RETRIED_METHODS else 0
        attempt = 0
        while True:
            try:
                response = await self._send(method, path, body, params)
            except GatewayError as exc:
                if attempt >= retries or not _retryable(exc):
                    self._event(_status_of(exc), str(exc))
                    raise
                failure = str(exc)
            else:
                self._event(response.status_code, "success")
                return response
            log.info("retrying %s %s (%d of %d): %s", method, path, attempt + 1, retries, failure)
            await anyio.sleep(BACKOFF_FACTOR * 2**attempt)
            attempt += 1

    async def _send(
        self, method: str, path: str, body: Any, params: Mapping[str, str] | None
    ) -> httpx.Response:
        assert self._client is not None
        settings = self.settings
        content = None if body is None else orjson.dumps(body)
        headers = self.headers()
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._client.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "answer"
            limit = settings.connect_timeout if kind == "connect" else settings.request_timeout
            raise GatewayTimeout(
                f"the gateway at {settings.url} did not {kind} to {method} {path} "
                f"within {limit:g} s",
                url=settings.url,
            ) from exc
        except (httpx.TransportError, ssl.SSLError) as exc:  # a TLS alert arrives as ssl's
            raise GatewayUnreachable(
                f"could not connect to the gateway at {settings.url} ({method} {path}): "
                f"{describe(exc)}",
                url=settings.url,
            ) from exc
        self.took_cookies(response.headers.get_list("set-cookie"))
        if response.status_code >= 400:
            raise GatewayHTTPError(
                response.status_code,
                _reason(response),
                url=settings.url,
                request=f"{method} {path}",
            )
        return response

    def _event(self, status_code: int, msg: str) -> None:
        if self._on_event is not None:
            status = "success" if status_code < 400 else "error"
            self._on_event({"status": status, "status_code": status_code, "msg": msg})


def _retryable(exc: GatewayError) -> bool:
    if isinstance(exc, GatewayHTTPError):
        return exc.status_code in RETRIED_STATUS
    if isinstance(exc, GatewayUnreachable):
        return not tls_refused(exc)
    return isinstance(exc, GatewayTimeout)


def tls_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a TLS refusal, which waiting does not heal:
    a certificate that did not verify, or the peer's alert (no or a bad client
    certificate). A TLS connection cut short (EOF) is not one.
    """
    root = _root(exc)
    if isinstance(root, ssl.SSLCertVerificationError):
        return True
    return isinstance(root, ssl.SSLError) and "ALERT" in str(root.reason or "")


def _status_of(exc: GatewayError) -> int:
    """The HTTP status the server answers for ``exc`` (also its event's ``status_code``)."""
    if isinstance(exc, GatewayHTTPError):
        return exc.status_code
    if isinstance(exc, GatewayTimeout):
        return 504
    if isinstance(exc, GatewayUnreachable):
        return 503
    return 502


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def describe(exc: BaseException) -> str:
    """What went wrong in a failed connection, in words (TLS failures named as such)."""
    root = _root(exc)
    if isinstance(root, ssl.SSLCertVerificationError):
        return f"its TLS certificate was rejected: {root.verify_message or root}"
    if isinstance(root, ssl.SSLError):
        return f"TLS failed: {root}"
    return str(root) or type(root).__name__


def _reason(response: httpx.Response) -> str:
    """What the gateway said went wrong: its JSON ``message`` and ``reason``, else its body."""
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        parts = [str(payload[k]) for k in ("message", "reason") if payload.get(k)]
        if parts:
            return " ".join(dict.fromkeys(parts))
    text = response.content.decode("utf-8", "replace").strip()
    return text[:500] or (response.reason_phrase or "no reason given")
