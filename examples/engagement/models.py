"""The records that flow between the engagement stages (pydantic models)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

EventType = Literal["view", "click", "add_to_cart", "share", "purchase"]
Channel = Literal["web", "ios", "android", "email"]
Tier = Literal["gold", "silver", "bronze"]

#: Points per event type: ScoreStage (Lambda) and glue_score.py (Spark) use the same table.
EVENT_WEIGHTS: dict[str, int] = {
    "view": 1,
    "click": 3,
    "share": 4,
    "add_to_cart": 5,
    "purchase": 20,
}


class RawEvent(BaseModel):
    """One interaction inside a session, as the apps send it."""

    event_id: str
    type: str
    product_id: str | None = None
    occurred_at: datetime
    value_cents: int = 0


class Session(BaseModel):
    """The body of one SQS message: a customer's session."""

    session_id: str
    customer_id: str
    channel: str
    user_agent: str = ""
    events: list[RawEvent]


class EngagementEvent(BaseModel):
    """A cleaned interaction (ETLStage's output): flat, typed, deduplicated."""

    event_id: str
    session_id: str
    customer_id: str
    channel: Channel
    event_type: EventType
    product_id: str | None
    occurred_at: datetime
    value_cents: int = Field(ge=0)
    is_bot: bool


class CustomerScore(BaseModel):
    """A customer's engagement in this batch (ScoreStage's output)."""

    customer_id: str
    events: int
    purchases: int
    revenue_cents: int
    score: int


class CustomerProfile(BaseModel):
    """What StoreStage keeps per customer: the score and the tier it puts the customer in."""

    customer_id: str
    score: int
    tier: Tier
    revenue_cents: int


class Reaction(BaseModel):
    """One action ReactiveStage decided on."""

    customer_id: str
    action: Literal["vip_offer", "discount_code", "reminder_email"]
    reason: str


class ReactionPlan(BaseModel):
    """ReactiveStage's output: the actions, and how many customers each tier holds."""

    reactions: list[Reaction]
    customers_by_tier: dict[str, int]
