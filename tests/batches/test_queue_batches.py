"""Queue batches (contract section 8): bodies, the record model, errors and partial failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from ceap_stage import (
    HandlerDefinitionError,
    InputValidationError,
    LocalStore,
    SqsRecord,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage._io import OutputRef
from ceap_stage.testing import run_stage

from .sqs_records import INVALID, batch_of_50, engagement_body, message_id, sqs_record

BUCKET = "ceap-test-bucket"


class Engagement(BaseModel):
    customerId: str
    score: float


class Tagged(SqsRecord):
    """A record model of the project's own, with a typed view of the body."""

    @property
    def payload(self) -> Engagement:
        return Engagement.model_validate_json(self.body)


def _rejected_lines(store: LocalStore, stage_name: str) -> list[dict[str, Any]]:
    ref = OutputRef(BUCKET, "run-1", stage_name)
    stored = store.get(BUCKET, ref.rejected_key)
    assert stored is not None
    return [orjson.loads(line) for line in stored.body.splitlines()]


def test_reject_leaves_out_three_of_fifty(tmp_path):
    store = LocalStore(tmp_path)
    seen: list[int] = []

    @stage(name="Ingest", on_invalid_record="reject")
    def ingest(events: list[Engagement]) -> list[Engagement]:
        seen.append(len(events))
        return events

    run = run_stage(ingest, store=store, initial_data=batch_of_50(), execution_id="run-1")

    assert seen == [47]
    assert len(run.output) == 47
    assert {e.customerId for e in run.output}.isdisjoint({f"C{n:05d}" for n in INVALID})
    assert run.result["recordsProcessed"] == 47
    assert run.result["rejected"] == 3
    expected = [message_id(n) for n in INVALID]
    assert run.result["batchItemFailures"] == [{"itemIdentifier": m} for m in expected]
    lines = _rejected_lines(store, "Ingest")
    assert [(line["messageId"], line["index"]) for line in lines] == list(
        zip(expected, INVALID, strict=True)
    )
    assert "not JSON" in lines[0]["error"]
    assert "score" in lines[1]["error"]
    assert "Field required" in lines[1]["error"]
    assert "score" in lines[2]["error"]
    # No payload in the rejects: neither the text body nor the bad value.
    text = json.dumps(lines)
    assert "clicked" not in text
    assert "high" not in text
    assert "C00023" not in text


def test_reject_with_nothing_invalid_writes_an_empty_list(tmp_path):
    store = LocalStore(tmp_path)

    @stage(name="Ingest", on_invalid_record="reject")
    def ingest(events: list[Engagement]) -> int:
        return len(events)

    batch = [sqs_record(n, engagement_body(n)) for n in range(5)]
    run = run_stage(ingest, store=store, initial_data=batch, execution_id="run-1")
    assert run.output == 5
    assert run.result["rejected"] == 0
    assert run.result["batchItemFailures"] == []
    assert _rejected_lines(store, "Ingest") == []


def test_fail_is_the_default_and_names_the_message_id(tmp_path):
    store = LocalStore(tmp_path)

    @stage(name="Ingest")
    def ingest(events: list[Engagement]) -> list[Engagement]:
        return events

    with pytest.raises(InputValidationError) as caught:
        run_stage(ingest, store=store, initial_data=batch_of_50(), execution_id="run-1")
    message = str(caught.value)
    assert "SQS record 7" in message
    assert message_id(7) in message
    assert "not JSON" in message
    assert store.get(BUCKET, OutputRef(BUCKET, "run-1", "Ingest").key) is None
    assert store.get(BUCKET, OutputRef(BUCKET, "run-1", "Ingest").rejected_key) is None


def test_validation_error_names_the_message_id_not_only_the_index(tmp_path):
    @stage
    def ingest(events: list[Engagement]) -> int:
        return len(events)

    batch = [sqs_record(0, engagement_body(0)), sqs_record(1, json.dumps({"customerId": "x"}))]
    with pytest.raises(InputValidationError) as caught:
        run_stage(ingest, store=LocalStore(tmp_path), initial_data=batch)
    message = str(caught.value)
    assert f"SQS record 1 (messageId {message_id(1)})" in message
    assert "fails the model Engagement" in message
    assert "score" in message


def test_plain_text_bodies_reach_a_list_of_str(tmp_path):
    @stage
    def words(lines: list[str]) -> list[str]:
        return [line.upper() for line in lines]

    bodies = ["customer C1 clicked", '"quoted json string"', "42", '{"a": 1}']
    batch = [sqs_record(n, body) for n, body in enumerate(bodies)]
    run = run_stage(words, store=LocalStore(tmp_path), initial_data=batch)
    assert run.output == ["CUSTOMER C1 CLICKED", "QUOTED JSON STRING", "42", '{"A": 1}']


def test_a_plain_text_body_reaches_a_str_model(tmp_path):
    @stage
    def one(line: str) -> int:
        return len(line)

    run = run_stage(one, store=LocalStore(tmp_path), initial_data=[sqs_record(0, "hello there")])
    assert run.output == 11


def test_a_json_body_is_still_decoded_for_a_dict_model(tmp_path):
    @stage
    def one(events: list[dict[str, Any]]) -> list[str]:
        return [e["customerId"] for e in events]

    run = run_stage(
        one, store=LocalStore(tmp_path), initial_data=[sqs_record(3, engagement_body(3))]
    )
    assert run.output == ["C00003"]


def test_the_record_model_receives_the_records_themselves(tmp_path):
    got: list[SqsRecord] = []

    @stage
    def records(batch: list[SqsRecord]) -> list[str]:
        got.extend(batch)
        return [r.message_id for r in batch]

    batch = [sqs_record(n, "plain text, not JSON", fifo=True) for n in range(3)]
    run = run_stage(records, store=LocalStore(tmp_path), initial_data=batch)
    assert run.output == [message_id(n) for n in range(3)]
    first = got[0]
    assert first.body == "plain text, not JSON"
    assert first.receipt_handle == batch[0]["receiptHandle"]
    assert first.md5_of_body == batch[0]["md5OfBody"]
    assert first.event_source_arn == batch[0]["eventSourceARN"]
    assert batch[0]["eventSourceARN"].endswith("engagement-events.fifo")
    assert first.aws_region == "eu-west-1"
    assert first.message_attributes["tenant"].string_value == "marketplace-eu"
    assert first.message_group_id == "customer-0"
    assert first.sequence_number == batch[0]["attributes"]["SequenceNumber"]
    assert first.message_deduplication_id == batch[0]["attributes"]["MessageDeduplicationId"]
    assert first.approximate_receive_count == 1
    assert first.model_dump(by_alias=True, exclude_none=True)["messageId"] == message_id(0)


def test_a_subclass_of_the_record_model_can_check_the_body(tmp_path):
    @stage(on_invalid_record="reject", name="Ingest")
    def tagged(batch: list[Tagged]) -> list[float]:
        return [r.payload.score for r in batch]

    broken = sqs_record(1, "{}")
    del broken["messageId"]
    broken["messageId"] = 17  # not a string: this record fails the record model
    batch = [sqs_record(0, engagement_body(0)), broken]
    store = LocalStore(tmp_path)
    run = run_stage(tagged, store=store, initial_data=batch, execution_id="run-1")
    assert run.output == [0.5]
    assert run.result["rejected"] == 1
    assert _rejected_lines(store, "Ingest")[0]["index"] == 1


def test_workflow_lambda_handler_class_attribute(tmp_path):
    class Ingest(WorkflowLambdaHandler[list[Engagement], int]):
        name = "Ingest"
        on_invalid_record = "reject"

        def process(self, data: list[Engagement], ctx: Any) -> int:
            return len(data)

    store = LocalStore(tmp_path)
    run = run_stage(Ingest(), store=store, initial_data=batch_of_50(), execution_id="run-1")
    assert run.output == 47
    assert run.result["rejected"] == 3


def test_a_streamed_model_gets_the_valid_records(tmp_path):
    @stage(on_invalid_record="reject")
    def streamed(events: Iterator[Engagement]) -> int:
        return sum(1 for _ in events)

    run = run_stage(streamed, store=LocalStore(tmp_path), initial_data=batch_of_50())
    assert run.output == 47
    assert run.result["rejected"] == 3


def test_a_single_record_model_whose_record_is_rejected_fails(tmp_path):
    store = LocalStore(tmp_path)

    @stage(on_invalid_record="reject", name="One")
    def one(event: Engagement) -> float:
        return event.score

    with pytest.raises(InputValidationError) as caught:
        run_stage(one, store=store, initial_data=[sqs_record(5, "nope")], execution_id="run-1")
    assert message_id(5) in str(caught.value)
    assert "nothing is left" in str(caught.value)
    assert store.get(BUCKET, OutputRef(BUCKET, "run-1", "One").key) is None


@pytest.mark.parametrize("value", ["skip", "REJECT", None, True])
def test_an_unknown_on_invalid_record_is_refused_at_decoration(value):
    with pytest.raises(HandlerDefinitionError) as caught:

        @stage(on_invalid_record=value)
        def ingest(events: list[Engagement]) -> int:
            return len(events)

    assert "on_invalid_record" in str(caught.value)
    assert repr(value) in str(caught.value)


def test_an_unknown_class_attribute_is_refused_when_the_class_is_made():
    with pytest.raises(HandlerDefinitionError) as caught:

        class Ingest(WorkflowLambdaHandler[list[Engagement], int]):
            on_invalid_record = "drop"  # type: ignore[assignment]

            def process(self, data: list[Engagement], ctx: Any) -> int:
                return len(data)

    assert "Ingest" in str(caught.value)
    assert "on_invalid_record" in str(caught.value)
    assert "'drop'" in str(caught.value)
