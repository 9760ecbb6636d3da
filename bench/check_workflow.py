"""A 20-stage workflow for the ``check`` benchmark: realistic models, some with validators.

Stage ``i`` reads ``Record{i}`` and writes ``Record{i+1}``; each record has a dozen fields
(strings, numbers, dates, literals, optional and nested parts). Every fourth model has a
validator, so its edge needs the property-based method.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, create_model, field_validator

from ceap_stage import stage
from ceap_stage.workflow import LambdaStep, WorkflowConfiguration, WorkflowType

STAGES = 20


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None = None
    country: Literal["FR", "DE", "GB", "US"]


def _non_negative(cls: Any, value: int) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _record(index: int) -> type[BaseModel]:
    validators: dict[str, Any] = {}
    if index % 4 == 3:
        validators["_check_count"] = field_validator("count")(classmethod(_non_negative))
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"Record{index}",
        record_id=(str, ...),
        customer_id=(str, ...),
        count=(int, ...),
        amount=(float, ...),
        currency=(Literal["EUR", "USD", "GBP"], "EUR"),
        created_at=(datetime, ...),
        tags=(list[str], []),
        address=(Address, ...),
        note=(str | None, None),
        scores=(dict[str, float], {}),
        **{f"extra_{index}_{n}": (int, 0) for n in range(index % 3)},
        __validators__=validators,
    )
    return model


RECORDS = [_record(i) for i in range(STAGES + 1)]


def _handler(index: int) -> Any:
    def process(data: list[Any]) -> list[Any]:
        return data

    process.__name__ = process.__qualname__ = f"stage_{index}"
    reads, writes = RECORDS[index], RECORDS[index + 1]
    return stage(
        input_model=list.__class_getitem__(reads), output_model=list.__class_getitem__(writes)
    )(process)


for _i in range(STAGES):
    globals()[f"stage_{_i}"] = _handler(_i)

workflow = WorkflowConfiguration(
    workflow_name="bench-check",
    workflow_type=WorkflowType.EXPRESS,
    workflow_bucket="ceap-bench-check",
    source_queue="bench-check",
    steps=[
        LambdaStep(
            state_name=f"Stage{i:02d}",
            function_name=f"stage-{i}",
            handler=f"bench.check_workflow:stage_{i}",
        )
        for i in range(STAGES)
    ],
)
