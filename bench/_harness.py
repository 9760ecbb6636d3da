"""A tiny harness: time a candidate and its baseline in the same run, report the ratio."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Result", "interleaved", "median_time"]


@dataclass(frozen=True)
class Result:
    """One benchmark figure: ``value`` against ``baseline`` (lower is better)."""

    name: str
    value: float
    baseline: float
    unit: str
    target: float | None = None  # the highest acceptable ratio, if the benchmark has one
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def ok(self) -> bool:
        return self.target is None or self.ratio <= self.target

    def line(self) -> str:
        target = f" (target <= {self.target:.2f}x)" if self.target is not None else ""
        verdict = "" if self.target is None else ("  OK" if self.ok else "  OVER TARGET")
        note = f"  [{self.note}]" if self.note else ""
        return (
            f"{self.name:<58} {self.value:>12.2f} {self.unit:<4} vs {self.baseline:>12.2f} "
            f"{self.unit:<4} ratio {self.ratio:5.2f}x{target}{verdict}{note}"
        )


def median_time(fn: Callable[[], object], *, number: int, repeat: int) -> float:
    """Median over ``repeat`` rounds of the mean seconds per call of ``number`` calls."""
    rounds = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number)
    return statistics.median(rounds)


def interleaved(
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    number: int,
    repeat: int,
) -> tuple[float, float]:
    """Median seconds per call of both, rounds interleaved so drift hits both alike."""
    cand, base = [], []
    for _ in range(repeat):
        base.append(median_time(baseline, number=number, repeat=1))
        cand.append(median_time(candidate, number=number, repeat=1))
    return statistics.median(cand), statistics.median(base)
