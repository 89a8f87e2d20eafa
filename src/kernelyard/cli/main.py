"""``kernelyard`` argument parsing and dispatch to one function per subcommand."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kernelyard.cli import kernel, kernelspecs, run, serve
from kernelyard.errors import KernelyardError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelyard",
        description="Run Jupyter kernels, talk to them, and serve them over HTTP and WebSocket.",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    kernelspecs.add_parser(commands)
    run.add_parser(commands)
    kernel.add_parsers(commands)
    serve.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="kernelyard: %(levelname)s: %(message)s")
    try:
        result: int = args.run(args)
    except KernelyardError as exc:
        print(f"kernelyard: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result
