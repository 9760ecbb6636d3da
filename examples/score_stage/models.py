"""The records ScoreStage reads and writes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

EventKind = Literal["view", "like", "comment", "share", "purchase"]

#: Points per interaction kind.
KIND_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "like": 3.0,
    "comment": 5.0,
    "share": 8.0,
    "purchase": 20.0,
}


class EngagementEvent(BaseModel):
    """One user interaction with a piece of content (FilterStage's output)."""

    event_id: str
    user_id: str
    content_id: str
    kind: EventKind
    occurred_at: datetime
    dwell_seconds: float = Field(default=0.0, ge=0)


class ContentScore(BaseModel):
    """How engaging a piece of content was in this batch (ScoreStage's output)."""

    content_id: str
    score: float = Field(ge=0)
    interactions: int = Field(ge=1)
    unique_users: int = Field(ge=1)
    last_interaction_at: datetime
