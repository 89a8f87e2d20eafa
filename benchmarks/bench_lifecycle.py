"""Kernel lifecycle and client speed: kernelyard against jupyter_client on the same ipykernel.

Every figure is measured in pairs, ours then theirs, so both see the same
machine state. The kernel is the ``python3`` kernelspec (ipykernel) for both.

* start-to-ready: from nothing to a client that can execute and will see the
  first output (``KernelManager.start`` + ``wait_for_ready`` for both).
* shutdown: a polite shutdown of an idle kernel until the process is gone.
* round trip: ``execute("pass")`` and its reply, 500 times (p50 / p99).
* flood: 20,000 ``print(i, flush=True)`` until idle; every line is counted
  and checked in order. Again with every thread of the kernel pinned to one
  CPU: ipykernel's main and IOPub threads hand the GIL to each other at every
  flushed print, which costs more when they run on two cores; a client that
  keeps a core busy (jupyter_client uses twice our CPU) speeds the kernel up
  by crowding it onto one. Pinned, that effect is gone for both clients.
* 20 concurrent starts: 20 kernels started at once until all are ready;
  failures (port clashes) are counted.
* the same two starts with ours forked from a fork server that preloaded
  ipykernel (``pyimport/ipykernel``, the same ipykernel with
  ``metadata.kernelyard.preload``); jupyter_client spawns ``python3`` as above.

Every step is bounded (``fail_after``): a step that does not finish raises
:class:`BenchTimeout` naming the side and the step instead of waiting for ever.
IOPub is lossy: ipykernel's XPUB has ``sndhwm`` 1000 and jupyter_client's SUB
``rcvhwm`` 1000, so a flood on a loaded machine can lose its tail and the
``status: idle`` that ends ``execute_interactive``; without a bound,
jupyter_client (``timeout=None``) then waits for ever with no CPU use.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from jupyter_client.manager import AsyncKernelManager

from kernelyard.discovery import KernelFinder
from kernelyard.manager import KernelManager
from kernelyard.provisioning import (
    ForkServerProvisioner,
    ForkServers,
    LaunchOptions,
    SubprocessProvisioner,
)
from kernelyard.wire import Message

KERNEL = "python3"
FORKED_KERNEL = "pyimport/ipykernel"  # the same ipykernel, with a preload list
FLOOD_LINES = 20_000
ROUND_TRIPS = 500

# Bounds, in seconds, far above what each step takes even on a busy 2-core machine
# (start ~0.5 s, 20 at once ~4 s, flood ~3-7 s, round trip ~3 ms, shutdown ~0.1 s).
START_TIMEOUT = 120.0
SHUTDOWN_TIMEOUT = 60.0
EXECUTE_TIMEOUT = 30.0
FLOOD_TIMEOUT = 180.0
PREPARE_TIMEOUT = 120.0


class BenchTimeout(RuntimeError):
    """A benchmark step did not finish within its bound."""


@dataclass
class Series:
    name: str
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    note: str = ""

    def row(self, unit: str = "ms", scale: float = 1e3) -> str:
        def mmm(values: list[float]) -> str:
            return "/".join(
                f"{v * scale:.1f}" for v in (min(values), statistics.median(values), max(values))
            )

        ratios = [o / t for o, t in zip(self.ours, self.theirs, strict=True)]
        return (
            f"| {self.name} | {mmm(self.ours)} {unit} | {mmm(self.theirs)} {unit} | "
            f"{min(ratios):.2f}/{statistics.median(ratios):.2f}/{max(ratios):.2f} | {self.note} |"
        )


QUIET = LaunchOptions(stderr=None)

# -- one kernel each side ---------------------------------------------------------------


class Ours:
    side = "kernelyard"

    def __init__(self, forks: ForkServers | None = None) -> None:
        self.forks = forks
        self.manager: KernelManager | None = None
        self.client: Any = None

    async def start(self, what: str) -> None:
        kernel = KERNEL if self.forks is None else FORKED_KERNEL
        finder = KernelFinder.default()
        provisioner = (
            SubprocessProvisioner(finder.runtime_dir)
            if self.forks is None
            else ForkServerProvisioner(self.forks, finder.runtime_dir)
        )
        self.manager = manager = KernelManager(
            kernel, finder=finder, options=QUIET, provisioner=provisioner
        )
        await _bounded(f"{what} (KernelManager.start)", START_TIMEOUT, manager.start)
        process: Any = manager.process
        assert process is not None
        assert process.forked is (self.forks is not None)
        self.client = client = manager.client()
        # The client's task group stays open until aclose: no bound may enclose
        # __aenter__ or aclose (a cancel scope must be exited where it was entered).
        await client.__aenter__()
        await _bounded(
            f"{what} (wait_for_ready)", START_TIMEOUT, partial(client.wait_for_ready, None)
        )

    async def shutdown(self) -> None:
        assert self.manager is not None
        await self.client.aclose()
        with anyio.CancelScope(shield=True):
            await _bounded(f"{self.side} shutdown", SHUTDOWN_TIMEOUT, self.manager.shutdown)

    async def kill(self) -> None:
        """Best-effort cleanup after a failed or abandoned step: close, kill now."""
        if self.client is not None:
            await self.client.aclose()
        if self.manager is not None:
            with anyio.CancelScope(shield=True):
                await _bounded(
                    f"{self.side} kill",
                    SHUTDOWN_TIMEOUT,
                    partial(self.manager.shutdown, now=True),
                )

    async def execute(self, code: str) -> None:
        await self.client.execute(code)

    @property
    def pid(self) -> int:
        process: Any = None if self.manager is None else self.manager.process
        assert process is not None
        return int(process.pid)

    async def flood(self, code: str, on_text: Callable[[str], None]) -> None:
        def hook(msg: Message) -> None:
            if msg.msg_type == "stream":
                on_text(msg.content["text"])

        await self.client.execute_interactive(code, output_hook=hook)


class Theirs:
    side = "jupyter_client"

    def __init__(self) -> None:
        self.manager: AsyncKernelManager | None = None
        self.client: Any = None

    async def start(self, what: str) -> None:
        self.manager = manager = AsyncKernelManager(kernel_name=KERNEL)
        await _bounded(f"{what} (start_kernel)", START_TIMEOUT, manager.start_kernel)
        self.client = client = manager.client()
        client.start_channels()
        await _bounded(f"{what} (wait_for_ready)", START_TIMEOUT, client.wait_for_ready)

    async def shutdown(self) -> None:
        assert self.manager is not None
        self.client.stop_channels()
        with anyio.CancelScope(shield=True):
            await _bounded(f"{self.side} shutdown", SHUTDOWN_TIMEOUT, self.manager.shutdown_kernel)

    async def kill(self) -> None:
        """Best-effort cleanup after a failed or abandoned step: close, kill now."""
        if self.client is not None:
            self.client.stop_channels()
        if self.manager is not None and self.manager.has_kernel:
            with anyio.CancelScope(shield=True):
                await _bounded(
                    f"{self.side} kill",
                    SHUTDOWN_TIMEOUT,
                    partial(self.manager.shutdown_kernel, now=True),
                )

    async def execute(self, code: str) -> None:
        await self.client.execute(code, reply=True)

    @property
    def pid(self) -> int:
        assert self.manager is not None
        return int(self.manager.provisioner.process.pid)  # type: ignore[union-attr]

    async def flood(self, code: str, on_text: Callable[[str], None]) -> None:
        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                on_text(msg["content"]["text"])

        await self.client.execute_interactive(code, output_hook=hook)


Side = Ours | Theirs


async def _bounded(
    what: str,
    seconds: float,
    step: Callable[[], Awaitable[object]],
    detail: Callable[[], str] = str,
) -> None:
    """``await step()``, or BenchTimeout naming ``what`` after ``seconds``."""
    try:
        with anyio.fail_after(seconds):
            await step()
    except TimeoutError:
        raise BenchTimeout(f"{what}: did not finish within {seconds:g} s{detail()}") from None


async def _timed(
    what: str, seconds: float, step: Callable[[], Awaitable[None]], detail: Callable[[], str] = str
) -> float:
    started = time.perf_counter()
    await _bounded(what, seconds, step, detail)
    return time.perf_counter() - started


# Starts and shutdowns are bounded inside Ours and Theirs, step by step: our
# client's task group is entered in start and exited in shutdown, so no cancel
# scope may enclose either call.


async def _start(side: Side, what: str = "start") -> float:
    """Start ``side`` (bounded); on any failure or cancellation its kernel is killed."""
    started = time.perf_counter()
    try:
        await side.start(f"{side.side} {what}")
    except BaseException:
        await _kill(side)
        raise
    return time.perf_counter() - started


async def _shutdown(side: Side) -> float:
    """Shut ``side`` down (bounded); if that fails its kernel is killed."""
    started = time.perf_counter()
    try:
        await side.shutdown()
    except BaseException:
        await _kill(side)
        raise
    return time.perf_counter() - started


async def _kill(side: Side) -> None:
    with contextlib.suppress(Exception):
        await side.kill()


async def _shutdown_all(*sides: Side) -> None:
    """Shut every side down, even if one fails; then raise the first error."""
    errors: list[BaseException] = []
    for side in sides:
        try:
            await _shutdown(side)
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


# -- the benchmarks -------------------------------------------------------------------------


async def start_and_shutdown(pairs: int, forks: ForkServers | None = None) -> list[Series]:
    suffix = ", ours forked" if forks is not None else ""
    start = Series("start-to-ready" + suffix)
    stop = Series("shutdown (idle kernel)" + suffix)
    for pair in range(pairs):
        order: list[tuple[Side, list[float], list[float]]] = [
            (Ours(forks), start.ours, stop.ours),
            (Theirs(), start.theirs, stop.theirs),
        ]
        for side, series_start, series_stop in order if pair % 2 == 0 else order[::-1]:
            series_start.append(await _start(side))
            try:
                await anyio.sleep(0.2)  # let the kernel settle: measure shutdown, not startup tail
            except BaseException:
                await _kill(side)
                raise
            series_stop.append(await _shutdown(side))
    return [start, stop]


async def _pair(first_ours: bool) -> tuple[Ours, Theirs]:
    """One kernel each, started in the given order.

    The order matters on this 2-core machine: whichever kernel starts first
    runs a flood 10-30 % slower (seen with either side's client driving both),
    so every comparison below alternates it.
    """
    ours, theirs = Ours(), Theirs()
    first, second = (ours, theirs) if first_ours else (theirs, ours)
    await _start(first)
    try:
        await _start(second)
    except BaseException:
        await _kill(first)
        raise
    return ours, theirs


async def round_trips(first_ours: bool) -> list[Series]:
    ours, theirs = await _pair(first_ours)
    try:
        samples: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(ROUND_TRIPS // 50):  # A B in blocks of 50
            for name, side in (("ours", ours), ("theirs", theirs)):
                for _ in range(50):
                    samples[name].append(
                        await _timed(
                            f"{side.side} execute('pass')",
                            EXECUTE_TIMEOUT,
                            partial(side.execute, "pass"),
                        )
                    )
    finally:
        await _shutdown_all(ours, theirs)
    return [
        Series(
            "round trip `pass` p50",
            [statistics.median(samples["ours"])],
            [statistics.median(samples["theirs"])],
        ),
        Series(
            "round trip `pass` p99",
            [statistics.quantiles(samples["ours"], n=100)[98]],
            [statistics.quantiles(samples["theirs"], n=100)[98]],
        ),
    ]


def _pin_to_one_cpu(pid: int) -> None:
    """Every thread of ``pid`` on CPU 0 (threads it starts later inherit that)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {0})


async def flood(pairs: int, *, pin: bool = False) -> Series:
    suffix = ", kernel pinned to one CPU" if pin else ""
    series = Series(f"{FLOOD_LINES:,} flushed prints to idle{suffix}")
    code = f"for i in range({FLOOD_LINES}): print(i, flush=True)"
    expected = "".join(f"{i}\n" for i in range(FLOOD_LINES))
    for pair in range(pairs):
        ours, theirs = await _pair(first_ours=pair % 2 == 1)
        try:
            order: list[tuple[Side, list[float]]] = [(ours, series.ours), (theirs, series.theirs)]
            for side, times in order if pair % 2 == 0 else order[::-1]:
                if pin:
                    _pin_to_one_cpu(side.pid)
                chunks: list[str] = []

                def arrived(c: list[str] = chunks) -> str:
                    lines = "".join(c).count("\n")
                    return (
                        f" ({lines:,} of {FLOOD_LINES:,} lines arrived; IOPub drops at its"
                        " high-water mark, so the rest and the idle status may be lost)"
                    )

                times.append(
                    await _timed(
                        f"{side.side} flood of {FLOOD_LINES:,} prints{suffix} (pair {pair + 1})",
                        FLOOD_TIMEOUT,
                        partial(side.flood, code, chunks.append),
                        arrived,
                    )
                )
                got = "".join(chunks)
                if got != expected:
                    lost = FLOOD_LINES - got.count("\n")
                    series.note += f"{type(side).__name__}: {lost} lines lost or out of order. "
        finally:
            await _shutdown_all(ours, theirs)
    if not series.note:
        series.note = "all lines arrived, in order, on both sides"
    return series


async def _start_all(make: Callable[[], Side], count: int) -> tuple[float, int, int]:
    """Start ``count`` kernels at once; returns (seconds until all settled, failures, hangs).

    Each kernel lives in its own task from start to shutdown, as structured
    concurrency requires of a client's task group. A start that fails (port
    clashes) or never becomes ready within START_TIMEOUT counts as a failed
    start, hangs separately: jupyter_client's port race (jupyter_client#487)
    can leave a kernel bound to other ports than its client waits on, and a
    user sees that as a start that never finishes. Its wait is in the time.
    """
    settled = 0
    failures = 0
    hangs = 0
    all_settled = anyio.Event()
    stop = anyio.Event()

    async def one(index: int) -> None:
        nonlocal settled, failures, hangs
        side = make()
        try:
            await _start(side, f"start {index + 1} of {count} concurrent")
        except BenchTimeout:
            hangs += 1  # _start killed what was left of it
            ok = False
        except Exception:
            failures += 1  # likewise
            ok = False
        else:
            ok = True
        settled += 1
        if settled == count:
            all_settled.set()
        try:
            await stop.wait()
        finally:
            if ok:
                await _shutdown(side)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(one, index)
        await all_settled.wait()
        elapsed = time.perf_counter() - started
        stop.set()
    return elapsed, failures, hangs


async def concurrent_starts(count: int, pairs: int = 2, forks: ForkServers | None = None) -> Series:
    suffix = ", ours forked" if forks is not None else ""
    series = Series(f"{count} concurrent starts, all ready{suffix}")
    failed = {"ours": 0, "theirs": 0}
    hung = {"ours": 0, "theirs": 0}
    for pair in range(pairs):
        # Alternate who goes first: the first side of a pair warms the caches.
        order: list[tuple[str, Callable[[], Side]]] = [
            ("ours", lambda: Ours(forks)),
            ("theirs", Theirs),
        ]
        for name, make in order if pair % 2 == 0 else order[::-1]:
            elapsed, failures, hangs = await _start_all(make, count)
            (series.ours if name == "ours" else series.theirs).append(elapsed)
            failed[name] += failures
            hung[name] += hangs
    series.note = (
        f"failed starts: ours {failed['ours']}, jupyter_client {failed['theirs']}; "
        f"never ready within {START_TIMEOUT:g} s: ours {hung['ours']}, "
        f"jupyter_client {hung['theirs']}"
    )
    return series


async def run(pairs: int = 5, flood_pairs: int = 6, concurrent: int = 20) -> list[Series]:
    results = await start_and_shutdown(pairs)
    p50, p99 = await round_trips(first_ours=False)
    p50b, p99b = await round_trips(first_ours=True)
    p50.ours += p50b.ours
    p50.theirs += p50b.theirs
    p99.ours += p99b.ours
    p99.theirs += p99b.theirs
    results += [p50, p99, await flood(flood_pairs), await flood(flood_pairs, pin=True)]
    results.append(await concurrent_starts(concurrent))
    async with ForkServers() as forks:
        spec = KernelFinder.default().get_spec(FORKED_KERNEL).launch_spec()
        prepared = False

        async def prepare() -> None:
            nonlocal prepared
            prepared = await forks.prepare(spec, wait=True)

        await _bounded(f"fork server prepare({FORKED_KERNEL!r})", PREPARE_TIMEOUT, prepare)
        if prepared:
            results += (await start_and_shutdown(pairs, forks))[:1]
            results.append(await concurrent_starts(concurrent, forks=forks))
    return results


def report(results: list[Series]) -> str:
    lines = [
        "| benchmark | kernelyard (min/med/max) | jupyter_client (min/med/max) "
        "| ratio ours/theirs (min/med/max) | note |",
        "|---|---|---|---|---|",
    ]
    lines += [r.row() for r in results]
    return "\n".join(lines)
