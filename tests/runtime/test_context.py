"""docs/contract.md section 2: the event, identifier rules, ARN reduction, bucket pinning."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ceap_stage import ContextResolutionError, ExecutionContext, LocalStore, stage
from ceap_stage._context import (
    output_key,
    parse_event,
    parts_prefix,
    validate_bucket,
    validate_execution_id,
    validate_identifier,
)

from ._helpers import _ABSENT, BUCKET, RUN, CountingStore, key_of, make_event

# -- identifier rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "x" * 80,
        "FilterStage",
        "run-2024-05-01T10:00:00Z",
        "abc_123.def",
        "...",
        ".hidden",
        "ünïcödé-名前",
        "a=b,c;d",
    ],
)
def test_valid_identifiers_are_returned_unchanged(value):
    assert validate_identifier(value, "currentStage") == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must not be empty"),
        ("x" * 81, "81 characters long"),
        ("a/b", "must not contain"),
        ("a\\b", "must not contain"),
        ("a b", "must not contain"),
        ("a\tb", "must not contain"),
        ("a\nb", "must not contain"),
        ("a\rb", "must not contain"),
        ("nul\x00", "must not contain"),
        ("del\x7f", "must not contain"),
        ("c1\x85", "must not contain"),
        ("nbsp\u00a0x", "must not contain"),
        ("em\u2003space", "must not contain"),
        ("line\u2028sep", "must not contain"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
    ],
)
def test_invalid_identifiers_are_refused(value, reason):
    with pytest.raises(ContextResolutionError, match="currentStage") as info:
        validate_identifier(value, "currentStage")
    assert reason in str(info.value)


@pytest.mark.parametrize("value", [None, 42, 1.5, ["a"], {"a": 1}, b"bytes"])
def test_non_string_identifiers_are_refused(value):
    with pytest.raises(ContextResolutionError, match="must be a string"):
        validate_identifier(value, "executionId")


# -- ARN reduction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        ("arn:aws:states:us-east-1:123456789012:execution:Engagement:run-7", "run-7"),
        (
            "arn:aws:states:eu-west-1:123456789012:express:Engagement:run-8:"
            "1b9c3f3e-5c2d-4d0e-9f3a-2b7e6c1d0a99",
            "run-8",
        ),
        ("arn:aws-cn:states:cn-north-1:123456789012:execution:Flow:cn-run", "cn-run"),
        ("arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:Flow:gov", "gov"),
    ],
)
def test_execution_arns_are_reduced_to_the_execution_name(arn, name):
    assert validate_execution_id(arn) == name
    event = parse_event(make_event(execution_id=arn))
    assert event.execution_id == name


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:states:us-east-1:123456789012:stateMachine:Engagement",
        "arn:aws:lambda:us-east-1:123456789012:function:score",
        "arn:aws:s3:::ceap-test-bucket",
        "arn:aws:states:us-east-1:12345:execution:Engagement:run-7",  # account is not 12 digits
        "arn:aws:states:us-east-1:123456789012:execution:Engagement",  # no execution name
        "arn:aws:states:us-east-1:123456789012:activity:Work",
    ],
)
def test_other_arns_are_refused(arn):
    with pytest.raises(ContextResolutionError, match="not a Step Functions execution ARN"):
        parse_event(make_event(execution_id=arn))


def test_a_reduced_name_still_obeys_the_identifier_rules():
    arn = "arn:aws:states:us-east-1:123456789012:execution:Flow:a/b"
    with pytest.raises(ContextResolutionError, match="must not contain"):
        validate_execution_id(arn)


# -- buckets and keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "ceap-workflow-dev-123456789", "a.b-c", "x" * 63])
def test_valid_bucket_names(name):
    assert validate_bucket(name) == name


@pytest.mark.parametrize(
    "name",
    ["ab", "x" * 64, "Upper", "under_score", "-start", "end-", "a..b", "192.168.1.1", "xn--abc"],
)
def test_invalid_bucket_names_are_refused(name):
    with pytest.raises(ContextResolutionError, match="not a valid S3 bucket name") as caught:
        validate_bucket(name, "--artifacts-bucket")
    message = str(caught.value)
    assert message.startswith("--artifacts-bucket is not a valid S3 bucket name: ")
    assert repr(name if len(name) <= 70 else name[:67] + "...") in message  # the value given
    assert "3-63 characters: lowercase letters, digits, '.' and '-'" in message  # the rule


def test_layout_keys():
    assert output_key("run-1", "Filter") == "executions/run-1/Filter/output.json"
    assert parts_prefix("run-1", "Filter") == "executions/run-1/Filter/parts/"


# -- the event -----------------------------------------------------------------------------------


def test_camel_case_fields_are_read():
    event = parse_event(
        make_event(
            workflowName="Engagement",
            retryCount=2,
            redriveCount=1,
        )
    )
    assert event.execution_id == RUN
    assert event.current_stage == "Score"
    assert event.previous_stage == "Filter"
    assert event.workflow_bucket == BUCKET
    assert event.workflow_name == "Engagement"
    assert event.retry_count == 2
    assert event.redrive_count == 1
    assert event.has_initial_data is False


def test_snake_case_names_are_not_the_wire_format():
    snake = {
        "execution_id": RUN,
        "current_stage": "Score",
        "previous_stage": "Filter",
        "workflow_bucket": BUCKET,
    }
    with pytest.raises(ContextResolutionError, match="no executionId"):
        parse_event(snake)


def test_unknown_fields_are_ignored():
    event = parse_event(
        make_event(
            Execution={"Name": "ignored"},
            stateEnteredTime="2024-05-01T10:00:00Z",
            somethingAwsAddsLater={"nested": [1, 2]},
        )
    )
    assert event.execution_id == RUN


def test_optional_fields_default():
    event = parse_event(make_event(previous_stage=_ABSENT, initial_data={"a": 1}))
    assert event.previous_stage is None
    assert event.workflow_name is None
    assert event.retry_count == 0
    assert event.redrive_count == 0
    assert event.has_initial_data is True
    assert event.initial_data == {"a": 1}


def test_null_previous_stage_means_first_stage_and_null_initial_data_is_present():
    event = parse_event(make_event(previous_stage=None, initial_data=None))
    assert event.previous_stage is None
    assert event.has_initial_data is True
    assert event.initial_data is None


@pytest.mark.parametrize(
    ("event", "match"),
    [
        (["not", "an", "object"], "must be a JSON object"),
        ("a string", "must be a JSON object"),
        (None, "must be a JSON object"),
        (make_event(execution_id=_ABSENT), "no executionId"),
        (make_event(execution_id=12), "executionId must be a string"),
        (make_event(current_stage=_ABSENT), "no currentStage"),
        (make_event(current_stage=["Score"]), "currentStage must be a string"),
        (make_event(previous_stage=5), "previousStage must be a string"),
        (make_event(previous_stage="Score"), "previousStage must differ"),
        (make_event(bucket=_ABSENT), "no workflowBucket"),
        (make_event(bucket=7), "workflowBucket must be a string"),
        (make_event(bucket="Not_A_Bucket"), "not a valid S3 bucket name"),
        (make_event(retryCount="1"), "retryCount must be a non-negative integer"),
        (make_event(retryCount=-1), "retryCount must be a non-negative integer"),
        (make_event(retryCount=True), "retryCount must be a non-negative integer"),
        (make_event(redriveCount=1.5), "redriveCount must be a non-negative integer"),
        (make_event(workflowName=3), "workflowName must be a string or null"),
    ],
)
def test_events_that_break_the_contract_are_refused(event, match):
    with pytest.raises(ContextResolutionError, match=match):
        parse_event(event)


def test_errors_after_the_execution_id_name_it_and_the_stage():
    with pytest.raises(ContextResolutionError) as info:
        parse_event(make_event(retryCount=-1))
    assert info.value.execution_id == RUN
    assert info.value.stage == "Score"
    assert f"execution_id={RUN}" in str(info.value)


def test_null_counts_mean_zero():
    event = parse_event(make_event(retryCount=None, redriveCount=None))
    assert (event.retry_count, event.redrive_count) == (0, 0)


# -- bucket and stage pinning ------------------------------------------------------------------


def test_configured_bucket_fills_a_missing_workflow_bucket():
    event = parse_event(make_event(bucket=_ABSENT), configured_bucket="pinned-bucket")
    assert event.workflow_bucket == "pinned-bucket"


def test_configured_bucket_refuses_another_bucket():
    with pytest.raises(ContextResolutionError, match="never touches another bucket") as info:
        parse_event(make_event(bucket="other-bucket"), configured_bucket="pinned-bucket")
    assert info.value.execution_id == RUN
    assert info.value.stage == "Score"


def test_configured_stage_refuses_another_stage_and_fills_a_missing_one():
    with pytest.raises(ContextResolutionError, match="this handler is stage 'Rank'"):
        parse_event(make_event(), configured_stage="Rank")
    event = parse_event(make_event(current_stage=_ABSENT), configured_stage="Rank")
    assert event.current_stage == "Rank"


def _echo_stage(store: CountingStore, **options: Any) -> Any:
    @stage(store=store, **options)
    def handler(data: dict[str, Any]) -> dict[str, Any]:
        return data

    return handler


def test_bucket_pinned_by_argument_refuses_the_event_before_any_storage_call(tmp_path: Path):
    store = CountingStore(LocalStore(tmp_path))
    handler = _echo_stage(store, bucket="pinned-bucket")
    event = make_event(previous_stage=None, bucket="other-bucket", initial_data={"a": 1})
    with pytest.raises(ContextResolutionError, match="configured for 'pinned-bucket'"):
        handler(event)
    assert store.calls == []
    assert not any(tmp_path.rglob("output.json"))


def test_bucket_pinned_by_environment_is_read_at_first_invocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = CountingStore(LocalStore(tmp_path))
    handler = _echo_stage(store)  # the variable is set after decoration: read at invocation
    monkeypatch.setenv("CEAP_WORKFLOW_BUCKET", "pinned-bucket")
    with pytest.raises(ContextResolutionError, match="configured for 'pinned-bucket'"):
        handler(make_event(previous_stage=None, bucket="other-bucket", initial_data={}))
    assert store.calls == []
    result = handler(make_event(previous_stage=None, bucket=_ABSENT, initial_data={"a": 1}))
    assert result["output"]["bucket"] == "pinned-bucket"
    assert (tmp_path / "pinned-bucket" / key_of("Score")).is_file()


def test_an_invalid_configured_bucket_is_a_context_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CEAP_WORKFLOW_BUCKET", "Bad_Bucket")
    handler = _echo_stage(CountingStore(LocalStore(tmp_path)))
    with pytest.raises(ContextResolutionError, match="configured workflow bucket"):
        handler(make_event(previous_stage=None, initial_data={}))


def test_an_invalid_identifier_is_refused_before_any_storage_call(tmp_path: Path):
    store = CountingStore(LocalStore(tmp_path))
    handler = _echo_stage(store)
    with pytest.raises(ContextResolutionError):
        handler(make_event(execution_id="../../etc", previous_stage=None, initial_data={}))
    with pytest.raises(ContextResolutionError):
        handler(make_event(current_stage="a b", previous_stage=None, initial_data={}))
    assert store.calls == []


# -- ExecutionContext ---------------------------------------------------------------------------


class _LambdaContext:
    aws_request_id = "req-123"
    function_name = "score"

    def get_remaining_time_in_millis(self) -> int:
        return 12_345


def test_execution_context_properties():
    lambda_context = _LambdaContext()
    ctx = ExecutionContext(
        execution_id=RUN,
        current_stage="Score",
        previous_stage="Filter",
        workflow_bucket=BUCKET,
        retry_count=3,
        lambda_context=lambda_context,
    )
    assert ctx.input_key == key_of("Filter")
    assert ctx.output_key == key_of("Score")
    assert ctx.is_first_stage is False
    assert ctx.retry_count == 3
    assert ctx.lambda_context is lambda_context
    assert ctx.aws_request_id == "req-123"
    assert ctx.remaining_time_ms() == 12_345


def test_first_stage_context_and_no_lambda_context():
    ctx = ExecutionContext(
        execution_id=RUN, current_stage="Ingest", previous_stage=None, workflow_bucket=BUCKET
    )
    assert ctx.is_first_stage is True
    assert ctx.input_key is None
    assert ctx.aws_request_id is None
    assert ctx.remaining_time_ms() is None


def test_execution_context_is_frozen():
    ctx = ExecutionContext(
        execution_id=RUN, current_stage="Score", previous_stage=None, workflow_bucket=BUCKET
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.execution_id = "other"  # type: ignore[misc]


def test_the_stage_receives_a_context_built_from_the_event(tmp_path: Path):
    seen: list[ExecutionContext] = []

    @stage(store=LocalStore(tmp_path))
    def handler(data: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
        seen.append(ctx)
        return data

    lambda_context = _LambdaContext()
    event = make_event(
        previous_stage=None,
        initial_data={},
        workflowName="Engagement",
        retryCount=2,
        redriveCount=1,
    )
    handler(event, lambda_context)
    (ctx,) = seen
    assert (ctx.execution_id, ctx.current_stage, ctx.previous_stage) == (RUN, "Score", None)
    assert ctx.workflow_bucket == BUCKET
    assert ctx.workflow_name == "Engagement"
    assert (ctx.retry_count, ctx.redrive_count) == (2, 1)
    assert ctx.lambda_context is lambda_context
    assert ctx.remaining_time_ms() == 12_345
