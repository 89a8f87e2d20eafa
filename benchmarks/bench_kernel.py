"""The kernelyard kernel against ipykernel and async-kernel, driven by the same client.

All three kernels are started by kernelyard's KernelManager and driven by its
KernelClient (the fastest client we have, so the kernels' own costs show).
Rounds rotate the order of the kernels, so none always runs first.

* start-to-ready: ``KernelManager.start`` + ``wait_for_ready``, spawned.
* start-to-ready, forked: the same from a fork server that has preloaded the
  kernel (``metadata.kernelyard.preload``: ours lists its own modules,
  ipykernel gets ``IPYKERNEL_PRELOAD``; async-kernel is not tried), median of
  5 starts per round.
* round trip: ``execute("pass")`` to its reply, 200 per round (median).
* 100,000 lines: ``for i in range(100000): print(i)`` until idle.
* 20,000 flushed prints: ``print(i, flush=True)`` until idle.
  For both floods every line is counted and checked in order.
* RSS: the kernel process's resident memory after its first execute.
* completion: ``complete_request`` for ``import o`` (median of 10, after one warm-up).
* exit after shutdown_reply: from the ``shutdown_reply`` to the process's
  exit, with nothing terminating it (what jupyter_client and jupyter_server
  wait for), each of EXITS kernels per round; the max is the figure to watch.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
import orjson

from kernelyard.discovery import KernelFinder, KernelSpecProvider, install_kernelspec
from kernelyard.discovery.kernelspec import IPYKERNEL_PRELOAD
from kernelyard.errors import KernelDied, LaunchError
from kernelyard.manager import KernelManager
from kernelyard.provisioning import ForkServerProvisioner, ForkServers, LaunchOptions
from kernelyard.wire import Channel, Message

from .harness import Metric, min_med_max

KERNELS = {
    "kernelyard": None,  # installed by install_kernelspec
    "ipykernel": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "async-kernel": [
        sys.executable,
        "-m",
        "async_kernel",
        "start",
        "--connection_file={connection_file}",
    ],
}
#: What the forked rows preload, by kernel (a kernel not listed is not forked).
PRELOADS = {"ipykernel": list(IPYKERNEL_PRELOAD)}
LINES = 100_000
FLUSHED = 20_000
ROUND_TRIPS = 200
FORKED_STARTS = 5
EXITS = 5


def _specs(root: Path) -> KernelFinder:
    kernels = root / "kernels"
    install_kernelspec(kernels)
    for name, argv in KERNELS.items():
        if argv is None:
            continue
        interrupt = "message" if name == "async-kernel" else "signal"
        spec_dir = kernels / name
        spec_dir.mkdir(parents=True)
        spec: dict[str, object] = {"argv": argv, "language": "python", "interrupt_mode": interrupt}
        if name in PRELOADS:
            spec["metadata"] = {"kernelyard": {"preload": PRELOADS[name]}}
        (spec_dir / "kernel.json").write_bytes(orjson.dumps(spec))
    return KernelFinder([KernelSpecProvider([kernels])], runtime_dir=root / "runtime")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


QUIET = LaunchOptions(stderr=None)


async def _forked_starts(finder: KernelFinder, kernel: str, metric: Metric) -> None:
    """Median start-to-ready of FORKED_STARTS kernels forked from a warm fork server."""
    async with ForkServers() as forks:
        if not await forks.prepare(finder.get_spec(kernel).launch_spec(), wait=True):
            return
        times = []
        for _ in range(FORKED_STARTS):
            manager = KernelManager(
                kernel,
                finder=finder,
                options=QUIET,
                provisioner=ForkServerProvisioner(forks, finder.runtime_dir),
            )
            started = time.perf_counter()
            await manager.start()
            async with manager.client() as client:
                await client.wait_for_ready(timeout=60)
                times.append(time.perf_counter() - started)
            assert manager.process is not None
            assert manager.process.forked
            await manager.shutdown()
        metric.add(kernel, statistics.median(times))


async def _exits(finder: KernelFinder, kernel: str, metric: Metric) -> None:
    """EXITS times: start, ask ``shutdown_request``, time from its reply to the exit."""
    for _ in range(EXITS):
        manager = KernelManager(kernel, finder=finder, options=QUIET)
        await manager.start()
        assert manager.process is not None
        process = manager.process
        try:
            async with manager.client(heartbeat=False) as client:
                await client.wait_for_ready(timeout=60)
                request = client.message(
                    "shutdown_request", {"restart": False}, channel=Channel.CONTROL
                )
                await client.request(request, timeout=30)
                replied = time.perf_counter()
                with anyio.fail_after(30):
                    await process.wait()
                metric.add(kernel, time.perf_counter() - replied)
        finally:
            await manager.shutdown(now=True)


async def _one_round(finder: KernelFinder, kernel: str, metrics: dict[str, Metric]) -> None:
    manager = KernelManager(kernel, finder=finder, options=QUIET)
    client = None

    async def start() -> None:
        nonlocal client
        await manager.start()
        client = manager.client()
        await client.__aenter__()
        await client.wait_for_ready(timeout=60)

    try:
        try:
            metrics["start"].add(kernel, await _timed(start))
        except (KernelDied, LaunchError) as exc:
            # A reference kernel that dies while starting (async-kernel aborted
            # with SIGABRT once in a full run here) is a failed start of that
            # kernel, noted in the table, not the end of the run.
            metrics["start"].notes.append(f"{kernel}: a start failed ({exc})")
            return
        assert client is not None
        assert manager.process is not None
        await client.execute("pass", timeout=60)
        metrics["rss"].add(kernel, _rss_mib(manager.process.pid))
        trips = [await _timed(lambda: client.execute("pass")) for _ in range(ROUND_TRIPS)]
        metrics["trip"].add(kernel, statistics.median(trips))
        await client.complete("import o", 8, timeout=60)
        completes = [await _timed(lambda: client.complete("import o", 8)) for _ in range(10)]
        metrics["complete"].add(kernel, statistics.median(completes))
        for key, count, flush in (("lines", LINES, False), ("flushed", FLUSHED, True)):
            chunks: list[str] = []

            def hook(msg: Message, chunks: list[str] = chunks) -> None:
                if msg.msg_type == "stream":
                    chunks.append(msg.content["text"])

            code = f"for i in range({count}): print(i{', flush=True' if flush else ''})"
            seconds = await _timed(
                lambda code=code, hook=hook: client.execute_interactive(
                    code, output_hook=hook, timeout=300
                )
            )
            metrics[key].add(kernel, seconds)
            got = "".join(chunks)
            if got != "".join(f"{i}\n" for i in range(count)):
                lost = count - got.count("\n")
                metrics[key].notes.append(f"{kernel}: {lost} lines lost or out of order")
    finally:
        if client is not None:
            await client.aclose()
        await manager.shutdown()


async def run(rounds: int = 3) -> list[Metric]:
    metrics = {
        "start": Metric("start-to-ready, spawned", "ms"),
        "forked": Metric(f"start-to-ready, forked (median of {FORKED_STARTS})", "ms"),
        "trip": Metric("round trip `pass` (median of 200)", "ms"),
        "lines": Metric(f"{LINES:,} lines to idle", "s"),
        "flushed": Metric(f"{FLUSHED:,} flushed prints to idle", "s"),
        "rss": Metric("RSS after the first execute", "MiB"),
        "complete": Metric("completion `import o` (median of 10)", "ms"),
        "exit": Metric(f"exit after shutdown_reply ({EXITS} per round)", "ms"),
    }
    names = list(KERNELS)
    with TemporaryDirectory() as tmp:
        finder = _specs(Path(tmp))
        for r in range(rounds):
            for kernel in names[r % len(names) :] + names[: r % len(names)]:
                await _one_round(finder, kernel, metrics)
                await _forked_starts(finder, kernel, metrics["forked"])
                await _exits(finder, kernel, metrics["exit"])
    return list(metrics.values())


def _ratio(ours: float, theirs: float) -> str:
    return "" if theirs != theirs else f"{ours / theirs:.2f}"  # NaN: not measured


def report(results: list[Metric]) -> str:
    names = list(KERNELS)
    lines = [
        "| benchmark | "
        + " | ".join(f"{n} (min/med/max)" for n in names)
        + " | ours/ipykernel (med) | ours/async-kernel (med) | note |",
        "|---|" + "---|" * (len(names) + 3),
    ]
    for metric in results:
        scale = 1e3 if metric.unit == "ms" else 1.0
        cells, medians = [], {}
        for name in names:
            values = [v * scale for v in metric.values.get(name, [])]
            medians[name] = statistics.median(values) if values else float("nan")
            cells.append(min_med_max(values) if values else "not forked")
        ours = medians["kernelyard"]
        note = "; ".join(metric.notes) or (
            "every line arrived, in order, for all three" if metric.unit == "s" else ""
        )
        lines.append(
            f"| {metric.name} ({metric.unit}) | "
            + " | ".join(cells)
            + f" | {_ratio(ours, medians['ipykernel'])} | {_ratio(ours, medians['async-kernel'])} "
            f"| {note} |"
        )
    return "\n".join(lines)
