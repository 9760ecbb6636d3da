"""A stage end to end on a LocalStore and on S3 (moto): pointer, inputs, formats, write-once."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from ceap_stage import (
    ContextResolutionError,
    ExecutionContext,
    InputValidationError,
    OutputConflictError,
    stage,
)
from ceap_stage._formats import JSON, JSONL, MANIFEST, Manifest, ManifestPart, encode_jsonl

from ._helpers import RUN, Event, Scored, Total, key_of, make_event
from .conftest import Backend

EVENTS = [
    {"user_id": "u1", "kind": "view", "weight": 1.0},
    {"user_id": "u2", "kind": "click", "weight": 2.0},
    {"user_id": "u1", "kind": "share", "weight": 3.0},
]


def _score(events: list[Event]) -> list[Scored]:
    return [Scored(user_id=e.user_id, score=e.weight * 10) for e in events]


def _scorer(backend: Backend, **options: Any) -> Any:
    return stage(store=backend.store, **options)(_score)


def _first_stage_event(initial_data: Any, **extra: Any) -> dict[str, Any]:
    return make_event(previous_stage=None, initial_data=initial_data, **extra)


# -- the result pointer -------------------------------------------------------------------------


def test_result_pointer_shape(backend: Backend):
    backend.put_raw(key_of("Filter"), orjson.dumps(EVENTS), JSON)
    result = _scorer(backend)(make_event())
    body = backend.read(key_of("Score"))
    assert body is not None
    assert result == {
        "status": "SUCCESS",
        "stage": "Score",
        "recordsProcessed": 3,
        "executionId": RUN,
        "output": {
            "bucket": backend.bucket,
            "key": key_of("Score"),
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "format": "json",
        },
    }
    assert orjson.loads(body) == [
        {"user_id": "u1", "score": 10.0},
        {"user_id": "u2", "score": 20.0},
        {"user_id": "u1", "score": 30.0},
    ]


@pytest.mark.parametrize(
    ("output", "records"),
    [([], 0), ([1, 2, 3, 4], 4), ({"a": 1}, 1), ("text", 1), (None, 1), (0, 1)],
)
def test_records_processed_is_the_list_length_else_one(backend: Backend, output, records):
    @stage(store=backend.store)
    def handler(data: dict[str, Any]) -> Any:
        return output

    assert handler(_first_stage_event({}))["recordsProcessed"] == records


def test_the_pointer_stays_small_with_the_longest_identifiers(backend: Backend):
    run, name = "r" * 80, "S" * 80

    @stage(store=backend.store)
    def handler(data: dict[str, Any]) -> list[int]:
        return list(range(10_000))

    result = handler(
        make_event(execution_id=run, current_stage=name, previous_stage=None, initial_data={})
    )
    assert len(orjson.dumps(result)) < 1024
    assert result["output"]["key"] == key_of(name, run)


def test_the_output_is_stored_with_its_content_type(backend: Backend):
    _scorer(backend)(_first_stage_event(EVENTS))
    obj = backend.store.get(backend.bucket, key_of("Score"))
    assert obj is not None
    assert obj.content_type in (JSON, None)  # LocalStore leaves JSON documents bare
    _scorer(backend, output_format="jsonl", name="Score")(_first_stage_event(EVENTS))
    obj = backend.store.get(backend.bucket, key_of("Score"))
    assert obj is not None
    assert obj.content_type == JSONL


# -- first-stage input: initialData ------------------------------------------------------------


def test_initial_data_as_an_object(backend: Backend):
    seen: list[Event] = []

    @stage(store=backend.store)
    def handler(event: Event, ctx: ExecutionContext) -> Total:
        assert ctx.is_first_stage
        seen.append(event)
        return Total(users=1, score=event.weight)

    handler(_first_stage_event(EVENTS[1]))
    assert seen == [Event(user_id="u2", kind="click", weight=2.0)]


def test_initial_data_as_a_json_string(backend: Backend):
    _scorer(backend)(_first_stage_event(orjson.dumps(EVENTS).decode()))
    assert orjson.loads(backend.read(key_of("Score")) or b"")[2]["score"] == 30.0


def test_initial_data_string_for_a_string_model_is_not_decoded(backend: Backend):
    @stage(store=backend.store)
    def handler(text: str) -> int:
        return len(text)

    handler(_first_stage_event("[1, 2]"))
    assert backend.read(key_of("Score")) == b"6"


def test_initial_data_string_that_is_not_json(backend: Backend):
    with pytest.raises(InputValidationError, match="initialData is a string but not JSON") as info:
        _scorer(backend)(_first_stage_event("not json: s3cr3t"))
    assert "s3cr3t" not in str(info.value)
    assert info.value.execution_id == RUN
    assert backend.read(key_of("Score")) is None


def _sqs_record(body: Any, index: int) -> dict[str, Any]:
    return {
        "messageId": f"msg-{index}",
        "receiptHandle": "handle",
        "body": body if isinstance(body, str) else orjson.dumps(body).decode(),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:engagement",
        "awsRegion": "us-east-1",
    }


def test_pipes_batch_feeds_a_list_model_the_decoded_bodies(backend: Backend):
    batch = [_sqs_record(e, i) for i, e in enumerate(EVENTS)]
    result = _scorer(backend)(_first_stage_event(batch))
    assert result["recordsProcessed"] == 3


def test_pipes_batch_as_a_json_string(backend: Backend):
    batch = [_sqs_record(e, i) for i, e in enumerate(EVENTS)]
    result = _scorer(backend)(_first_stage_event(orjson.dumps(batch).decode()))
    assert result["recordsProcessed"] == 3


def test_one_record_pipes_batch_feeds_a_non_list_model_its_body(backend: Backend):
    seen: list[Event] = []

    @stage(store=backend.store)
    def handler(event: Event) -> Total:
        seen.append(event)
        return Total(users=1, score=event.weight)

    handler(_first_stage_event([_sqs_record(EVENTS[2], 0)]))
    assert seen == [Event(user_id="u1", kind="share", weight=3.0)]


def test_multi_record_pipes_batch_to_a_non_list_model_is_an_error(backend: Backend):
    @stage(store=backend.store)
    def handler(event: Event) -> Total:
        raise AssertionError("not called")

    batch = [_sqs_record(e, i) for i, e in enumerate(EVENTS)]
    with pytest.raises(InputValidationError, match="batch of 3 SQS records") as info:
        handler(_first_stage_event(batch))
    assert info.value.execution_id == RUN
    assert info.value.stage == "Score"
    assert backend.read(key_of("Score")) is None


def test_a_pipes_record_whose_body_is_not_json(backend: Backend):
    batch = [_sqs_record(EVENTS[0], 0), _sqs_record("s3cr3t plain text", 1)]
    with pytest.raises(InputValidationError, match="SQS record 1 \\(messageId msg-1\\)") as info:
        _scorer(backend)(_first_stage_event(batch))
    assert "s3cr3t" not in str(info.value)
    assert backend.read(key_of("Score")) is None


def test_a_first_stage_without_initial_data(backend: Backend):
    with pytest.raises(ContextResolutionError, match="has no initialData"):
        _scorer(backend)(make_event(previous_stage=None))
    assert backend.read(key_of("Score")) is None

    @stage(store=backend.store)
    def optional(data: dict[str, Any] | None) -> bool:
        return data is None

    optional(make_event(previous_stage=None))
    assert backend.read(key_of("Score")) == b"true"


def test_initial_data_failing_the_model(backend: Backend):
    with pytest.raises(InputValidationError, match=r"\[1\]\.kind: Field required") as info:
        _scorer(backend)(_first_stage_event([EVENTS[0], {"user_id": "s3cr3t"}]))
    assert "s3cr3t" not in str(info.value)
    assert backend.read(key_of("Score")) is None


# -- output_format="jsonl" ---------------------------------------------------------------------


def test_jsonl_output_and_the_next_stage_reads_it(backend: Backend):
    result = _scorer(backend, output_format="jsonl")(_first_stage_event(EVENTS[:1]))
    body = backend.read(key_of("Score"))
    assert body == b'{"user_id":"u1","score":10.0}\n'
    assert result["output"]["format"] == "jsonl"
    assert result["output"]["bytes"] == len(body)
    assert result["recordsProcessed"] == 1

    @stage(store=backend.store)
    def total(scored: list[Scored]) -> Total:
        return Total(users=len(scored), score=sum(s.score for s in scored))

    # One record as JSON Lines is still a list: the Content-Type says so.
    total(make_event(current_stage="Total", previous_stage="Score"))
    assert orjson.loads(backend.read(key_of("Total")) or b"") == {"users": 1, "score": 10.0}


# -- write_once -------------------------------------------------------------------------------


def test_write_once_identical_output_is_done(backend: Backend):
    handler = _scorer(backend, write_once=True)
    first = handler(_first_stage_event(EVENTS))
    second = handler(_first_stage_event(EVENTS))  # a Step Functions retry of the same stage
    assert second == first


def test_write_once_different_output_is_a_conflict(backend: Backend):
    handler = _scorer(backend, write_once=True)
    handler(_first_stage_event(EVENTS))
    before = backend.read(key_of("Score"))
    with pytest.raises(OutputConflictError, match="different output already exists") as info:
        handler(_first_stage_event(EVENTS[:1]))
    assert info.value.execution_id == RUN
    assert info.value.stage == "Score"
    assert info.value.key == key_of("Score")
    assert backend.read(key_of("Score")) == before


def test_without_write_once_a_rerun_overwrites(backend: Backend):
    handler = _scorer(backend)
    handler(_first_stage_event(EVENTS))
    handler(_first_stage_event(EVENTS[:1]))
    assert len(orjson.loads(backend.read(key_of("Score")) or b"")) == 1


# -- reading the three formats ------------------------------------------------------------------


def _manifest_parts(backend: Backend, records: list[Any], content_type: str | None) -> None:
    prefix = f"executions/{RUN}/Filter/parts/"
    parts = []
    for index, chunk in enumerate((records[:2], records[2:])):
        body = encode_jsonl(chunk)
        key = f"{prefix}part-{index:05d}.jsonl"
        backend.put_raw(key, body, JSONL)
        parts.append(ManifestPart(key, len(body)))
    manifest = Manifest(records=len(records), parts=tuple(parts))
    backend.put_raw(key_of("Filter"), manifest.to_bytes(), content_type)


@pytest.mark.parametrize("typed", [True, False], ids=["content-type", "sniffed"])
@pytest.mark.parametrize("fmt", ["json", "jsonl", "manifest"])
def test_a_list_model_reads_every_format(backend: Backend, fmt: str, typed: bool):
    if fmt == "json":
        backend.put_raw(key_of("Filter"), orjson.dumps(EVENTS), JSON if typed else None)
    elif fmt == "jsonl":
        backend.put_raw(key_of("Filter"), encode_jsonl(EVENTS), JSONL if typed else None)
    else:
        _manifest_parts(backend, EVENTS, MANIFEST if typed else None)
    result = _scorer(backend)(make_event())
    assert result["recordsProcessed"] == 3
    assert [r["score"] for r in orjson.loads(backend.read(key_of("Score")) or b"")] == [
        10.0,
        20.0,
        30.0,
    ]


def test_a_single_json_object_is_never_wrapped_for_a_list_model(backend: Backend):
    backend.put_raw(key_of("Filter"), orjson.dumps(EVENTS[0]), JSON)
    with pytest.raises(InputValidationError, match="fails the model list\\[Event\\]"):
        _scorer(backend)(make_event())
    backend.put_raw(key_of("Filter"), orjson.dumps(EVENTS[0]) + b"\n", None)  # sniffed: document
    with pytest.raises(InputValidationError, match="fails the model list\\[Event\\]"):
        _scorer(backend)(make_event())
    assert backend.read(key_of("Score")) is None


def test_an_object_model_reads_a_json_document(backend: Backend):
    backend.put_raw(key_of("Filter"), orjson.dumps({"users": 2, "score": 1.5}), None)

    @stage(store=backend.store)
    def handler(total: Total) -> float:
        return total.score

    handler(make_event())
    assert backend.read(key_of("Score")) == b"1.5"


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("missing", "names a part that does not exist"),
        ("size", "the manifest says"),
        ("count", "says 4 records but its parts hold 3"),
        ("outside", "points outside the stage's parts prefix"),
        ("badline", "JSON Lines line 1 is not valid JSON"),
    ],
)
def test_damaged_manifests_are_input_validation_errors(backend: Backend, damage, match):
    prefix = f"executions/{RUN}/Filter/parts/"
    body = encode_jsonl(EVENTS)
    key = f"{prefix}part-00000.jsonl"
    records, size = 3, len(body)
    if damage == "size":
        size += 1
    if damage == "count":
        records = 4
    if damage == "outside":
        key = key_of("Other")
    if damage == "badline":
        body = b"s3cr3t\n"
        size = len(body)
    if damage != "missing":
        backend.put_raw(key, body, JSONL)
    manifest = Manifest(records=records, parts=(ManifestPart(key, size),))
    backend.put_raw(key_of("Filter"), manifest.to_bytes(), MANIFEST)
    with pytest.raises(InputValidationError, match=match) as info:
        _scorer(backend)(make_event())
    assert info.value.execution_id == RUN
    assert info.value.stage == "Score"
    assert info.value.key is not None
    assert "s3cr3t" not in str(info.value)
    assert backend.read(key_of("Score")) is None
