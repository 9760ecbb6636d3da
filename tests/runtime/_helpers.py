"""Models, events and store helpers shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from ceap_stage import CeapStageError, Store, StoredObject
from ceap_stage._formats import JSON
from ceap_stage._store import PutResult

BUCKET = "ceap-test-bucket"
RUN = "run-2024-05-01"
_ABSENT: Any = object()


class Event(BaseModel):
    """An engagement event, as the first stage of a pipeline reads it."""

    user_id: str
    kind: str
    weight: float = 1.0


class Scored(BaseModel):
    """An event with a score."""

    user_id: str
    score: float


class Total(BaseModel):
    """A one-record aggregate."""

    users: int
    score: float


def make_event(
    *,
    execution_id: Any = RUN,
    current_stage: Any = "Score",
    previous_stage: Any = "Filter",
    bucket: Any = BUCKET,
    initial_data: Any = _ABSENT,
    **extra: Any,
) -> dict[str, Any]:
    """A Step Functions event in wire (camelCase) names; ``_ABSENT`` values are left out."""
    event: dict[str, Any] = {
        "executionId": execution_id,
        "currentStage": current_stage,
        "previousStage": previous_stage,
        "workflowBucket": bucket,
    }
    if initial_data is not _ABSENT:
        event["initialData"] = initial_data
    event.update(extra)
    return {k: v for k, v in event.items() if v is not _ABSENT}


def key_of(stage: str, execution_id: str = RUN) -> str:
    """The contract's output key of ``stage``."""
    return f"executions/{execution_id}/{stage}/output.json"


def assert_facts(
    error: CeapStageError, *, execution_id: str, stage: str, bucket: str | None, key: str | None
) -> None:
    """The error names the execution id, the stage and the key, as attributes and in its text."""
    text = str(error)
    assert error.execution_id == execution_id
    assert error.stage == stage
    assert f"execution_id={execution_id}" in text
    assert f"stage={stage}" in text
    if key is not None:
        assert error.key == key
        assert key in text
    if bucket is not None:
        assert error.bucket == bucket


class CountingStore(Store):
    """Delegates to a real store and records every call, to prove what was (not) touched."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str, str]] = []

    def get(self, bucket: str, key: str) -> StoredObject | None:
        self.calls.append(("get", bucket, key))
        return self.inner.get(bucket, key)

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str = JSON,
        metadata: Mapping[str, str] | None = None,
        if_none_match: bool = False,
    ) -> PutResult:
        self.calls.append(("put", bucket, key))
        return self.inner.put(
            bucket,
            key,
            body,
            content_type=content_type,
            metadata=metadata,
            if_none_match=if_none_match,
        )

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        self.calls.append(("list", bucket, prefix))
        return self.inner.list_keys(bucket, prefix)

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.calls.append(("delete", bucket, ",".join(keys)))
        self.inner.delete(bucket, keys)
