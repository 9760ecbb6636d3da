"""The records of the hybrid workflow, in the camelCase the Kotlin stage reads and writes.

``alias_generator=to_camel`` makes the JSON field names camelCase (``programId``) while the
Python names stay snake_case; ceap-stage reads and writes models by their aliases, so a Python
stage and a Kotlin stage agree on the wire.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Candidate(_Camel):
    """A customer who may receive the program's message."""

    customer_id: str
    program_id: str
    marketplace: str
    engagement_score: float


class ScoredCandidate(Candidate):
    """A candidate with the Kotlin stage's score."""

    model_score: float


class ScoreMetrics(_Camel):
    """What the Kotlin scoring stage counts."""

    candidates_in: int
    candidates_out: int


class ScoredBatch(_Camel):
    """The Kotlin stage's output: one JSON object, not a list."""

    candidates: list[ScoredCandidate]
    metrics: ScoreMetrics
    program_id: str
    marketplace: str


class Delivery(_Camel):
    """One message to deliver, written by the Python stage after the Kotlin one."""

    customer_id: str
    program_id: str
    marketplace: str
    channel: str
    model_score: float
