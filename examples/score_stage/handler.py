"""ScoreStage: turn engagement events into one score per piece of content.

Deploy with the Lambda handler ``score_stage.handler.handler``. The function reads the previous
stage's output from ``s3://{bucket}/executions/{executionId}/{previousStage}/output.json``,
validates it as ``list[EngagementEvent]``, and writes ``list[ContentScore]`` as JSON Lines.

The score is deterministic for a given input: recency decays from the newest event in the batch,
not from the wall clock, so a Step Functions retry writes the same bytes (``write_once`` then
counts the retry as done).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from ceap_stage import ExecutionContext, WorkflowLambdaHandler

from .models import KIND_WEIGHTS, ContentScore, EngagementEvent

#: Hours after which an interaction counts half.
HALF_LIFE_HOURS = 24.0
#: Seconds of dwell time worth one extra point (capped per event).
DWELL_SECONDS_PER_POINT = 30.0
MAX_DWELL_POINTS = 4.0


def event_points(event: EngagementEvent, newest: datetime) -> float:
    """Points of one event: kind weight plus dwell bonus, decayed by age.

    >>> from datetime import datetime, timezone
    >>> now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    >>> e = EngagementEvent(event_id="e1", user_id="u", content_id="c", kind="like",
    ...                     occurred_at=now, dwell_seconds=60)
    >>> event_points(e, now)
    5.0
    """
    dwell = min(event.dwell_seconds / DWELL_SECONDS_PER_POINT, MAX_DWELL_POINTS)
    age_hours = max((newest - event.occurred_at).total_seconds() / 3600.0, 0.0)
    decay = math.pow(0.5, age_hours / HALF_LIFE_HOURS)
    return (KIND_WEIGHTS[event.kind] + dwell) * decay


def score_events(events: Iterable[EngagementEvent]) -> list[ContentScore]:
    """Score each piece of content; the result is sorted by score, best first.

    Duplicate ``event_id`` values (an at-least-once upstream) count once.
    """
    unique = list({e.event_id: e for e in events}.values())
    if not unique:
        return []
    newest = max(e.occurred_at for e in unique)
    points: dict[str, float] = defaultdict(float)
    users: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    last: dict[str, datetime] = {}
    for event in unique:
        cid = event.content_id
        points[cid] += event_points(event, newest)
        users[cid].add(event.user_id)
        counts[cid] += 1
        last[cid] = max(last.get(cid, event.occurred_at), event.occurred_at)
    scores = [
        ContentScore(
            content_id=cid,
            score=round(points[cid], 4),
            interactions=counts[cid],
            unique_users=len(users[cid]),
            last_interaction_at=last[cid],
        )
        for cid in points
    ]
    scores.sort(key=lambda s: (-s.score, s.content_id))
    return scores


class ScoreStage(WorkflowLambdaHandler[list[EngagementEvent], list[ContentScore]]):
    """The ScoreStage state of the engagement workflow."""

    name = "ScoreStage"
    output_format = "jsonl"
    write_once = True

    def process(self, data: list[EngagementEvent], ctx: ExecutionContext) -> list[ContentScore]:
        if ctx.logger is not None:
            ctx.logger.info("scoring", extra={"events": len(data)})  # counts, never payloads
        return score_events(data)


#: The Lambda entry point: ``score_stage.handler.handler``.
handler = ScoreStage()
