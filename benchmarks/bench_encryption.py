"""What CurveZMQ costs: each stack with and without ``transport_encryption``, in one run.

Two stacks, each as its users run it: kernelyard's KernelManager and
KernelClient with the kernelyard kernel (spawned, as a notebook server's
first kernel of a type is), and jupyter_client's AsyncKernelManager and
AsyncKernelClient with ipykernel (its installed ``python3`` spec, which
declares ``supported_encryption``). Each in clear text (``disabled``) and
encrypted (``required``), side by side: in each round both kernels of a
stack run at once and the round trips alternate between them in BLOCKS turns
(the machine's drift, which reaches 40 % within minutes here, then weighs on
both alike); which mode starts first alternates every round, which stack
every two.

* start-to-ready: the manager's start and the client's ``wait_for_ready``.
* round trip: ``execute("pass")`` to its reply, median of ROUND_TRIPS.
* start-to-ready runs one mode after the other within a round (the second
  while the first kernel idles); which goes first alternates.
* 100,000 lines: ``for i in range(100000): print(i)`` until idle, FLOODS
  turns per kernel alternating as the round trips do (median); every line
  is counted (jupyter_client's IOPub may drop past ZeroMQ's high-water mark,
  which the note then says).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder, KernelSpecProvider, install_kernelspec
from kernelyard.manager import KernelManager
from kernelyard.provisioning import LaunchOptions, TransportEncryption
from kernelyard.wire import Message

from .harness import Metric, min_med_max

LINES = 100_000
ROUND_TRIPS = 200
#: The round trips of a round come in this many turns, alternating clear and encrypted.
BLOCKS = 10
#: Floods per kernel and round, alternating too.
FLOODS = 3
TIMEOUT = 120.0
#: (stack, mode) in the order of the first round.
CASES: list[tuple[str, TransportEncryption]] = [
    ("kernelyard", "disabled"),
    ("kernelyard", "required"),
    ("jupyter_client + ipykernel", "disabled"),
    ("jupyter_client + ipykernel", "required"),
]


class Ours:
    """kernelyard's manager and client on the kernelyard kernel."""

    def __init__(self, finder: KernelFinder, mode: TransportEncryption) -> None:
        options = LaunchOptions(stderr=None, transport_encryption=mode, fork=False)
        self.manager = KernelManager("kernelyard", finder=finder, options=options)
        self.client: KernelClient | None = None

    async def start(self) -> None:
        await self.manager.start()
        self.client = await self.manager.client().__aenter__()
        await self.client.wait_for_ready(timeout=TIMEOUT)
        assert self.manager.connection_info is not None
        assert self.manager.connection_info.encrypted is (
            self.manager.options.transport_encryption == "required"
        )

    async def execute(self) -> None:
        assert self.client is not None
        await self.client.execute("pass", timeout=TIMEOUT)

    async def flood(self, code: str, on_text: Callable[[str], None]) -> None:
        assert self.client is not None

        def hook(msg: Message) -> None:
            if msg.msg_type == "stream":
                on_text(msg.content["text"])

        await self.client.execute_interactive(code, output_hook=hook, timeout=TIMEOUT)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        await self.manager.shutdown()


class Theirs:
    """jupyter_client's manager and client on ipykernel."""

    def __init__(self, mode: TransportEncryption) -> None:
        self.manager = AsyncKernelManager(kernel_name="python3", transport_encryption=mode)
        self.client: Any = None

    async def start(self) -> None:
        await self.manager.start_kernel()
        self.client = self.manager.client()
        self.client.start_channels()
        await self.client.wait_for_ready(timeout=TIMEOUT)
        encrypted = self.manager.curve_publickey is not None
        assert encrypted is (self.manager.transport_encryption == "required")

    async def execute(self) -> None:
        await self.client.execute("pass", reply=True, timeout=TIMEOUT)

    async def flood(self, code: str, on_text: Callable[[str], None]) -> None:
        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                on_text(msg["content"]["text"])

        await self.client.execute_interactive(code, output_hook=hook, timeout=TIMEOUT)

    async def stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        await self.manager.shutdown_kernel()


async def _timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


def _side(finder: KernelFinder, stack: str, mode: TransportEncryption) -> Ours | Theirs:
    return Ours(finder, mode) if stack == "kernelyard" else Theirs(mode)


async def _one_round(
    finder: KernelFinder, stack: str, metrics: dict[str, Metric], *, first_encrypted: bool
) -> None:
    """One stack, clear text and encrypted side by side: both kernels run at once and
    take turns, BLOCKS times, so that the machine's drift weighs on both alike.
    """
    modes: tuple[TransportEncryption, ...] = ("disabled", "required")
    if first_encrypted:  # which kernel starts (and floods) while the other one runs
        modes = modes[::-1]
    sides = {mode: _side(finder, stack, mode) for mode in modes}
    trips: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        for mode, side in sides.items():
            metrics["start"].add((stack, mode), await _timed(side.start))
            await side.execute()  # the first execute warms up what a session warms up once
        for block in range(BLOCKS):
            for mode in modes if block % 2 else modes[::-1]:
                side = sides[mode]
                trips[mode] += [await _timed(side.execute) for _ in range(ROUND_TRIPS // BLOCKS)]
        for mode in modes:
            metrics["trip"].add((stack, mode), statistics.median(trips[mode]))
        floods: dict[str, list[float]] = {mode: [] for mode in modes}
        for turn in range(FLOODS):
            for mode in modes if turn % 2 else modes[::-1]:
                chunks: list[str] = []
                code = f"for i in range({LINES}): print(i)"
                floods[mode].append(await _timed(partial(sides[mode].flood, code, chunks.append)))
                got = "".join(chunks)
                if got != "".join(f"{i}\n" for i in range(LINES)):
                    lost = LINES - got.count("\n")
                    metrics["lines"].notes.append(
                        f"{stack} {mode}: {lost} lines lost or misordered"
                    )
        for mode in modes:
            metrics["lines"].add((stack, mode), statistics.median(floods[mode]))
    finally:
        # Not in a shielded scope, and last started first: our clients' task groups,
        # entered in start, are left here, innermost first.
        for side in reversed(sides.values()):
            await side.stop()


async def run(rounds: int = 3) -> list[Metric]:
    metrics = {
        "start": Metric("start-to-ready, spawned", "ms"),
        "trip": Metric(f"round trip `pass` (median of {ROUND_TRIPS})", "ms"),
        "lines": Metric(f"{LINES:,} lines to idle (median of {FLOODS})", "s"),
    }
    stacks = list(dict.fromkeys(stack for stack, _ in CASES))
    with TemporaryDirectory() as tmp:
        kernels = Path(tmp) / "kernels"
        install_kernelspec(kernels)
        finder = KernelFinder([KernelSpecProvider([kernels])], runtime_dir=Path(tmp) / "runtime")
        for r in range(rounds):
            # Which mode goes first alternates every round, which stack every two.
            for stack in stacks[r // 2 % 2 :] + stacks[: r // 2 % 2]:
                await _one_round(finder, stack, metrics, first_encrypted=r % 2 == 1)
    return list(metrics.values())


def _cost(values: dict[Hashable, list[float]], stack: str) -> str:
    """Encrypted over clear text, round by round (the two ran side by side): min/med/max."""
    clear, curve = (values.get((stack, mode), []) for mode in ("disabled", "required"))
    ratios = [c / p for c, p in zip(curve, clear, strict=False) if p]
    return min_med_max(ratios) if ratios else ""


def report(results: list[Metric]) -> str:
    stacks = list(dict.fromkeys(stack for stack, _ in CASES))
    lines = [
        "| benchmark | "
        + " | ".join(f"{stack} {mode} (min/med/max)" for stack, mode in CASES)
        + " | "
        + " | ".join(f"{stack}: encrypted/clear per round (min/med/max)" for stack in stacks)
        + " | note |",
        "|---|" + "---|" * (len(CASES) + len(stacks) + 1),
    ]
    for metric in results:
        scale = 1e3 if metric.unit == "ms" else 1.0
        cells = [
            min_med_max([v * scale for v in metric.values.get(case, [])]) or "-" for case in CASES
        ]
        costs = [_cost(metric.values, stack) for stack in stacks]
        note = "; ".join(metric.notes) or (
            "every line arrived, in order" if metric.unit == "s" else ""
        )
        lines.append(
            f"| {metric.name} ({metric.unit}) | "
            + " | ".join(cells)
            + " | "
            + " | ".join(costs)
            + f" | {note} |"
        )
    return "\n".join(lines)
