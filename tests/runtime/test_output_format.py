"""``"outputFormat": "json"`` in the event: one JSON document, never JSON Lines or a manifest.

The generated state machine sends it to the stage before a Kotlin CEAP stage, which reads
``output.json`` with ``readTree`` (docs/contract.md section 9).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ceap_stage import (
    ContextResolutionError,
    HandlerDefinitionError,
    LocalStore,
    OutputValidationError,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage._formats import decode

RUN = "run-fmt"
BUCKET = "wf-bucket"


class Candidate(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    customer_id: str
    engagement_score: float


def _event(stage_name: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "executionId": RUN,
        "currentStage": stage_name,
        "workflowBucket": BUCKET,
        "initialData": n,
        **extra,
    }


def _candidates(n: int) -> list[Candidate]:
    return [Candidate(customer_id=f"c-{i:05d}", engagement_score=i / 3) for i in range(n)]


def _keys(store: LocalStore, stage_name: str) -> list[str]:
    return store.list_keys(BUCKET, f"executions/{RUN}/{stage_name}/")


def _output(store: LocalStore, stage_name: str) -> tuple[str, Any, str | None]:
    obj = store.get(BUCKET, f"executions/{RUN}/{stage_name}/output.json")
    assert obj is not None
    fmt, value = decode(obj.body, obj.content_type)
    return fmt, value, obj.content_type


def test_a_list_output_that_would_be_a_manifest_is_one_document(tmp_path: Path):
    store = LocalStore(tmp_path)

    @stage(name="Before", store=store, max_single_object_bytes=300, part_bytes=200)
    def before(n: int) -> list[Candidate]:
        return _candidates(n)

    # Without outputFormat, 50 candidates (~2.4 kB) go to parts and a manifest ...
    plain = before(_event("Before", 50, executionId="run-plain"), None)
    assert plain["output"]["format"] == "manifest"
    assert len(store.list_keys(BUCKET, "executions/run-plain/Before/parts/")) > 1
    # ... asked for one document, the same output is one JSON array, by alias, and nothing else.
    pointer = before(_event("Before", 50, outputFormat="json"), None)
    assert pointer["output"]["format"] == "json"
    assert pointer["recordsProcessed"] == 50
    assert _keys(store, "Before") == [f"executions/{RUN}/Before/output.json"]
    fmt, value, _ = _output(store, "Before")
    assert fmt == "json"  # recognised by content: one JSON value
    assert value == [c.model_dump(by_alias=True) for c in _candidates(50)]
    assert value[0].keys() == {"customerId", "engagementScore"}


def test_a_streamed_output_is_one_document(tmp_path: Path):
    store = LocalStore(tmp_path)

    @stage(name="Stream", store=store, part_bytes=200)
    def stream(n: int) -> Iterator[Candidate]:
        yield from _candidates(n)

    plain = stream(_event("Stream", 40, executionId="run-plain"), None)
    assert plain["output"]["format"] == "manifest"
    pointer = stream(_event("Stream", 40, outputFormat="json"), None)
    assert pointer["output"]["format"] == "json"
    assert _keys(store, "Stream") == [f"executions/{RUN}/Stream/output.json"]
    fmt, value, _ = _output(store, "Stream")
    assert fmt == "json"
    assert [c["customerId"] for c in value] == [f"c-{i:05d}" for i in range(40)]


def test_a_json_lines_stage_writes_one_document_when_asked(tmp_path: Path):
    store = LocalStore(tmp_path)

    class Lines(WorkflowLambdaHandler[int, list[Candidate]]):
        name = "Lines"
        output_format = "jsonl"

        def process(self, data: int, ctx: Any) -> list[Candidate]:
            return _candidates(data)

    handler = Lines(store=store)
    assert handler(_event("Lines", 3), None)["output"]["format"] == "jsonl"
    assert handler(_event("Lines", 3, outputFormat="json"), None)["output"]["format"] == "json"
    fmt, value, _ = _output(store, "Lines")
    assert (fmt, len(value)) == ("json", 3)


@pytest.mark.parametrize("streamed", [False, True])
def test_an_output_larger_than_a_document_may_be_fails_and_writes_nothing(
    tmp_path: Path, streamed: bool
):
    store = LocalStore(tmp_path)
    options: dict[str, Any] = {"store": store, "max_document_bytes": 1000, "part_bytes": 200}
    if streamed:

        @stage(name="Big", **options)
        def big(n: int) -> Iterator[Candidate]:
            yield from _candidates(n)
    else:

        @stage(name="Big", **options)
        def big(n: int) -> list[Candidate]:
            return _candidates(n)

    with pytest.raises(OutputValidationError) as caught:
        big(_event("Big", 100, outputFormat="json"), None)
    message = str(caught.value)
    assert "one JSON document" in message
    assert "1000 bytes" in message
    assert "stage=Big" in message
    assert f"executions/{RUN}/Big/output.json" in message
    assert _keys(store, "Big") == []
    # Within the limit, the same stage writes its one document.
    assert big(_event("Big", 5, outputFormat="json"), None)["output"]["format"] == "json"


def test_the_default_document_limit_is_above_the_single_object_limit():
    from ceap_stage._io import DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_MAX_SINGLE_OBJECT_BYTES

    assert DEFAULT_MAX_DOCUMENT_BYTES == 256 * 1024 * 1024 > DEFAULT_MAX_SINGLE_OBJECT_BYTES


@pytest.mark.parametrize("value", ["jsonl", "manifest", "JSON", 1])
def test_an_unknown_output_format_is_refused_before_anything_is_written(tmp_path: Path, value: Any):
    store = LocalStore(tmp_path)

    @stage(name="Fmt", store=store)
    def fmt(n: int) -> list[int]:
        return list(range(n))

    with pytest.raises(ContextResolutionError, match="outputFormat") as caught:
        fmt(_event("Fmt", 3, outputFormat=value), None)
    assert caught.value.execution_id == RUN
    assert _keys(store, "Fmt") == []


@pytest.mark.parametrize("size", [0, -1, True])
def test_max_document_bytes_must_be_a_positive_size(size: Any):
    with pytest.raises(HandlerDefinitionError, match="max_document_bytes"):

        @stage(max_document_bytes=size)
        def bad(n: int) -> int:
            return n


def test_a_document_is_byte_identical_on_a_retry(tmp_path: Path):
    store = LocalStore(tmp_path)

    @stage(name="Again", store=store, max_single_object_bytes=100)
    def again(n: int) -> list[Candidate]:
        return _candidates(n)

    first = again(_event("Again", 20, outputFormat="json"), None)
    body = store.get(BUCKET, f"executions/{RUN}/Again/output.json")
    second = again(_event("Again", 20, outputFormat="json", retryCount=1), None)
    assert first["output"]["sha256"] == second["output"]["sha256"]
    assert body is not None
    assert orjson.loads(body.body)[0] == {"customerId": "c-00000", "engagementScore": 0.0}
