"""Timing side by side: A B A B rounds, min / median / max, per-pair ratios.

Each round times ``inner`` calls of one side, then the same for the other, so
both see the same machine noise; the ratio of each pair (reference / ours) is
what to read. Greater than 1 means we are faster.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

__all__ = ["Comparison", "compare", "min_med_max", "report"]


@dataclass(frozen=True)
class Comparison:
    name: str
    ours: list[float]  # seconds per call, one entry per round
    theirs: list[float]
    reference: str

    @property
    def ratios(self) -> list[float]:
        return [t / o for o, t in zip(self.ours, self.theirs, strict=True)]


def _time(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def compare(
    name: str,
    ours: Callable[[], object],
    theirs: Callable[[], object],
    *,
    reference: str,
    rounds: int = 15,
    inner: int = 2000,
) -> Comparison:
    """Time ``ours`` and ``theirs`` alternately; the first round of each is a warm-up."""
    _time(ours, inner)
    _time(theirs, inner)
    mine: list[float] = []
    other: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # collections land at random in one side's round otherwise
    try:
        for _ in range(rounds):
            mine.append(_time(ours, inner))
            other.append(_time(theirs, inner))
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return Comparison(name, mine, other, reference)


def min_med_max(values: list[float], scale: float = 1.0) -> str:
    """``values`` times ``scale`` as "min/median/max", three significant digits each."""
    scaled = [v * scale for v in values]
    return "/".join(f"{v:.3g}" for v in (min(scaled), statistics.median(scaled), max(scaled)))


def _us(values: list[float]) -> str:
    return "/".join(f"{v * 1e6:.2f}" for v in (min(values), statistics.median(values), max(values)))


def report(results: list[Comparison]) -> str:
    """A Markdown table: times in microseconds per call as min/median/max."""
    lines = [
        "| benchmark | kernelyard us (min/med/max) | reference | reference us (min/med/max) "
        "| ratio ref/ours (min/med/max) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ratios = r.ratios
        lines.append(
            f"| {r.name} | {_us(r.ours)} | {r.reference} | {_us(r.theirs)} | "
            f"{min(ratios):.2f}/{statistics.median(ratios):.2f}/{max(ratios):.2f} |"
        )
    return "\n".join(lines)


@dataclass
class Metric:
    """One row of a table: its figures by column (a kernel, a stack...), and notes."""

    name: str
    unit: str
    values: dict[Hashable, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, column: Hashable, value: float) -> None:
        self.values.setdefault(column, []).append(value)
