"""Models and handlers for the contract check tests: pairs that fit and pairs that do not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ceap_stage import stage
from ceap_stage.workflow import LambdaStep, WorkflowConfiguration, WorkflowType


class Order(BaseModel):
    order_id: str
    quantity: int


class OrderWithTotal(BaseModel):
    order_id: str
    quantity: int
    total_amount: float


class OrderFloat(BaseModel):
    order_id: str
    quantity: float


class OrderText(BaseModel):
    order_id: str
    quantity: str


class StrictOrderId(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str


class AliasedOrder(BaseModel):
    order_id: str = Field(alias="orderId")
    quantity: int


class MaybeQuantity(BaseModel):
    order_id: str
    quantity: int | None = None


class DefaultQuantity(BaseModel):
    order_id: str
    quantity: int = 1


class PositiveQuantity(BaseModel):
    order_id: str
    quantity: int = Field(ge=0)


class EvenQuantity(BaseModel):
    order_id: str
    quantity: int

    @field_validator("quantity")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("quantity must be even")
        return value


class Basket(BaseModel):
    order: Order


class BasketFloat(BaseModel):
    order: OrderFloat


class BasketWithTotal(BaseModel):
    order: OrderWithTotal


class Shipped(BaseModel):
    status: Literal["shipped"]


class AnyStatus(BaseModel):
    status: Literal["shipped", "pending"]


class StatusText(BaseModel):
    status: str


# -- handlers -------------------------------------------------------------------------------


@stage
def make_orders(records: list[dict[str, object]]) -> list[Order]:
    return [Order(order_id=str(r.get("id")), quantity=1) for r in records]


@stage
def stream_orders(orders: list[Order]) -> Iterable[Order]:
    yield from orders


@stage
def read_orders(orders: list[Order]) -> list[Order]:
    return orders


@stage
def read_stream(orders: Iterable[Order]) -> int:
    return sum(1 for _ in orders)


@stage
def read_one(order: Order) -> int:
    return order.quantity


@stage
def report(orders: list[OrderWithTotal]) -> float:
    return sum(o.total_amount for o in orders)


@stage(name="Ingest")
def pinned(records: list[dict[str, object]]) -> list[Order]:
    return []


def workflow_of(*handlers: str, name: str = "check-test") -> WorkflowConfiguration:
    """A workflow whose steps run these handlers (``module:attribute``), named S0, S1, ..."""
    return WorkflowConfiguration(
        workflow_name=name,
        workflow_type=WorkflowType.EXPRESS,
        workflow_bucket="ceap-check-test",
        source_queue="in",
        steps=[
            LambdaStep(state_name=f"S{i}", function_name=f"f{i}", handler=h)
            for i, h in enumerate(handlers)
        ],
    )


@stage(output_format="jsonl")
def make_orders_jsonl(records: list[dict[str, object]]) -> list[Order]:
    return [Order(order_id=str(r.get("id")), quantity=1) for r in records]


class Opaque:
    """A type pydantic can hold but cannot describe as a JSON Schema."""


class WithOpaque(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque


@stage
def opaque_out(records: list[dict[str, object]]) -> list[WithOpaque]:
    return []
