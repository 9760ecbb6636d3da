"""Check that a stage may be fanned out: shard by shard it gives what one invocation gives.

A fanned-out stage runs once per shard of its input and its output is the shards' outputs in
order. That equals one invocation's output only when every output record depends on its own
input records alone. The models cannot tell: a group-by, a de-duplication, a sort or a top-N
written as ``list[X] -> list[Y]`` passes the model check and, fanned out, silently gives one
result per shard. :func:`assert_record_wise` runs the stage both ways on sample records and
compares.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import Any

from pydantic_core import to_jsonable_python

from ceap_stage._errors import HandlerDefinitionError
from ceap_stage._fanout import fan_out_problems
from ceap_stage._handler import StageHandler, WorkflowLambdaHandler
from ceap_stage._store import LocalStore, Store

from ._run import run_stage

__all__ = ["assert_record_wise"]


def assert_record_wise(
    handler: StageHandler | WorkflowLambdaHandler[Any, Any],
    records: Iterable[Any],
    *,
    records_per_shard: int = 1,
    store: Store | None = None,
) -> None:
    """Assert that ``handler`` gives, run shard by shard, exactly what one invocation gives.

    The stage runs once on all of ``records`` and once per consecutive shard of
    ``records_per_shard`` of them (as a fan-out would cut them, only smaller); the shards'
    outputs, concatenated in order, must equal the single run's output. Give sample records
    that would expose a stage that is not record-wise: two records of the same customer for a
    per-customer total, a duplicate for a de-duplication, records out of order for a sort.

    Args:
        handler: A ``@stage`` function or a ``WorkflowLambdaHandler`` instance.
        records: The sample input (models or dicts), at least two records.
        records_per_shard: The size of each shard (default 1: the most shards).
        store: Where the runs read and write (default: a new ``LocalStore`` in a temporary
            directory).

    Raises:
        HandlerDefinitionError: The stage's models cannot be fanned out at all (an aggregate
            such as ``list[X] -> Total``).
        AssertionError: The outputs differ; the message says how many records each way gave
            and where they first differ.
        ValueError: Fewer than two records, ``records_per_shard`` below 1, or so large that
            the records make a single shard (nothing would be compared).

    Example:
        >>> from pydantic import BaseModel
        >>> from ceap_stage import stage
        >>> class Sale(BaseModel):
        ...     customer: str
        ...     amount: float
        >>> @stage
        ... def with_tax(sales: list[Sale]) -> list[Sale]:
        ...     return [Sale(customer=s.customer, amount=s.amount * 1.2) for s in sales]
        >>> @stage
        ... def totals(sales: list[Sale]) -> list[Sale]:  # a group-by: not record-wise
        ...     sums: dict[str, float] = {}
        ...     for s in sales:
        ...         sums[s.customer] = sums.get(s.customer, 0.0) + s.amount
        ...     return [Sale(customer=c, amount=a) for c, a in sums.items()]
        >>> sample = [{"customer": "ann", "amount": 10}, {"customer": "ann", "amount": 5}]
        >>> assert_record_wise(with_tax, sample)  # doctest: +ELLIPSIS
        {...}
        >>> assert_record_wise(totals, sample)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AssertionError: stage totals is not record-wise: one invocation gave 1 record, ...
    """
    items = list(records)
    if len(items) < 2:
        raise ValueError(f"records: give at least two sample records, not {len(items)}")
    if records_per_shard < 1:
        raise ValueError(f"records_per_shard must be at least 1, not {records_per_shard}")
    if records_per_shard >= len(items):
        raise ValueError(
            f"records_per_shard={records_per_shard} makes one shard of the {len(items)} "
            "records, which compares a run with itself: give more records or a smaller "
            "records_per_shard"
        )
    runtime = handler.runtime
    if runtime.name:
        name = runtime.name
    elif isinstance(handler, WorkflowLambdaHandler):
        name = type(handler).__name__
    else:
        name = getattr(runtime.spec.fn, "__name__", "the stage")
    problems = fan_out_problems(runtime.spec, f"stage {name!r}")
    if problems:
        raise HandlerDefinitionError("; ".join(problems))
    if store is None:
        with tempfile.TemporaryDirectory(prefix="ceap-shards-") as tmp:
            whole, sharded, shards = _run_both(handler, items, records_per_shard, LocalStore(tmp))
    else:
        whole, sharded, shards = _run_both(handler, items, records_per_shard, store)
    if sharded == whole:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(whole, sharded, strict=False)) if a != b),
        min(len(whole), len(sharded)),
    )
    raise AssertionError(
        f"stage {name} is not record-wise: one invocation gave {_records(len(whole))}, "
        f"{shards} shards of {records_per_shard} gave {_records(len(sharded))}; they "
        f"first differ at record {first}: {_at(whole, first)} vs {_at(sharded, first)}. "
        "Fanned out, it would give the shards' output: keep it in one invocation or move it "
        "to a Glue step"
    )


def _run_both(
    handler: StageHandler | WorkflowLambdaHandler[Any, Any],
    items: list[Any],
    records_per_shard: int,
    store: Store,
) -> tuple[list[Any], list[Any], int]:
    """(one invocation's output, the shards' outputs concatenated, the number of shards)."""
    whole = _dumped(run_stage(handler, store=store, previous_output=items).output)
    sharded: list[Any] = []
    starts = range(0, len(items), records_per_shard)
    for shard, start in enumerate(starts):
        run = run_stage(
            handler,
            store=store,
            previous_output=items[start : start + records_per_shard],
            execution_id=f"test-execution-shard-{shard}",
        )
        sharded.extend(_dumped(run.output))
    return whole, sharded, len(starts)


def _dumped(output: Any) -> list[Any]:
    return list(to_jsonable_python(list(output)))


def _records(count: int) -> str:
    return f"{count} record" + ("" if count == 1 else "s")


def _at(records: list[Any], index: int) -> str:
    return repr(records[index]) if index < len(records) else "(none)"
