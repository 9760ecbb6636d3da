"""build_event: the wire event of docs/contract.md section 2, accepted by the runtime's parser."""

from __future__ import annotations

from ceap_stage._context import parse_event
from ceap_stage.testing import build_event


def test_a_later_stage_event() -> None:
    event = build_event(current_stage="Score", previous_stage="Filter")
    assert event == {
        "executionId": "test-execution",
        "currentStage": "Score",
        "previousStage": "Filter",
        "workflowBucket": "ceap-test-bucket",
    }
    parsed = parse_event(event)
    assert (parsed.execution_id, parsed.current_stage, parsed.previous_stage) == (
        "test-execution",
        "Score",
        "Filter",
    )
    assert parsed.has_initial_data is False


def test_a_first_stage_event_carries_initial_data_only_when_given() -> None:
    assert "initialData" not in build_event(current_stage="Ingest")
    assert "previousStage" not in build_event(current_stage="Ingest")
    event = build_event(current_stage="Ingest", initial_data=None)
    assert event["initialData"] is None
    assert parse_event(event).has_initial_data is True
    batch = [{"messageId": "m1", "body": '{"id": 1}', "eventSource": "aws:sqs"}]
    assert build_event(current_stage="Ingest", initial_data=batch)["initialData"] == batch


def test_extra_fields_become_camel_case() -> None:
    event = build_event(
        current_stage="Score",
        execution_id="run-3",
        workflow_bucket="my-bucket",
        workflow_name="orders",
        retry_count=2,
        redrive_count=1,
        customField=True,
    )
    assert event["workflowName"] == "orders"
    assert event["retryCount"] == 2
    assert event["redriveCount"] == 1
    assert event["customField"] is True
    parsed = parse_event(event)
    assert (parsed.workflow_name, parsed.retry_count, parsed.redrive_count) == ("orders", 2, 1)
    assert parsed.workflow_bucket == "my-bucket"
