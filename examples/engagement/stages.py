"""The five stages of the engagement pipeline, as Lambda handlers.

Each handler is what a Lambda function names as its entry point (``stages.etl_stage`` ...).
Both ways to declare a stage appear: ``@stage`` functions and ``WorkflowLambdaHandler`` classes.
"""

from __future__ import annotations

from collections import Counter

from ceap_stage import ExecutionContext, WorkflowLambdaHandler, stage

from .models import (
    EVENT_WEIGHTS,
    CustomerProfile,
    CustomerScore,
    EngagementEvent,
    Reaction,
    ReactionPlan,
    Session,
)

_CHANNELS = frozenset({"web", "ios", "android", "email"})
_BOT_MARKERS = ("bot", "crawler", "spider", "headless")
GOLD_SCORE = 150
SILVER_SCORE = 40


@stage(name="ETLStage")
def etl_stage(sessions: list[Session], ctx: ExecutionContext) -> list[EngagementEvent]:
    """Flatten sessions into events: normalise names, drop unknown types, deduplicate."""
    seen: set[str] = set()
    events: list[EngagementEvent] = []
    for session in sessions:
        channel = session.channel.strip().lower()
        if channel not in _CHANNELS:
            continue
        agent = session.user_agent.lower()
        is_bot = any(marker in agent for marker in _BOT_MARKERS)
        for raw in session.events:
            event_type = raw.type.strip().lower().replace("-", "_")
            if event_type not in EVENT_WEIGHTS or raw.event_id in seen:
                continue
            seen.add(raw.event_id)
            events.append(
                EngagementEvent(
                    event_id=raw.event_id,
                    session_id=session.session_id,
                    customer_id=session.customer_id,
                    channel=channel,
                    event_type=event_type,
                    product_id=raw.product_id,
                    occurred_at=raw.occurred_at,
                    value_cents=max(raw.value_cents, 0),
                    is_bot=is_bot,
                )
            )
    events.sort(key=lambda e: (e.occurred_at, e.event_id))
    return events


class FilterStage(WorkflowLambdaHandler[list[EngagementEvent], list[EngagementEvent]]):
    """Keep the events that count: no bots, no internal test accounts."""

    name = "FilterStage"

    def process(self, data: list[EngagementEvent], ctx: ExecutionContext) -> list[EngagementEvent]:
        return [e for e in data if not e.is_bot and not e.customer_id.startswith("test-")]


filter_stage = FilterStage()


@stage(name="ScoreStage")
def score_stage(events: list[EngagementEvent]) -> list[CustomerScore]:
    """Score each customer: the sum of the event weights, with counts and revenue."""
    totals: dict[str, CustomerScore] = {}
    for event in events:
        current = totals.get(event.customer_id) or CustomerScore(
            customer_id=event.customer_id, events=0, purchases=0, revenue_cents=0, score=0
        )
        purchase = event.event_type == "purchase"
        totals[event.customer_id] = CustomerScore(
            customer_id=event.customer_id,
            events=current.events + 1,
            purchases=current.purchases + int(purchase),
            revenue_cents=current.revenue_cents + (event.value_cents if purchase else 0),
            score=current.score + EVENT_WEIGHTS[event.event_type],
        )
    return [totals[c] for c in sorted(totals)]


def tier_of(score: int) -> str:
    """The tier a score puts a customer in."""
    if score >= GOLD_SCORE:
        return "gold"
    return "silver" if score >= SILVER_SCORE else "bronze"


class StoreStage(WorkflowLambdaHandler[list[CustomerScore], list[CustomerProfile]]):
    """Turn scores into customer profiles (in production, also upserted into a table).

    Writes JSON Lines: one profile per line.
    """

    name = "StoreStage"
    output_format = "jsonl"

    def process(self, data: list[CustomerScore], ctx: ExecutionContext) -> list[CustomerProfile]:
        return [
            CustomerProfile(
                customer_id=s.customer_id,
                score=s.score,
                tier=tier_of(s.score),
                revenue_cents=s.revenue_cents,
            )
            for s in data
        ]


store_stage = StoreStage()


@stage(name="ReactiveStage")
def reactive_stage(profiles: list[CustomerProfile]) -> ReactionPlan:
    """Decide what to do for each customer from the tier."""
    reactions: list[Reaction] = []
    for p in profiles:
        if p.tier == "gold":
            reactions.append(
                Reaction(
                    customer_id=p.customer_id,
                    action="vip_offer",
                    reason=f"score {p.score} >= {GOLD_SCORE}",
                )
            )
        elif p.tier == "silver" and p.revenue_cents == 0:
            reactions.append(
                Reaction(
                    customer_id=p.customer_id,
                    action="discount_code",
                    reason="engaged but no purchase yet",
                )
            )
        elif p.tier == "bronze":
            reactions.append(
                Reaction(
                    customer_id=p.customer_id,
                    action="reminder_email",
                    reason=f"score {p.score} < {SILVER_SCORE}",
                )
            )
    tiers = Counter(p.tier for p in profiles)
    return ReactionPlan(
        reactions=reactions,
        customers_by_tier={t: tiers.get(t, 0) for t in ("gold", "silver", "bronze")},
    )
