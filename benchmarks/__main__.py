"""``python -m benchmarks``: run every benchmark and print a Markdown report."""

from __future__ import annotations

import argparse
import platform
import sys

from . import bench_wire
from .harness import report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=15, help="A/B rounds per benchmark")
    parser.add_argument("--inner", type=int, default=2000, help="calls per round")
    args = parser.parse_args()
    import jupyter_client

    print(f"Python {platform.python_version()} on {platform.machine()}, ", end="")
    print(f"jupyter_client {jupyter_client.__version__}; rounds={args.rounds} inner={args.inner}")
    print()
    print("## Wire codec")
    print()
    print(report(bench_wire.run(rounds=args.rounds, inner=args.inner)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
