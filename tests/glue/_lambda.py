"""Lambda stages (real ``@stage`` handlers) on either side of a Glue stage, and store helpers."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from ceap_stage import LocalStore, StageHandler, stage
from ceap_stage._formats import JSONL, MANIFEST, Manifest

from .conftest import BUCKET, RUN


class Event(BaseModel):
    """An engagement event."""

    customer_id: str
    kind: str
    seq: int


def ingest_stage(store: LocalStore) -> StageHandler:
    """A first Lambda stage: validates the initial events and writes them as a JSON document."""

    @stage(store=store)
    def ingest(events: list[Event]) -> list[Event]:
        return events

    return ingest


def report_stage(store: LocalStore, model: Any = list[dict[str, Any]]) -> StageHandler:
    """A Lambda stage after the Glue stage: passes its input through unchanged."""

    @stage(store=store, input_model=model, output_model=model)
    def report(rows: Any) -> Any:
        return rows

    return report


def lambda_event(current: str, previous: str | None, **extra: Any) -> dict[str, Any]:
    """A Step Functions event for a Lambda stage of the test execution."""
    event: dict[str, Any] = {"executionId": RUN, "currentStage": current, "workflowBucket": BUCKET}
    if previous is not None:
        event["previousStage"] = previous
    event.update(extra)
    return event


def output_of(store: LocalStore, stage_name: str) -> Any:
    """The decoded ``output.json`` of a stage of the test execution."""
    obj = store.get(BUCKET, f"executions/{RUN}/{stage_name}/output.json")
    assert obj is not None
    return orjson.loads(obj.body)


def manifest_of(store: LocalStore, stage_name: str) -> Manifest:
    """The manifest a stage wrote (checking its Content-Type)."""
    obj = store.get(BUCKET, f"executions/{RUN}/{stage_name}/output.json")
    assert obj is not None
    assert obj.content_type == MANIFEST
    return Manifest.from_value(orjson.loads(obj.body))


def put_output(store: LocalStore, stage_name: str, body: bytes, content_type: str) -> str:
    """Write a stage's ``output.json`` as a previous stage would, returning its key."""
    key = f"executions/{RUN}/{stage_name}/output.json"
    store.put(BUCKET, key, body, content_type=content_type)
    return key


def put_jsonl(store: LocalStore, stage_name: str, records: list[Any]) -> str:
    """Write JSON Lines as a streaming Lambda stage would."""
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    return put_output(store, stage_name, body, JSONL)
