"""GatewaySettings: how to reach a remote gateway, as one frozen dataclass.

Every setting of jupyter_server's ``GatewayClient`` is a field here, with the
same default; ``metadata["env"]`` names the environment variable that the
command line reads as its default (``kernelyard serve --gateway-url``, or
``JUPYTER_GATEWAY_URL``), ``metadata["help"]`` says what it means. The CLI
reads flags and environment in one place (:mod:`kernelyard.cli.gateway`);
library users build the dataclass directly::

    GatewaySettings(url="http://gateway:8888", auth_token="...")

Construction validates every value and raises :class:`~kernelyard.errors.GatewaySettingError`
naming the setting; it also derives what jupyter_server derives:

* ``ws_url`` from ``url``, changing only the scheme (``http`` -> ``ws``,
  ``https`` -> ``wss``); jupyter_server lower-cases the whole URL and replaces
  every "http" in it, which breaks paths and hosts that contain those letters;
* ``request_timeout >= kernel_launch_timeout + launch_timeout_pad``: a shorter
  request timeout is raised to that, a longer one raises the launch timeout
  (sent to the gateway as ``KERNEL_LAUNCH_TIMEOUT``), so the gateway gives up
  on a slow kernel before our request does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kernelyard.errors import GatewaySettingError

__all__ = ["MAX_REQUEST_RETRIES_CAP", "GatewaySettings"]

#: The most request retries jupyter_server allows (``RetryableHTTPClient.MAX_RETRIES_CAP``).
MAX_REQUEST_RETRIES_CAP = 10


def setting(default: Any, env: str, help: str) -> Any:
    """A settings field with its environment variable and help text."""
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Where the gateway is and how to talk to it; see the module docstring."""

    url: str = field(
        metadata={"env": "JUPYTER_GATEWAY_URL", "help": "the gateway's base URL (http or https)"}
    )
    ws_url: str = setting(
        "", "JUPYTER_GATEWAY_WS_URL", "its WebSocket base URL; default: url with ws(s)://"
    )
    kernels_endpoint: str = setting(
        "/api/kernels", "JUPYTER_GATEWAY_KERNELS_ENDPOINT", "path of the kernels API"
    )
    kernelspecs_endpoint: str = setting(
        "/api/kernelspecs", "JUPYTER_GATEWAY_KERNELSPECS_ENDPOINT", "path of the kernelspecs API"
    )
    kernelspecs_resource_endpoint: str = setting(
        "/kernelspecs",
        "JUPYTER_GATEWAY_KERNELSPECS_RESOURCE_ENDPOINT",
        "path of kernelspec resources (logos)",
    )
    connect_timeout: float = setting(
        40.0, "JUPYTER_GATEWAY_CONNECT_TIMEOUT", "seconds to connect (HTTP and WebSocket)"
    )
    request_timeout: float = setting(
        42.0, "JUPYTER_GATEWAY_REQUEST_TIMEOUT", "seconds a request may take"
    )
    launch_timeout_pad: float = setting(
        2.0,
        "JUPYTER_GATEWAY_LAUNCH_TIMEOUT_PAD",
        "request_timeout is at least KERNEL_LAUNCH_TIMEOUT plus this",
    )
    kernel_launch_timeout: float = setting(
        40.0, "KERNEL_LAUNCH_TIMEOUT", "seconds the gateway may take to start a kernel"
    )
    client_key: str | None = setting(
        None, "JUPYTER_GATEWAY_CLIENT_KEY", "the client's TLS key file"
    )
    client_cert: str | None = setting(
        None, "JUPYTER_GATEWAY_CLIENT_CERT", "the client's TLS certificate file"
    )
    ca_certs: str | None = setting(
        None, "JUPYTER_GATEWAY_CA_CERTS", "CA certificates the gateway's certificate must chain to"
    )
    validate_cert: bool = setting(
        True, "JUPYTER_GATEWAY_VALIDATE_CERT", "check the gateway's TLS certificate"
    )
    http_user: str | None = setting(
        None, "JUPYTER_GATEWAY_HTTP_USER", "HTTP basic auth user (and KERNEL_USERNAME if unset)"
    )
    http_pwd: str | None = setting(None, "JUPYTER_GATEWAY_HTTP_PWD", "HTTP basic auth password")
    headers: Mapping[str, str] = field(
        default_factory=dict,
        metadata={"env": "JUPYTER_GATEWAY_HEADERS", "help": "extra HTTP headers (a JSON object)"},
    )
    auth_header_key: str = setting(
        "Authorization", "JUPYTER_GATEWAY_AUTH_HEADER_KEY", "the header the token goes in"
    )
    auth_scheme: str = setting(
        "token", "JUPYTER_GATEWAY_AUTH_SCHEME", "put before the token; '' sends the token alone"
    )
    auth_token: str = setting(
        "", "JUPYTER_GATEWAY_AUTH_TOKEN", "the gateway's token ('' sends no auth header)"
    )
    allowed_envs: frozenset[str] = setting(
        frozenset(),
        "JUPYTER_GATEWAY_ALLOWED_ENVS",
        "variables sent to the kernel besides KERNEL_* (JUPYTER_GATEWAY_ENV_WHITELIST, "
        "deprecated, is read too)",
    )
    retry_interval: float = setting(
        1.0, "JUPYTER_GATEWAY_RETRY_INTERVAL", "first delay before a WebSocket reconnect"
    )
    retry_interval_max: float = setting(
        30.0, "JUPYTER_GATEWAY_RETRY_INTERVAL_MAX", "longest delay between reconnects"
    )
    retry_max: int = setting(
        5, "JUPYTER_GATEWAY_RETRY_MAX", "WebSocket reconnects before the kernel is given up"
    )
    token_renewer: str = setting(
        "",
        "JUPYTER_GATEWAY_TOKEN_RENEWER_CLASS",
        "a class (module.Class, module:Class or an entry point name) whose get_token() "
        "runs before each request",
    )
    accept_cookies: bool = setting(
        False, "JUPYTER_GATEWAY_ACCEPT_COOKIES", "keep the gateway's cookies and send them back"
    )
    max_request_retries: int = setting(
        2,
        "JUPYTER_GATEWAY_MAX_REQUEST_RETRIES",
        f"retries of a GET or DELETE on 502/503/504, timeouts and lost connections "
        f"(0..{MAX_REQUEST_RETRIES_CAP})",
    )
    keep_kernels: bool = setting(
        False,
        "KERNELYARD_GATEWAY_KEEP_KERNELS",
        "on server exit, leave the remote kernels this server started running",
    )
    refresh_interval: float = setting(
        10.0,
        "KERNELYARD_GATEWAY_REFRESH_INTERVAL",
        "seconds between reads of the gateway's kernel models (activity there, kernels "
        "culled there); 0: never",
    )

    def __post_init__(self) -> None:
        url = _base_url("url", self.url, ("http", "https"))
        object.__setattr__(self, "url", url)
        if self.ws_url:
            ws_url = _base_url("ws_url", self.ws_url, ("ws", "wss"))
        else:
            parts = urlsplit(url)
            ws_url = urlunsplit(parts._replace(scheme="ws" if parts.scheme == "http" else "wss"))
        object.__setattr__(self, "ws_url", ws_url)
        for name in ("kernels_endpoint", "kernelspecs_endpoint", "kernelspecs_resource_endpoint"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/"):
                raise GatewaySettingError(name, value, "must be a path starting with '/'")
            object.__setattr__(self, name, value.rstrip("/") or "/")
        for name in ("connect_timeout", "request_timeout", "kernel_launch_timeout"):
            _positive(name, getattr(self, name))
        for name in (
            "launch_timeout_pad",
            "retry_interval",
            "retry_interval_max",
            "refresh_interval",
        ):
            _positive(name, getattr(self, name), zero=True)
        if self.retry_interval_max < self.retry_interval:
            raise GatewaySettingError(
                "retry_interval_max", self.retry_interval_max, "must be at least retry_interval"
            )
        _count("retry_max", self.retry_max, None)
        _count("max_request_retries", self.max_request_retries, MAX_REQUEST_RETRIES_CAP)
        minimum = self.kernel_launch_timeout + self.launch_timeout_pad
        if self.request_timeout < minimum:
            object.__setattr__(self, "request_timeout", minimum)
        else:
            object.__setattr__(
                self, "kernel_launch_timeout", self.request_timeout - self.launch_timeout_pad
            )
        if (self.client_key is not None) and not self.client_cert:
            raise GatewaySettingError("client_key", self.client_key, "needs client_cert too")
        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise GatewaySettingError("headers", self.headers, "must map names to strings")
        object.__setattr__(self, "headers", dict(self.headers))
        object.__setattr__(self, "allowed_envs", frozenset(self.allowed_envs))
        if not self.auth_header_key.strip():
            raise GatewaySettingError("auth_header_key", self.auth_header_key, "is empty")

    @property
    def auth_header(self) -> str:
        """The value of the auth header for ``auth_token`` ("" when there is no token)."""
        return self.auth_value(self.auth_token)

    def auth_value(self, token: str) -> str:
        """``{auth_scheme} {token}``, or the token alone without a scheme; "" for no token."""
        if not token:
            return ""
        return f"{self.auth_scheme} {token}" if self.auth_scheme else token

    def http_url(self, path: str) -> str:
        """The gateway's URL for ``path`` (which starts with '/')."""
        return self.url + path

    def websocket_url(self, path: str) -> str:
        """The gateway's WebSocket URL for ``path`` (which starts with '/')."""
        return self.ws_url + path


def _base_url(name: str, value: object, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value:
        raise GatewaySettingError(name, value, "is required")
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise GatewaySettingError(name, value, f"is not a URL: {exc}") from None
    if parts.scheme.lower() not in schemes:
        raise GatewaySettingError(name, value, f"must start with {' or '.join(schemes)}://")
    if not parts.hostname:
        raise GatewaySettingError(name, value, "names no host")
    if parts.query or parts.fragment:
        raise GatewaySettingError(name, value, "must not have a query or fragment")
    del port  # only checked
    return urlunsplit(parts._replace(scheme=parts.scheme.lower(), path=parts.path.rstrip("/")))


def _positive(name: str, value: object, *, zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (value >= 0 if zero else value > 0):  # type: ignore[operator]
        raise GatewaySettingError(name, value, "must be a number " + (">= 0" if zero else "> 0"))


def _count(name: str, value: object, cap: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise GatewaySettingError(name, value, "must be a whole number >= 0")
    if cap is not None and value > cap:
        raise GatewaySettingError(name, value, f"must be at most {cap}")
