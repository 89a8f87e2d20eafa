"""``kernelyard kernelspecs``: list the kernel types this machine offers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from kernelyard.discovery import KernelFinder, KernelSpec
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
    parser.set_defaults(run=run)


def listing(finder: KernelFinder) -> dict[str, Any]:
    """The ``GET /api/kernelspecs`` body for everything ``finder`` offers."""
    specs = dict(finder.find_kernels())
    return {
        "default": finder.default_type_id(),
        "kernelspecs": {
            type_id: kernelspec_model(type_id, spec) for type_id, spec in specs.items()
        },
    }


def _table(specs: dict[str, KernelSpec], default: str | None) -> str:
    """A readable table; the default kernel is marked with ``*``."""
    rows = [(" NAME", "DISPLAY NAME", "LANGUAGE", "LOCATION")]
    for type_id, spec in specs.items():
        mark = "*" if type_id == default else " "
        where = str(spec.resource_dir) if spec.resource_dir else "-"
        rows.append((mark + type_id, spec.display_name, spec.language, where))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]).rstrip() for row in rows
    ]
    lines.append(f"* default: {default}" if specs else "(no kernels found)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    finder = KernelFinder.default()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(listing(finder), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(_table(dict(finder.find_kernels()), finder.default_type_id()))
    return 0
