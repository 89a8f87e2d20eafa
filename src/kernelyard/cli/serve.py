"""``kernelyard serve``: the kernel server (jupyter_server's kernels API) on uvicorn.

Every field of :class:`~kernelyard.server.ServerSettings` is a flag
(``--cull-idle-timeout``, ``--no-limit-rate``, ...), with the field's help
and default; ``--gateway-*`` flags (or ``JUPYTER_GATEWAY_*``) serve the
kernels of a remote gateway instead (:mod:`kernelyard.cli.gateway`). The
token comes from ``--token``, else ``JUPYTER_TOKEN``, else
``JUPYTER_TOKEN_FILE``, else is generated; ``--no-token`` serves without one.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import secrets
import sys
import types
import typing
from pathlib import Path
from typing import Any

import anyio

from kernelyard.cli import gateway
from kernelyard.gateway import GatewayBackend
from kernelyard.server import ServerSettings, serve
from kernelyard.server.app import local_backend
from kernelyard.server.events import EventBus

__all__ = ["add_parser", "resolve_token", "run", "settings_from"]

_DEFAULTS = ServerSettings()
#: Fields the command handles itself rather than as plain flags.
_SPECIAL = {"token"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _csv(value: str) -> frozenset[str]:
    return frozenset(item.strip() for item in value.split(",") if item.strip())


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve kernels over HTTP and WebSocket (jupyter_server's kernels API)",
        description="Serve kernels with jupyter_server's REST and WebSocket API; JupyterLab "
        "and jupyter_server --gateway-url work against it. Stops every kernel on SIGINT/SIGTERM.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token", help="the token clients must send (default: $JUPYTER_TOKEN, or generated)"
    )
    tokens.add_argument("--no-token", action="store_true", help="serve without any token")
    hints = typing.get_type_hints(ServerSettings)
    for item in dataclasses.fields(ServerSettings):
        if item.name in _SPECIAL:
            continue
        kind, help_ = hints[item.name], item.metadata.get("help", "")
        default = getattr(_DEFAULTS, item.name)
        if kind is bool:
            parser.add_argument(
                _flag(item.name), action=argparse.BooleanOptionalAction, default=default, help=help_
            )
        elif kind == frozenset[str]:
            parser.add_argument(
                _flag(item.name),
                type=_csv,
                default=default,
                metavar="A,B",
                help=help_ + " (comma-separated)",
            )
        elif typing.get_origin(kind) is typing.Literal:
            parser.add_argument(
                _flag(item.name),
                type=str.lower,
                choices=typing.get_args(kind),
                default=default,
                help=help_,
            )
        else:
            base = str if isinstance(kind, types.UnionType) else kind  # str | None
            parser.add_argument(_flag(item.name), type=base, default=default, help=help_)
    gateway.add_arguments(parser)
    parser.set_defaults(run=run)


def resolve_token(args: argparse.Namespace, environ: typing.Mapping[str, str]) -> str:
    """The token the server requires ("" for none)."""
    if args.no_token:
        return ""
    if args.token is not None:
        return str(args.token)
    if environ.get("JUPYTER_TOKEN"):
        return environ["JUPYTER_TOKEN"]
    if environ.get("JUPYTER_TOKEN_FILE"):
        return Path(environ["JUPYTER_TOKEN_FILE"]).read_text().strip()
    return secrets.token_hex(24)


def settings_from(args: argparse.Namespace, environ: typing.Mapping[str, str]) -> ServerSettings:
    values = {
        item.name: getattr(args, item.name)
        for item in dataclasses.fields(ServerSettings)
        if item.name not in _SPECIAL
    }
    return ServerSettings(token=resolve_token(args, environ), **values)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, os.environ)
    remote = gateway.gateway_settings(args, os.environ)  # bad values fail here, at start
    gateway.refuse_local_encryption(remote, settings.transport_encryption)
    events = EventBus()
    backend = (
        local_backend
        if remote is None
        else GatewayBackend(remote, on_event=events.gateway_client).factory
    )

    def ready(url: str) -> None:
        query = f"?token={settings.token}" if settings.token else ""
        print(f"kernelyard is serving kernels at {url}", flush=True)
        print(f"    {url}{query}", flush=True)
        where = (
            f"default kernel: {settings.default_kernel}"
            if remote is None
            else f"kernels of the gateway at {remote.url}"
        )
        print(f"    {where}; Ctrl-C stops the server and its kernels", file=sys.stderr, flush=True)

    # The stdlib event loop, not uvloop (installed with uvicorn[standard]): under uvloop
    # the server aborted in libzmq ("Bad file descriptor (src/epoll.cpp:86)") in 3 of 8
    # runs of 40 rounds of 20 concurrent starts, executes and deletes on a loaded
    # machine, in 0 of 5 on asyncio's loop; uvloop saved 10-20 % of the server's CPU
    # per round trip.
    anyio.run(functools.partial(serve, settings, backend=backend, events=events, on_ready=ready))
    return 0
