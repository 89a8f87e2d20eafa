"""``python -m benchmarks``: run every benchmark and print a Markdown report."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from functools import partial

import anyio

from . import (
    bench_cluster,
    bench_encryption,
    bench_gateway,
    bench_kernel,
    bench_lifecycle,
    bench_scaling,
    bench_server,
    bench_wire,
)
from .harness import report

#: The groups ``--only`` can name, in the report's order.
GROUPS = [
    "wire",
    "lifecycle",
    "kernel",
    "encryption",
    "cluster",
    "server",
    "scaling",
    "gateway",
]


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
    parser.add_argument("--cluster-rounds", type=int, default=2, help="rounds on Slurm")
    parser.add_argument("--scaling-rounds", type=int, default=1, help="rounds per server")
    parser.add_argument(
        "--only",
        choices=GROUPS,
        default=None,
        help="run one group only",
    )
    args = parser.parse_args()
    import jupyter_client

    print(f"Python {platform.python_version()} on {platform.machine()}, ", end="")
    print(f"jupyter_client {jupyter_client.__version__}; rounds={args.rounds} inner={args.inner}")
    print()
    # (group, title, what runs it): the order is the report's.
    groups: list[tuple[str, str, Callable[[], str]]] = [
        (
            "wire",
            "Wire codec",
            lambda: report(bench_wire.run(rounds=args.rounds, inner=args.inner)),
        ),
        (
            "lifecycle",
            "Kernel lifecycle and client, on the same ipykernel",
            lambda: bench_lifecycle.report(
                anyio.run(partial(bench_lifecycle.run, pairs=args.pairs))
            ),
        ),
        (
            "kernel",
            "The kernelyard kernel against ipykernel and async-kernel (same client)",
            lambda: bench_kernel.report(
                anyio.run(partial(bench_kernel.run, rounds=args.kernel_rounds))
            ),
        ),
        (
            "encryption",
            "CurveZMQ: each stack with and without transport encryption",
            lambda: bench_encryption.report(
                anyio.run(partial(bench_encryption.run, rounds=args.encryption_rounds))
            ),
        ),
        (
            "cluster",
            "Kernels on Slurm against kernels on this machine (needs root)",
            lambda: bench_cluster.report(
                anyio.run(partial(bench_cluster.run, rounds=args.cluster_rounds))
            ),
        ),
        (
            "server",
            "Kernel servers: kernelyard serve, jupyter_server, jupyter-kernel-gateway",
            lambda: bench_server.report(
                anyio.run(partial(bench_server.run, rounds=args.server_rounds))
            ),
        ),
        (
            "scaling",
            "How many kernels one server holds: kernelyard serve and jupyter_server",
            lambda: bench_scaling.report(
                anyio.run(partial(bench_scaling.run, rounds=args.scaling_rounds))
            ),
        ),
        (
            "gateway",
            "Gateway mode: kernelyard and jupyter_server in front of one upstream",
            lambda: bench_gateway.report(
                anyio.run(partial(bench_gateway.run, rounds=args.gateway_rounds))
            ),
        ),
    ]
    for group, title, run in groups:
        if args.only in (None, group):
            print(f"## {title}")
            print()
            print(run())
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
