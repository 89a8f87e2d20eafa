"""``python -m benchmarks``: run every benchmark and print a Markdown report."""

from __future__ import annotations

import argparse
import platform
import sys
from functools import partial

import anyio

from . import (
    bench_encryption,
    bench_gateway,
    bench_kernel,
    bench_lifecycle,
    bench_server,
    bench_wire,
)
from .harness import report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=15, help="A/B rounds per benchmark")
    parser.add_argument("--inner", type=int, default=2000, help="calls per round")
    parser.add_argument("--pairs", type=int, default=5, help="kernel start/shutdown pairs")
    parser.add_argument("--kernel-rounds", type=int, default=3, help="rounds per kernel")
    parser.add_argument("--server-rounds", type=int, default=2, help="rounds per server")
    parser.add_argument("--gateway-rounds", type=int, default=2, help="rounds per upstream")
    parser.add_argument(
        "--encryption-rounds", type=int, default=3, help="rounds per stack and mode"
    )
    parser.add_argument(
        "--only",
        choices=["wire", "lifecycle", "kernel", "encryption", "server", "gateway"],
        default=None,
        help="run one group only",
    )
    args = parser.parse_args()
    import jupyter_client

    print(f"Python {platform.python_version()} on {platform.machine()}, ", end="")
    print(f"jupyter_client {jupyter_client.__version__}; rounds={args.rounds} inner={args.inner}")
    print()
    if args.only in (None, "wire"):
        print("## Wire codec")
        print()
        print(report(bench_wire.run(rounds=args.rounds, inner=args.inner)))
        print()
    if args.only in (None, "lifecycle"):
        print("## Kernel lifecycle and client, on the same ipykernel")
        print()
        results = anyio.run(partial(bench_lifecycle.run, pairs=args.pairs))
        print(bench_lifecycle.report(results))
        print()
    if args.only in (None, "kernel"):
        print("## The kernelyard kernel against ipykernel and async-kernel (same client)")
        print()
        kernel_results = anyio.run(partial(bench_kernel.run, rounds=args.kernel_rounds))
        print(bench_kernel.report(kernel_results))
        print()
    if args.only in (None, "encryption"):
        print("## CurveZMQ: each stack with and without transport encryption")
        print()
        encryption_results = anyio.run(partial(bench_encryption.run, rounds=args.encryption_rounds))
        print(bench_encryption.report(encryption_results))
        print()
    if args.only in (None, "server"):
        print("## Kernel servers: kernelyard serve, jupyter_server, jupyter-kernel-gateway")
        print()
        server_results = anyio.run(partial(bench_server.run, rounds=args.server_rounds))
        print(bench_server.report(server_results))
        print()
    if args.only in (None, "gateway"):
        print("## Gateway mode: kernelyard and jupyter_server in front of one upstream")
        print()
        gateway_results = anyio.run(partial(bench_gateway.run, rounds=args.gateway_rounds))
        print(bench_gateway.report(gateway_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
