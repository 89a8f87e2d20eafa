"""Gateway settings from the command line and the environment, read in one place.

Every field of :class:`~kernelyard.gateway.GatewaySettings` is a flag
``--gateway-FIELD`` (``--gateway-url``, ``--gateway-auth-token``, ...); a flag
not given falls back to the field's environment variable (``JUPYTER_GATEWAY_URL``,
..., as jupyter_server reads them), then to the field's default. Gateway mode
is on when a URL is given either way.

Values from the environment are parsed as jupyter_server documents them,
but strictly: a number that is not one, a boolean that is neither
yes/true/1/on nor no/false/0/off, headers that are not a JSON object of
strings, each is a GatewaySettingError naming the variable, at start.
``JUPYTER_GATEWAY_ENV_WHITELIST`` (deprecated) is read when
``JUPYTER_GATEWAY_ALLOWED_ENVS`` is not set, with a warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import types
import typing
from collections.abc import Mapping
from typing import Any

import orjson

from kernelyard.errors import GatewaySettingError
from kernelyard.gateway import GatewaySettings

__all__ = ["add_arguments", "gateway_settings", "refuse_local_encryption"]

log = logging.getLogger(__name__)

_TRUE = {"yes", "true", "1", "on"}
_FALSE = {"no", "false", "0", "off"}


def _flag(name: str) -> str:
    return "--gateway-" + name.replace("_", "-")


def _kind(name: str) -> Any:
    kind = typing.get_type_hints(GatewaySettings)[name]
    if isinstance(kind, types.UnionType):  # str | None
        return str
    return typing.get_origin(kind) or kind


def add_arguments(
    parser: argparse.ArgumentParser, purpose: str = "serve the kernels of a remote gateway"
) -> None:
    """A ``--gateway-*`` flag per setting, in their own help group (``purpose`` heads it)."""
    group = parser.add_argument_group(
        "gateway mode", f"{purpose} (each flag defaults to its env var)"
    )
    for item in dataclasses.fields(GatewaySettings):
        kind, env, help_ = _kind(item.name), item.metadata["env"], item.metadata["help"]
        text = f"{help_} (${env})"
        if kind is bool:
            group.add_argument(
                _flag(item.name), action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            metavar = "A,B" if kind is frozenset else ("JSON" if item.name == "headers" else None)
            group.add_argument(_flag(item.name), default=None, metavar=metavar, help=text)


def refuse_local_encryption(remote: GatewaySettings | None, transport_encryption: str) -> None:
    """With a gateway, CurveZMQ is the gateway's to set (it starts and connects to the
    kernels): asking for it here is an error, not a silent no-op.
    """
    if remote is not None and transport_encryption != "disabled":
        raise GatewaySettingError(
            "url",
            remote.url,
            f"starts the kernels, so --transport-encryption {transport_encryption} cannot "
            "apply here: set the gateway's own (jupyter_server: "
            "--MappingKernelManager.transport_encryption)",
        )


def gateway_settings(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> GatewaySettings | None:
    """The gateway settings of ``args`` and ``environ``; None when no URL is given."""
    url = getattr(args, "gateway_url", None) or environ.get("JUPYTER_GATEWAY_URL", "")
    if not url:
        return None
    values: dict[str, Any] = {}
    for item in dataclasses.fields(GatewaySettings):
        name, env = item.name, item.metadata["env"]
        given = getattr(args, f"gateway_{name}", None)
        source = _flag(name)
        if given is None:
            given, source = environ.get(env), env
            if given is None and name == "allowed_envs":
                given, source = environ.get("JUPYTER_GATEWAY_ENV_WHITELIST"), env
                if given is not None:
                    log.warning("JUPYTER_GATEWAY_ENV_WHITELIST is deprecated: use %s", env)
        if given is None:
            continue
        values[name] = _parse(name, source, given)
    return GatewaySettings(**values)


def _parse(name: str, source: str, value: object) -> Any:
    kind = _kind(name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise GatewaySettingError(name, value, f"({source}) must be yes/true/1 or no/false/0")
    text = str(value)
    if kind is float or kind is int:
        try:
            return kind(text)
        except ValueError:
            raise GatewaySettingError(name, value, f"({source}) must be a number") from None
    if kind is frozenset:
        return frozenset(part.strip() for part in text.split(",") if part.strip())
    if name == "headers":
        try:
            headers = orjson.loads(text or "{}")
        except orjson.JSONDecodeError as exc:
            raise GatewaySettingError(name, value, f"({source}) is not JSON: {exc}") from None
        if not isinstance(headers, dict):
            raise GatewaySettingError(name, value, f"({source}) must be a JSON object")
        return headers
    return text
