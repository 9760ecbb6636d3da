"""The Python stages of the hybrid workflow (the middle stage is a Kotlin CEAP stage).

``candidates_stage`` runs before the Kotlin stage: the state machine sends it
``"outputFormat": "json"``, so it writes one JSON document, whatever its size would otherwise
make it. ``delivery_stage`` runs after it and reads the Kotlin stage's output, one camelCase
JSON object, with a camelCase model.
"""

from __future__ import annotations

from typing import Any

from ceap_stage import ExecutionContext, stage

from .models import Candidate, Delivery, ScoredBatch

#: Scores at or above this are delivered by push notification, the others by email.
PUSH_SCORE = 0.8


@stage(name="CandidatesStage")
def candidates_stage(messages: list[dict[str, Any]], ctx: ExecutionContext) -> list[Candidate]:
    """One candidate per engagement message, the program's customers only."""
    return [
        Candidate(
            customer_id=m["customerId"],
            program_id=m["programId"],
            marketplace=m["marketplace"],
            engagement_score=float(m["engagementScore"]),
        )
        for m in messages
        if m.get("optedIn", True)
    ]


@stage(name="DeliveryStage")
def delivery_stage(scored: ScoredBatch, ctx: ExecutionContext) -> list[Delivery]:
    """One delivery per scored candidate, the channel chosen by the Kotlin stage's score."""
    return [
        Delivery(
            customer_id=c.customer_id,
            program_id=scored.program_id,
            marketplace=scored.marketplace,
            channel="push" if c.model_score >= PUSH_SCORE else "email",
            model_score=c.model_score,
        )
        for c in scored.candidates
    ]
