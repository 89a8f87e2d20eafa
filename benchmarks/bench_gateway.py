"""Gateway mode side by side: one upstream, reached directly and through two gateway clients.

Upstreams, each a process on 127.0.0.1: ``kernelyard serve`` and
jupyter-kernel-gateway, both running our kernel (kernelspec ``kernelyard``).
Three paths to each, measured in one run with the client of ``bench_server``
(httpx, ``websockets``):

* ``direct``: the client talks to the upstream itself;
* ``kernelyard``: through ``kernelyard serve --gateway-url UPSTREAM``;
* ``jupyter_server``: through ``jupyter_server --GatewayClient.url=UPSTREAM``
  (it speaks the legacy framing to its clients and to the upstream).

Measured per path: POST -> ready (median of STARTS_AFTER), the round trip of
``pass`` in both framings (median of TRIPS), 20,000 flushed prints (time to
idle, and how many lines arrived), 50 clients x 100 executes on 5 kernels.
"What the hop adds" is the kernelyard path's round trip minus the direct one,
per round. Rounds rotate the order of the paths.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from .bench_server import (
    LOAD_CLIENTS,
    LOAD_EXECUTES,
    LOAD_KERNELS,
    STARTS_AFTER,
    TOKEN,
    TRIPS,
    Metric,
    Running,
    _flood,
    _load,
    _running,
    _socket,
    _start,
    _stop,
    _timed,
    _write_kernelspecs,
    ratio,
    row,
)
from .harness import min_med_max

UPSTREAMS = tuple(os.environ.get("BENCH_UPSTREAMS", "kernelyard,kernel_gateway").split(","))
PATHS = ("direct", "kernelyard", "jupyter_server")
SPEC = "kernelyard"  # our kernel, on every upstream


@contextlib.asynccontextmanager
async def _path(path: str, upstream: Running, home: Path) -> AsyncIterator[Running]:
    """The server the client talks to on ``path`` (the upstream itself for ``direct``)."""
    if path == "direct":
        yield Running(path, upstream.url)
        return
    url = upstream.url.rstrip("/")
    extra = (
        ("--gateway-url", url, "--gateway-auth-token", TOKEN)
        if path == "kernelyard"
        else (f"--GatewayClient.url={url}", f"--GatewayClient.auth_token={TOKEN}")
    )
    async with _running(path, home, extra=extra, name=f"{path}-front") as front:
        yield Running(path, front.url)


async def _trips(running: Running, kernel_id: str, label: str, metrics: dict[str, Metric]) -> None:
    for key, v1 in (("trip_legacy", False), ("trip_v1", True)):
        async with _socket(running, kernel_id, v1=v1) as ks:
            if v1 and not ks.v1:
                metrics[key].note(running.name, label, "v1 not offered back: legacy used")
            await ks.execute("pass")
            trips = [(await _timed(lambda ks=ks: ks.execute("pass")))[0] for _ in range(TRIPS)]
        metrics[key].add(running.name, label, statistics.median(trips))


async def _starts(running: Running, http: httpx.AsyncClient, label: str, metric: Metric) -> None:
    later = []
    for _ in range(STARTS_AFTER):
        took, kernel_id = await _timed(lambda: _start(running, http, SPEC))
        later.append(took)
        await _stop(http, [kernel_id])
    metric.add(running.name, label, statistics.median(later))


async def _one_path(
    path: str, upstream: Running, label: str, home: Path, metrics: dict[str, Metric]
) -> None:
    print(f"  {path} -> {label}", file=sys.stderr, flush=True)
    async with _path(path, upstream, home) as running, running.http() as http:
        await _starts(running, http, label, metrics["start"])
        kernel_id = await _start(running, http, SPEC)
        await _trips(running, kernel_id, label, metrics)
        await _flood(running, kernel_id, label, metrics["flood"])
        await _stop(http, [kernel_id])
        load_ids = [await _start(running, http, SPEC) for _ in range(LOAD_KERNELS)]
        await _load(running, load_ids, label, metrics["load"])
        await _stop(http, load_ids)


def _metrics() -> dict[str, Metric]:
    return {
        "start": Metric(f"POST -> ready (median of {STARTS_AFTER})", "ms"),
        "trip_legacy": Metric(f"round trip `pass`, legacy JSON (median of {TRIPS})", "ms"),
        "trip_v1": Metric(f"round trip `pass`, v1 binary (median of {TRIPS})", "ms"),
        "flood": Metric("20,000 flushed prints to idle", "s"),
        "load": Metric(
            f"{LOAD_CLIENTS} clients x {LOAD_EXECUTES} executes on {LOAD_KERNELS} kernels",
            "executes/s",
        ),
    }


async def run(rounds: int = 2) -> list[Metric]:
    metrics = _metrics()
    with TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        home = Path(tmp)
        _write_kernelspecs(home)
        for r in range(rounds):
            for upstream_name in UPSTREAMS:
                async with _running(
                    upstream_name, home, name=f"{upstream_name}-upstream"
                ) as upstream:
                    order = PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]
                    for path in order:
                        await _one_path(path, upstream, upstream_name, home, metrics)
            print(report(list(metrics.values())), file=sys.stderr, flush=True)
    return list(metrics.values())


def report(results: list[Metric]) -> str:
    """One row per benchmark and upstream; the ratio is how many times better the
    kernelyard hop is than jupyter_server's (median); "hop adds" is kernelyard's path
    minus the direct one, per round (min/median/max).
    """
    lines = [
        "| benchmark | upstream | "
        + " | ".join(f"{p} (min/med/max)" for p in PATHS)
        + " | kernelyard hop vs jupyter_server hop | kernelyard hop adds (min/med/max) | notes |",
        "|---|---|" + "---|" * (len(PATHS) + 3),
    ]
    for metric in results:
        scale = 1e3 if metric.unit == "ms" else 1.0
        higher_is_better = metric.unit.endswith("/s")
        for label in UPSTREAMS:
            cells, medians, notes = row(metric, PATHS, label)
            direct = metric.values.get(("direct", label), [])
            ours = metric.values.get(("kernelyard", label), [])
            added = [o - d for o, d in zip(ours, direct, strict=False)]
            added_cell = min_med_max(added, scale) if added and not higher_is_better else "-"
            lines.append(
                f"| {metric.name} ({metric.unit}) | {label} | "
                + " | ".join(cells)
                + f" | {ratio(medians, 'kernelyard', 'jupyter_server', higher_is_better)}"
                + f" | {added_cell} | {notes} |"
            )
    return "\n".join(lines)
