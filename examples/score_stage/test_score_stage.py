"""Tests of the example ScoreStage: the scoring itself, then the stage on disk and on S3 (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ceap_stage import InputValidationError, LocalStore, S3Store

from .handler import ScoreStage, event_points, score_events
from .models import ContentScore, EngagementEvent

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BUCKET = "engagement-workflow-dev"
RUN = "engagement-2024-05-01-1200"
INPUT_KEY = f"executions/{RUN}/FilterStage/output.json"
OUTPUT_KEY = f"executions/{RUN}/ScoreStage/output.json"


def _event(
    event_id: str, content: str, kind: str, hours_ago: float = 0, **kw: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": kw.get("user", "u1"),
        "content_id": content,
        "kind": kind,
        "occurred_at": (NOW - timedelta(hours=hours_ago)).isoformat(),
        "dwell_seconds": kw.get("dwell", 0.0),
    }


EVENTS = [
    _event("e1", "video-1", "view", user="u1", dwell=90),
    _event("e2", "video-1", "like", user="u2"),
    _event("e3", "video-2", "share", hours_ago=24, user="u1"),
    _event("e4", "video-2", "view", hours_ago=48, user="u3"),
    _event("e2", "video-1", "like", user="u2"),  # a duplicate delivery
]

EVENT_STEP = {
    "executionId": RUN,
    "currentStage": "ScoreStage",
    "previousStage": "FilterStage",
    "workflowBucket": BUCKET,
}


# -- the scoring -----------------------------------------------------------------------------


def test_points_decay_by_half_per_day_and_reward_dwell_time() -> None:
    fresh = EngagementEvent.model_validate(_event("a", "c", "share"))
    day_old = EngagementEvent.model_validate(_event("b", "c", "share", hours_ago=24))
    dwell = EngagementEvent.model_validate(_event("c", "c", "view", dwell=600))
    assert event_points(fresh, NOW) == 8.0
    assert event_points(day_old, NOW) == pytest.approx(4.0)
    assert event_points(dwell, NOW) == 1.0 + 4.0  # dwell bonus is capped


def test_scores_per_content_ranked_with_duplicates_counted_once() -> None:
    scores = score_events(EngagementEvent.model_validate(e) for e in EVENTS)
    assert [s.content_id for s in scores] == ["video-1", "video-2"]
    video1, video2 = scores
    assert video1.score == pytest.approx(1.0 + 3.0 + 3.0)  # view + 90 s dwell + like
    assert (video1.interactions, video1.unique_users) == (2, 2)
    assert video2.score == pytest.approx(8.0 / 2 + 1.0 / 4)
    assert video2.last_interaction_at == NOW - timedelta(hours=24)


def test_no_events_no_scores() -> None:
    assert score_events([]) == []


# -- the stage on a local store ----------------------------------------------------------------


def test_the_stage_on_a_local_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put(BUCKET, INPUT_KEY, orjson.dumps(EVENTS))
    result = ScoreStage(store=store)(EVENT_STEP)
    assert result["status"] == "SUCCESS"
    assert result["recordsProcessed"] == 2
    assert result["output"]["format"] == "jsonl"
    lines = (tmp_path / BUCKET / OUTPUT_KEY).read_bytes().splitlines()
    assert [ContentScore.model_validate_json(line).content_id for line in lines] == [
        "video-1",
        "video-2",
    ]


def test_a_retry_writes_the_same_output(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put(BUCKET, INPUT_KEY, orjson.dumps(EVENTS))
    first = ScoreStage(store=store)(EVENT_STEP)
    again = ScoreStage(store=store)(dict(EVENT_STEP, retryCount=1))
    assert again == first


def test_an_unknown_event_kind_fails_the_stage_and_writes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put(BUCKET, INPUT_KEY, orjson.dumps([*EVENTS, _event("e9", "video-3", "teleport")]))
    with pytest.raises(InputValidationError, match=r"\[5\]\.kind") as info:
        ScoreStage(store=store)(EVENT_STEP)
    assert info.value.key == INPUT_KEY
    assert not (tmp_path / BUCKET / OUTPUT_KEY).exists()


# -- the stage on S3 (moto) ----------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("CEAP_STORE", raising=False)
    with mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_the_lambda_entry_point_on_s3(s3: Any) -> None:
    from .handler import handler

    s3.put_object(
        Bucket=BUCKET, Key=INPUT_KEY, Body=orjson.dumps(EVENTS), ContentType="application/json"
    )
    result = handler(EVENT_STEP)
    assert isinstance(handler.runtime.store, S3Store)
    obj = s3.get_object(Bucket=BUCKET, Key=OUTPUT_KEY)
    assert obj["ContentType"] == "application/x-ndjson"
    assert obj["Metadata"]["ceap-stage"] == "ScoreStage"
    assert obj["Metadata"]["ceap-records"] == "2"
    assert result["output"]["bytes"] == obj["ContentLength"]
