"""run_stage: seed the input, run the handler as Lambda would, read back typed output and logs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from ceap_stage import (
    ExecutionContext,
    InputNotFoundError,
    LocalStore,
    OutputValidationError,
    S3Store,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage._context import output_key
from ceap_stage.testing import FakeLambdaContext, MotoS3Store, StageRun, capture_logs, run_stage

SENTINEL = "SENTINEL-run-stage-9c1"


class Order(BaseModel):
    order_id: str
    amount: float
    note: str = ""


class Scored(BaseModel):
    order_id: str
    score: float


@stage
def score(orders: list[Order], ctx: ExecutionContext) -> list[Scored]:
    return [Scored(order_id=o.order_id, score=o.amount * 2) for o in orders if o.amount > 10]


ORDERS = [
    Order(order_id="a", amount=5, note=SENTINEL),
    Order(order_id="b", amount=50, note=SENTINEL),
]


def check_run(run: StageRun, store: Any, bucket: str) -> None:
    assert run.output == [Scored(order_id="b", score=100.0)]
    assert run.result["status"] == "SUCCESS"
    assert run.result["recordsProcessed"] == 1
    assert run.result["output"]["bucket"] == bucket
    assert run.result["output"]["key"] == "executions/test-execution/TestStage/output.json"
    assert store.get(bucket, run.result["output"]["key"]) is not None
    assert run.messages() == ["stage started", "stage finished"]
    assert run.logs[0]["execution_id"] == "test-execution"
    assert run.logs[0]["previous_stage"] == "PreviousStage"
    assert len(run.metrics) == 1
    assert run.metrics[0]["RecordsProcessed"] == [1.0]
    assert SENTINEL not in str(run.logs) + str(run.metrics)


def test_with_a_local_store(local_store: LocalStore) -> None:
    run = run_stage(score, store=local_store, previous_output=ORDERS)
    check_run(run, local_store, "ceap-test-bucket")
    assert run.event["previousStage"] == "PreviousStage"


def test_with_moto_in_process(s3_store: MotoS3Store) -> None:
    run = run_stage(score, store=s3_store, previous_output=ORDERS)
    check_run(run, s3_store, s3_store.bucket)
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=run.result["output"]["key"])
    assert head["ContentType"] == "application/json"


def test_with_a_moto_server_over_http(moto_server: str, moto_bucket: str) -> None:
    store = S3Store(endpoint_url=moto_server, region_name="us-east-1")
    run = run_stage(score, store=store, bucket=moto_bucket, previous_output=ORDERS)
    check_run(run, store, moto_bucket)


def test_the_handler_itself_is_left_unchanged(local_store: LocalStore, tmp_path: Any) -> None:
    own = LocalStore(tmp_path / "own")

    @stage(store=own)
    def passthrough(orders: list[Order]) -> list[Order]:
        return orders

    run_stage(passthrough, store=local_store, previous_output=ORDERS)
    assert passthrough.runtime.store is own
    assert own.list_keys("ceap-test-bucket", "executions/") == []


def test_a_first_stage_with_initial_data(local_store: LocalStore) -> None:
    @stage(name="Ingest")
    def ingest(order: Order) -> Order:
        return order

    run = run_stage(ingest, store=local_store, initial_data={"order_id": "x", "amount": 1})
    assert run.output == Order(order_id="x", amount=1)
    assert run.event == {
        "executionId": "test-execution",
        "currentStage": "Ingest",
        "workflowBucket": "ceap-test-bucket",
        "initialData": {"order_id": "x", "amount": 1},
    }
    assert "previous_stage" not in run.logs[0]


def test_a_class_handler_names_and_event_fields(local_store: LocalStore) -> None:
    class Total(WorkflowLambdaHandler[list[Order], float]):
        def process(self, data: list[Order], ctx: ExecutionContext) -> float:
            assert ctx.retry_count == 2
            return sum(o.amount for o in data)

    run = run_stage(
        Total(),
        store=local_store,
        previous_output=ORDERS,
        execution_id="run-77",
        stage="Sum",
        previous_stage="Filter",
        bucket="other-bucket",
        workflow_name="orders",
        retry_count=2,
        lambda_context=FakeLambdaContext(aws_request_id="req-1"),
    )
    assert run.output == 55.0
    assert run.result["output"]["key"] == output_key("run-77", "Sum")
    assert local_store.get("other-bucket", output_key("run-77", "Filter")) is not None
    assert run.logs[0]["workflow"] == "orders"
    assert run.logs[0]["function_request_id"] == "req-1"
    assert run.logs[0]["retry_count"] == 2


def test_previous_output_as_json_lines_or_raw_bytes(local_store: LocalStore) -> None:
    run = run_stage(score, store=local_store, previous_output=ORDERS, previous_format="jsonl")
    assert run.logs[-1]["input_format"] == "jsonl"
    assert run.output == [Scored(order_id="b", score=100.0)]
    raw = b'{"order_id": "c", "amount": 20}\n{"order_id": "d", "amount": 1}\n'
    run = run_stage(score, store=local_store, previous_output=raw, previous_format="jsonl")
    assert run.output == [Scored(order_id="c", score=40.0)]


def test_a_jsonl_handler_output_is_read_back_typed(local_store: LocalStore) -> None:
    @stage(output_format="jsonl")
    def explode(orders: list[Order]) -> list[Order]:
        return orders

    run = run_stage(explode, store=local_store, previous_output=ORDERS)
    assert run.result["output"]["format"] == "jsonl"
    assert run.output == ORDERS


def test_errors_propagate_and_capture_logs_still_sees_them(local_store: LocalStore) -> None:
    with capture_logs() as captured, pytest.raises(InputNotFoundError):
        run_stage(score, store=local_store, previous_stage="Missing")
    assert [r["message"] for r in captured.records] == ["stage started", "stage failed"]
    assert captured.records[1]["error_type"] == "InputNotFoundError"
    assert captured.metrics[0]["StageFailures"] == [1.0]

    @stage
    def broken(orders: list[Order]) -> list[Scored]:
        return [{"order_id": SENTINEL}]  # type: ignore[list-item]

    with capture_logs() as captured, pytest.raises(OutputValidationError):
        run_stage(broken, store=local_store, previous_output=ORDERS)
    assert SENTINEL not in str(captured.records)


def test_previous_output_and_initial_data_are_exclusive(local_store: LocalStore) -> None:
    with pytest.raises(TypeError, match="previous_output"):
        run_stage(score, store=local_store, previous_output=[], initial_data={})


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [
        ("previous_ouput", "previous_output"),
        ("inital_data", "initial_data"),
        ("retry_cont", "retry_count"),
        ("current_stage", "stage"),
        ("workflow_bucket", "bucket"),
    ],
)
def test_a_misspelt_keyword_is_refused_with_the_closest_name_and_nothing_is_written(
    local_store: LocalStore, keyword: str, suggestion: str
) -> None:
    # Before, a misspelt keyword became an event field (previous_ouput -> previousOuput) and
    # the stage failed with a ContextResolutionError about initialData.
    given: dict[str, Any] = {keyword: [{"order_id": "a", "amount": 12}]}
    with pytest.raises(TypeError) as raised:
        run_stage(score, store=local_store, **given)

    assert str(raised.value) == (
        f"run_stage() got an unexpected keyword argument {keyword!r} (did you mean {suggestion}?)"
    )
    assert not local_store.root.exists() or not any(local_store.root.rglob("*.json"))


def test_a_keyword_far_from_any_name_lists_the_event_fields(local_store: LocalStore) -> None:
    with pytest.raises(TypeError) as raised:
        run_stage(score, store=local_store, previous_output=ORDERS, customer="x")

    message = str(raised.value)
    assert message.startswith("run_stage() got an unexpected keyword argument 'customer' (")
    assert "workflow_name, retry_count, redrive_count, output_format" in message
    assert not local_store.root.exists() or not any(local_store.root.rglob("*.json"))


def test_every_event_field_a_stage_reads_is_a_keyword(local_store: LocalStore) -> None:
    run = run_stage(
        score,
        store=local_store,
        previous_output=ORDERS,
        workflow_name="orders",
        retry_count=1,
        redrive_count=2,
        output_format="json",
    )
    assert {k: run.event[k] for k in ("workflowName", "retryCount", "redriveCount")} == {
        "workflowName": "orders",
        "retryCount": 1,
        "redriveCount": 2,
    }
    assert run.event["outputFormat"] == "json"
    assert run.output == [Scored(order_id="b", score=100.0)]


class Halve(WorkflowLambdaHandler[list[Order], list[Order]]):
    def process(self, data: list[Order], ctx: ExecutionContext) -> list[Order]:
        return data


def plain(orders: list[Order]) -> list[Order]:  # not decorated
    return orders


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (plain, "not 'plain' (decorate it with @stage)"),
        (Halve, "not 'Halve' (pass an instance: Halve())"),
        (42, "not 'int'"),
    ],
)
def test_something_that_is_no_handler_is_refused_before_anything_is_written(
    local_store: LocalStore, handler: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=r"run_stage\(\) runs a @stage function or a") as caught:
        run_stage(handler, store=local_store, previous_output=ORDERS)
    assert message in str(caught.value)
    assert local_store.list_keys("ceap-test-bucket", "") == []


def test_an_unknown_previous_format_is_refused_before_anything_is_written(
    local_store: LocalStore,
) -> None:
    with pytest.raises(ValueError, match="previous_format must be 'json' or 'jsonl', not 'csv'"):
        run_stage(score, store=local_store, previous_output=ORDERS, previous_format="csv")  # type: ignore[arg-type]
    assert local_store.list_keys("ceap-test-bucket", "") == []
