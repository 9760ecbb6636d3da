"""build_event: the wire event of docs/contract.md section 2, accepted by the runtime's parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceap_stage._context import EVENT_FIELDS, parse_event
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
        ceap_phase="plan",
        recordsPerShard=10,  # the wire name is accepted as well
    )
    assert event["workflowName"] == "orders"
    assert event["retryCount"] == 2
    assert event["redriveCount"] == 1
    assert (event["ceapPhase"], event["recordsPerShard"]) == ("plan", 10)
    parsed = parse_event(event)
    assert (parsed.workflow_name, parsed.retry_count, parsed.redrive_count) == ("orders", 2, 1)
    assert parsed.workflow_bucket == "my-bucket"


def test_a_keyword_that_is_no_event_field_is_refused() -> None:
    with pytest.raises(TypeError) as raised:
        build_event(current_stage="Score", previous_stag="Filter")
    assert str(raised.value) == (
        "build_event() got an unexpected keyword argument 'previous_stag' "
        "(did you mean previous_stage?)"
    )
    with pytest.raises(TypeError, match=r"'customField' \(its event fields are workflow_name,"):
        build_event(current_stage="Score", customField=True)


def test_a_field_the_contract_does_not_name_is_added_to_the_dict_and_ignored() -> None:
    event = {**build_event(current_stage="Score", previous_stage="Filter"), "customField": True}
    assert parse_event(event).previous_stage == "Filter"


def test_the_event_fields_are_the_contracts() -> None:
    contract = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
    assert EVENT_FIELDS
    for name in EVENT_FIELDS:
        assert f"`{name}`" in contract or f'"{name}"' in contract, name
