"""Token renewal: a user's class that refreshes the gateway token before each request.

The contract is jupyter_server's ``GatewayTokenRenewerBase.get_token(auth_header_key,
auth_scheme, auth_token, **kwargs) -> str``, so a renewer written for
jupyter_server works here unchanged. ``token_renewer`` names it as
``module.Class``, ``module:Class`` or the name of an entry point in the
``kernelyard.gateway_token_renewers`` group; it is built with no arguments.

A renewer that raises keeps the token it had: the request goes ahead with it
and the failure is logged once, until a renewal succeeds again (jupyter_server
logs every failing request).

kernelyard ships one, the entry point ``file`` (:class:`FileTokenRenewer`):
the token is the content of the file ``KERNELYARD_GATEWAY_TOKEN_FILE`` names,
read again whenever the file changes (a Kubernetes projected service-account
token, a Vault agent's sink: tokens that rotate under a running server).
"""

from __future__ import annotations

import importlib
import logging
import os
from importlib.metadata import entry_points
from typing import Any, Protocol

from kernelyard.errors import GatewaySettingError

__all__ = [
    "ENTRY_POINT_GROUP",
    "TOKEN_FILE_ENV",
    "FileTokenRenewer",
    "TokenRenewal",
    "TokenRenewer",
    "load_renewer",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kernelyard.gateway_token_renewers"
#: The variable that names the token file of :class:`FileTokenRenewer`.
TOKEN_FILE_ENV = "KERNELYARD_GATEWAY_TOKEN_FILE"
#: jupyter_server's default, which renews nothing: no need to import jupyter_server for it.
_NO_OP = {"jupyter_server.gateway.gateway_client.NoOpTokenRenewer", "NoOpTokenRenewer"}


class TokenRenewer(Protocol):
    def get_token(
        self, auth_header_key: str, auth_scheme: str | None, auth_token: str, **kwargs: Any
    ) -> str:
        """The token to use from now on (``auth_token`` when nothing changed)."""
        ...


class FileTokenRenewer:
    """The token in the file ``$KERNELYARD_GATEWAY_TOKEN_FILE`` (stripped), read again
    when its modification time or size changes. A file that is missing or empty
    raises (so the current token stays, as for any failing renewer).
    """

    def __init__(self) -> None:
        path = os.environ.get(TOKEN_FILE_ENV, "")
        if not path:
            raise ValueError(f"{TOKEN_FILE_ENV} names no file")
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._token = ""

    def get_token(
        self, auth_header_key: str, auth_scheme: str | None, auth_token: str, **kwargs: Any
    ) -> str:
        stat = os.stat(self.path)
        version = (stat.st_mtime_ns, stat.st_size)
        if version != self._seen:
            with open(self.path, encoding="utf-8") as file:
                token = file.read().strip()
            if not token:
                raise ValueError(f"the token file {self.path} is empty")
            self._seen, self._token = version, token
        return self._token


def load_renewer(spec: str) -> TokenRenewer | None:
    """The renewer ``spec`` names, built; None for "" and jupyter_server's no-op renewer.

    Raises GatewaySettingError (setting ``token_renewer``) when it cannot be
    found, built, or has no ``get_token``.
    """
    spec = spec.strip()
    if not spec or spec in _NO_OP:
        return None
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    module, sep, name = spec.partition(":")
    if not sep:
        module, _, name = spec.rpartition(".")
    if not found and not (module and name):
        raise GatewaySettingError(
            "token_renewer", spec, "is not module.Class, module:Class or an entry point name"
        )
    try:
        cls = found[0].load() if found else getattr(importlib.import_module(module), name)
        renewer = cls()
    except Exception as exc:
        raise GatewaySettingError("token_renewer", spec, f"cannot be loaded: {exc}") from exc
    if not callable(getattr(renewer, "get_token", None)):
        raise GatewaySettingError("token_renewer", spec, "has no get_token method")
    return renewer  # type: ignore[no-any-return]


class TokenRenewal:
    """The current token, renewed through ``renewer`` each time it is asked for."""

    def __init__(
        self, renewer: TokenRenewer | None, token: str, *, header_key: str, scheme: str
    ) -> None:
        self._renewer = renewer
        self._token = token
        self._header_key = header_key
        self._scheme = scheme
        self._failing = False

    def token(self) -> str:
        """Renew (when there is a renewer) and return the token to send now."""
        if self._renewer is None:
            return self._token
        try:
            token = self._renewer.get_token(self._header_key, self._scheme or None, self._token)
        except Exception as exc:
            if not self._failing:
                log.error(  # noqa: TRY400 - one line, not a traceback per request
                    "gateway token renewal failed (%s: %s); using the current token until "
                    "a renewal succeeds",
                    type(exc).__name__,
                    exc,
                )
            self._failing = True
            return self._token
        if self._failing:
            log.warning("gateway token renewal works again")
        self._failing = False
        if isinstance(token, str):
            self._token = token
        return self._token
