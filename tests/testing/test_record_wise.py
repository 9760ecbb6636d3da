"""assert_record_wise: a stage's shard-by-shard output against one invocation's."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from pydantic import BaseModel

from ceap_stage import (
    ExecutionContext,
    HandlerDefinitionError,
    LocalStore,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage.testing import assert_record_wise


class Sale(BaseModel):
    customer: str
    amount: float


SAMPLE = [
    {"customer": "ann", "amount": 10},
    {"customer": "bob", "amount": 4},
    {"customer": "ann", "amount": 5},
]


@stage
def with_tax(sales: list[Sale]) -> list[Sale]:
    return [Sale(customer=s.customer, amount=s.amount * 1.2) for s in sales]


@stage
def big_only(sales: list[Sale]) -> list[Sale]:
    return [s for s in sales if s.amount > 4]  # a filter is record-wise


@stage(name="Totals")
def totals(sales: list[Sale]) -> list[Sale]:
    sums: dict[str, float] = {}
    for s in sales:
        sums[s.customer] = sums.get(s.customer, 0.0) + s.amount
    return [Sale(customer=c, amount=a) for c, a in sums.items()]


@stage
def by_amount(sales: list[Sale]) -> list[Sale]:
    return sorted(sales, key=lambda s: s.amount)


@stage
def streamed(sales: Iterable[Sale]) -> Iterator[Sale]:
    for s in sales:
        yield Sale(customer=s.customer.upper(), amount=s.amount)


@stage
def grand_total(sales: list[Sale]) -> float:
    return sum(s.amount for s in sales)


class Doubled(WorkflowLambdaHandler[list[Sale], list[Sale]]):
    def process(self, data: list[Sale], ctx: ExecutionContext) -> list[Sale]:
        return [Sale(customer=s.customer, amount=s.amount * 2) for s in data]


@pytest.mark.parametrize("handler", [with_tax, big_only, streamed, Doubled()])
def test_a_record_wise_stage_passes(handler: object) -> None:
    assert_record_wise(handler, SAMPLE)  # type: ignore[arg-type]
    assert_record_wise(handler, SAMPLE, records_per_shard=2)  # type: ignore[arg-type]


def test_a_group_by_fails_naming_the_counts_and_the_first_difference() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_record_wise(totals, SAMPLE)
    message = str(caught.value)
    assert message.startswith("stage Totals is not record-wise:")
    assert "one invocation gave 2 records, 3 shards of 1 gave 3 records" in message
    assert "first differ at record 0: {'customer': 'ann', 'amount': 15.0} vs" in message
    assert "keep it in one invocation or move it to a Glue step" in message


def test_a_sort_fails_with_shards_of_two() -> None:
    records = [{"customer": c, "amount": a} for c, a in (("a", 3), ("b", 1), ("c", 2), ("d", 0))]
    with pytest.raises(AssertionError, match=r"2 shards of 2 gave 4 records; they first differ"):
        assert_record_wise(by_amount, records, records_per_shard=2)


def test_an_aggregate_model_is_refused_as_the_fan_out_check_refuses_it() -> None:
    with pytest.raises(HandlerDefinitionError, match="grand_total"):
        assert_record_wise(grand_total, SAMPLE)


def test_every_run_goes_to_the_given_store(tmp_path) -> None:
    assert_record_wise(with_tax, SAMPLE, store=LocalStore(tmp_path))
    written = sorted(p.relative_to(tmp_path).parts[2] for p in tmp_path.glob("*/*/*"))
    assert written == [
        "test-execution",
        "test-execution-shard-0",
        "test-execution-shard-1",
        "test-execution-shard-2",
    ]


@pytest.mark.parametrize(
    ("records", "per_shard", "message"),
    [
        (SAMPLE[:1], 1, "give at least two sample records, not 1"),
        (SAMPLE, 0, "records_per_shard must be at least 1, not 0"),
        (SAMPLE, 3, "records_per_shard=3 makes one shard of the 3 records, which compares"),
    ],
)
def test_bad_arguments_are_refused(
    records: list[dict[str, object]], per_shard: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        assert_record_wise(with_tax, records, records_per_shard=per_shard)
