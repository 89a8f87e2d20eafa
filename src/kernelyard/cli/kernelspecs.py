"""``kernelyard kernelspecs``: list the kernel types this machine (or a gateway) offers."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import orjson

from kernelyard.backend import KernelSpecs
from kernelyard.cli import gateway
from kernelyard.discovery import KernelFinder, KernelSpec
from kernelyard.gateway import GatewayBackend, GatewaySettings
from kernelyard.server.models import kernelspec_model

__all__ = ["add_parser", "listing", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "kernelspecs",
        help="list the kernel types this machine offers",
        description="List kernel types from every provider (kernelspec dirs, this Python "
        "environment, entry-point providers).",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the listing as GET /api/kernelspecs would return it",
    )
    gateway.add_arguments(parser, "list the kernel types of a remote gateway")
    parser.set_defaults(run=run)


def listing(specs: KernelSpecs) -> dict[str, Any]:
    """The ``GET /api/kernelspecs`` body for ``specs``."""
    return {
        "default": specs.default,
        "kernelspecs": {
            type_id: kernelspec_model(type_id, spec) for type_id, spec in specs.specs.items()
        },
    }


def local_specs(finder: KernelFinder) -> KernelSpecs:
    """Everything ``finder`` offers, with its default."""
    return KernelSpecs(dict(finder.find_kernels()), finder.default_type_id())


async def remote_specs(settings: GatewaySettings) -> KernelSpecs:
    """The kernelspecs of the gateway ``settings`` name."""
    async with GatewayBackend(settings) as backend:
        return await backend.kernel_specs()


def _table(specs: Mapping[str, KernelSpec], default: str | None, location: str | None) -> str:
    """A readable table; the default kernel is marked with ``*``; ``location`` (a
    gateway's URL) stands for where every one lives.
    """
    rows = [(" NAME", "DISPLAY NAME", "LANGUAGE", "LOCATION")]
    for type_id, spec in specs.items():
        mark = "*" if type_id == default else " "
        where = location or (str(spec.resource_dir) if spec.resource_dir else "-")
        rows.append((mark + type_id, spec.display_name, spec.language, where))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]).rstrip() for row in rows
    ]
    lines.append(f"* default: {default}" if specs else "(no kernels found)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    remote = gateway.gateway_settings(args, os.environ)
    specs = (
        local_specs(KernelFinder.default()) if remote is None else anyio.run(remote_specs, remote)
    )
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(listing(specs), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(_table(specs.specs, specs.default, remote.url if remote else None))
    return 0
