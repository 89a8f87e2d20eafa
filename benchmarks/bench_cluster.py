"""Kernels on Slurm against kernels on this machine, side by side in one run.

The cluster is the tests' two-node Slurm (``tests/cluster/slurm.py``: each
node in its own network namespace, joined by a bridge); it needs root, and
``make check`` installs Slurm. Kernels on it use the ``kernelyard-slurm``
provisioner pinned to node n1; local ones are spawned. Every kernel is
encrypted (``transport_encryption="auto"``, all specs declare Curve), as a
cluster kernel is by default, so that only the place differs.

* start-to-ready: ``KernelManager.start`` (for Slurm: submit, schedule, the
  node launcher, the callback) plus ``wait_for_ready``, ours and ipykernel.
* round trip: ``execute("pass")``, median of ROUND_TRIPS, local against
  across the node boundary (veth and bridge), alternating in BLOCKS turns
  with both kernels running.
* restart to ready: ``KernelManager.restart`` (polite) plus ``wait_for_ready``;
  a Slurm kernel restarts inside its job (no ``sbatch``, no queue).
* CONCURRENT cluster starts at once: from the first submit until the last
  kernel answered (the two nodes have 8 Slurm CPUs each).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import anyio
import orjson

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder, KernelSpecProvider
from kernelyard.manager import KernelManager
from kernelyard.provisioning import LaunchOptions

from .harness import Metric, min_med_max

ROUND_TRIPS = 200
BLOCKS = 10
CONCURRENT = 10
OPTIONS = LaunchOptions(stderr=None, fork=False, transport_encryption="auto", startup_timeout=120)
ARGV = {
    "kernelyard": [sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"],
    "ipykernel": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
}


def _specs(root: Path, cluster: Any) -> KernelFinder:
    kernels = root / "kernels"
    for kernel, argv in ARGV.items():
        for where in ("local", "slurm", "anywhere"):
            metadata: dict[str, Any] = {"supported_encryption": ["curve"]}
            if where != "local":
                metadata["kernel_provisioner"] = {
                    "provisioner_name": "kernelyard-slurm",
                    "config": {
                        "callback_ip": cluster.manager_address,
                        "slurm_conf": str(cluster.conf),
                        "output": str(cluster.root / "bench-%j.out"),
                        "poll_interval": 1.0,
                        "queue_timeout": 60,
                        # "slurm": pinned to n1; "anywhere": where Slurm puts it.
                        "extra_args": ["-w", "n1"] if where == "slurm" else [],
                    },
                }
            spec_dir = kernels / f"{kernel}-{where}"
            spec_dir.mkdir(parents=True)
            spec = {"argv": argv, "language": "python", "metadata": metadata}
            if kernel == "kernelyard":
                spec["interrupt_mode"] = "message"
                spec["env"] = {"IPYTHONDIR": str(root / "ipython")}
            (spec_dir / "kernel.json").write_bytes(orjson.dumps(spec))
    return KernelFinder([KernelSpecProvider([kernels])], runtime_dir=root / "runtime")


async def _timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


class Running:
    """A started kernel and its open client (closed innermost first by the caller)."""

    def __init__(self, finder: KernelFinder, type_id: str) -> None:
        self.manager = KernelManager(type_id, finder=finder, options=OPTIONS)
        self.client: KernelClient | None = None

    async def start(self) -> None:
        await self.manager.start()
        self.client = await self.manager.client().__aenter__()
        await self.client.wait_for_ready(timeout=120)
        assert self.manager.connection_info is not None
        assert self.manager.connection_info.encrypted

    async def execute(self) -> None:
        assert self.client is not None
        await self.client.execute("pass", timeout=60)

    async def restart(self) -> None:
        assert self.client is not None
        await self.manager.restart()
        await self.client.wait_for_ready(timeout=120)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        await self.manager.shutdown()


async def _round(finder: KernelFinder, kernel: str, metrics: dict[str, Metric], r: int) -> None:
    places = ["local", "slurm"] if r % 2 == 0 else ["slurm", "local"]
    running = {where: Running(finder, f"{kernel}-{where}") for where in places}
    try:
        for where in places:
            metrics["start"].add(f"{kernel} {where}", await _timed(running[where].start))
            await running[where].execute()
        trips: dict[str, list[float]] = {where: [] for where in places}
        for block in range(BLOCKS):
            for where in places if block % 2 else places[::-1]:
                side = running[where]
                trips[where] += [await _timed(side.execute) for _ in range(ROUND_TRIPS // BLOCKS)]
        for where in places:
            metrics["trip"].add(f"{kernel} {where}", statistics.median(trips[where]))
        for where in places:
            metrics["restart"].add(f"{kernel} {where}", await _timed(running[where].restart))
            await running[where].execute()
    finally:
        for where in reversed(places):
            await running[where].stop()


async def _concurrent(finder: KernelFinder, metric: Metric) -> None:
    kernels = [Running(finder, "kernelyard-anywhere") for _ in range(CONCURRENT)]
    started = time.perf_counter()
    try:
        async with anyio.create_task_group() as tg:
            for kernel in kernels:
                tg.start_soon(kernel.manager.start)
        metric.add("kernelyard slurm", time.perf_counter() - started)
        nodes = sorted({getattr(k.manager.process, "node", "") for k in kernels})
        metric.notes.append(f"on nodes {', '.join(nodes)}")
    finally:
        async with anyio.create_task_group() as tg:
            for kernel in kernels:
                tg.start_soon(kernel.manager.shutdown)


async def run(rounds: int = 2) -> list[Metric]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.cluster.slurm import slurm_cluster

    metrics = {
        "start": Metric("start-to-ready", "ms"),
        "trip": Metric(f"round trip `pass` (median of {ROUND_TRIPS})", "ms"),
        "restart": Metric("restart to ready (Slurm: in the same job)", "ms"),
        "concurrent": Metric(f"{CONCURRENT} cluster starts at once, to the last one ready", "s"),
    }
    with TemporaryDirectory() as tmp, slurm_cluster(Path(tmp) / "slurm") as cluster:
        finder = _specs(Path(tmp), cluster)
        for r in range(rounds):
            for kernel in ["kernelyard", "ipykernel"][r % 2 :] + ["kernelyard", "ipykernel"][
                : r % 2
            ]:
                await _round(finder, kernel, metrics, r)
            await _concurrent(finder, metrics["concurrent"])
    return list(metrics.values())


COLUMNS = ["kernelyard local", "kernelyard slurm", "ipykernel local", "ipykernel slurm"]


def report(results: list[Metric]) -> str:
    lines = [
        "| benchmark | " + " | ".join(f"{c} (min/med/max)" for c in COLUMNS)
        + " | slurm - local, ours (med) | slurm - local, ipykernel (med) | note |",
        "|---|" + "---|" * (len(COLUMNS) + 3),
    ]  # fmt: skip
    for metric in results:
        scale = 1e3 if metric.unit == "ms" else 1.0
        cells, medians = [], {}
        for column in COLUMNS:
            values = [v * scale for v in metric.values.get(column, [])]
            medians[column] = statistics.median(values) if values else float("nan")
            cells.append(min_med_max(values) if values else "-")
        deltas = [
            f"{medians[f'{k} slurm'] - medians[f'{k} local']:+.3g}"
            if medians[f"{k} local"] == medians[f"{k} local"]
            else ""
            for k in ("kernelyard", "ipykernel")
        ]
        note = "; ".join(dict.fromkeys(metric.notes))
        lines.append(
            f"| {metric.name} ({metric.unit}) | " + " | ".join([*cells, *deltas, note]) + " |"
        )
    return "\n".join(lines)
