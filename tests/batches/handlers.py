"""Stages of a queue-fed workflow, for the local runner and moto (``module:attribute``)."""

from __future__ import annotations

from pydantic import BaseModel

from ceap_stage import stage


class Engagement(BaseModel):
    customerId: str
    score: float


@stage(on_invalid_record="reject")
def ingest(events: list[Engagement]) -> list[Engagement]:
    """First stage: invalid queue messages are rejected, not fatal."""
    return events


@stage
def ingest_strict(events: list[Engagement]) -> list[Engagement]:
    """First stage without partial failure: one invalid message fails the batch."""
    return events


@stage
def rank(events: list[Engagement]) -> list[str]:
    """Second stage: the customers by score."""
    return [e.customerId for e in sorted(events, key=lambda e: -e.score)]
