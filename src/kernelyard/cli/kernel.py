"""``kernelyard kernel`` and ``kernelyard install-kernelspec``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from kernelyard.discovery import KERNEL_NAME, install_kernelspec, jupyter_data_dir

__all__ = ["add_parsers", "kernels_dir"]


def add_parsers(commands: Any) -> None:
    kernel = commands.add_parser(
        "kernel",
        help="run the kernelyard Python kernel in this process",
        description="Run the kernelyard kernel on a connection file (created if missing).",
    )
    kernel.add_argument("-f", "--connection-file", required=True, help="the connection file")
    kernel.set_defaults(run=_run_kernel)

    install = commands.add_parser(
        "install-kernelspec",
        help="install the 'kernelyard' kernelspec for Jupyter",
        description="Install the kernelspec of the kernelyard kernel (running this Python). "
        "It is named 'kernelyard' and never shadows 'python3'.",
    )
    where = install.add_mutually_exclusive_group()
    where.add_argument(
        "--user", action="store_true", help="into the user's Jupyter data dir (the default)"
    )
    where.add_argument(
        "--sys-prefix", action="store_true", help=f"into {sys.prefix}/share/jupyter/kernels"
    )
    where.add_argument("--prefix", metavar="P", help="into P/share/jupyter/kernels")
    install.add_argument("--name", default=KERNEL_NAME, help="kernelspec name (%(default)s)")
    install.add_argument("--display-name", help="the name frontends show")
    install.set_defaults(run=_run_install)


def kernels_dir(args: argparse.Namespace, environ: dict[str, str]) -> Path:
    """Where ``install-kernelspec`` writes, from its flags."""
    if args.prefix:
        return Path(args.prefix) / "share" / "jupyter" / "kernels"
    if args.sys_prefix:
        return Path(sys.prefix) / "share" / "jupyter" / "kernels"
    return jupyter_data_dir(environ) / "kernels"


def _run_kernel(args: argparse.Namespace) -> int:
    from kernelyard.kernel.app import main

    return main(["-f", args.connection_file])


def _run_install(args: argparse.Namespace) -> int:
    target = kernels_dir(args, dict(os.environ))
    try:
        path = install_kernelspec(target, name=args.name, display_name=args.display_name)
    except OSError as exc:
        print(f"kernelyard: error: cannot install into {target}: {exc}", file=sys.stderr)
        return 1
    print(f"Installed kernelspec {path.name} in {path}")
    return 0
