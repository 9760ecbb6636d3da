"""A tiny harness: time a candidate and its baseline in the same run, report the ratio."""

from __future__ import annotations

import gc
import random
import statistics
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

__all__ = ["ORDER_MODELS", "Result", "interleaved", "median_time", "orders"]

#: The order models (``Item``, ``Order``, ``Scored``) and ``score`` the stage benchmarks' handler
#: modules share, as source for their subprocesses (the module must import ``BaseModel``).
ORDER_MODELS = textwrap.dedent(
    """

    class Item(BaseModel):
        sku: str
        qty: int
        price: float


    class Order(BaseModel):
        order_id: str
        customer_id: str
        amount: float
        currency: str
        created_at: str
        items: list[Item]
        note: str


    class Scored(BaseModel):
        order_id: str
        customer_id: str
        score: float
        items: int


    def score(o: Order) -> Scored:
        qty = sum(i.qty for i in o.items)
        return Scored(
            order_id=o.order_id,
            customer_id=o.customer_id,
            score=round(o.amount * qty / (1 + len(o.items)), 4),
            items=len(o.items),
        )
    """
)


def orders(count: int, seed: int = 1) -> bytes:
    """``count`` orders for :data:`ORDER_MODELS`, as one JSON document (the same for a seed)."""
    rng = random.Random(seed)
    return orjson.dumps(
        [
            {
                "order_id": f"o-{n:08d}",
                "customer_id": f"c-{rng.randrange(10**6):06d}",
                "amount": round(rng.uniform(1, 2000), 2),
                "currency": rng.choice(["EUR", "USD", "GBP"]),
                "created_at": f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:15:00Z",
                "items": [
                    {
                        "sku": f"sku-{rng.randrange(10**5):05d}",
                        "qty": rng.randint(1, 5),
                        "price": 9.5,
                    }
                    for _ in range(rng.randint(1, 3))
                ],
                "note": "gift wrap, leave at the door" if n % 3 else "",
            }
            for n in range(count)
        ]
    )


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
