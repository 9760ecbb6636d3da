"""The generated ASL executed by moto's Step Functions interpreter.

Every Lambda stage must receive exactly the contract payload (the same one the local runner
sends), Glue jobs the contract's arguments, and Retry/Catch must behave as configured.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ceap_stage import (
    ExecutionContext,
    InputValidationError,
    LocalStore,
    TransientStorageError,
    stage,
)
from ceap_stage.testing import FakeLambdaContext
from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    LocalRunner,
    RetryConfiguration,
    WorkflowConfiguration,
    WorkflowType,
    glue_arguments,
    lambda_event,
    load_handler,
    load_workflow,
)

from ._moto_sfn import LambdaServiceError, StepFunctionsHarness

BATCH = [
    {"messageId": "m-1", "body": json.dumps({"id": 1, "value": 2.5}), "eventSource": "aws:sqs"},
    {"messageId": "m-2", "body": json.dumps({"id": 2, "value": 4}), "eventSource": "aws:sqs"},
]


def _three_lambdas(retry: RetryConfiguration | None = None) -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="three",
        workflow_type=WorkflowType.EXPRESS,
        steps=[
            LambdaStep(state_name="Load", function_name="load-fn"),
            LambdaStep(state_name="Transform", function_name="transform-fn"),
            LambdaStep(state_name="Publish", function_name="publish-fn"),
        ],
        workflow_bucket="ceap-moto-three",
        source_queue="in",
        retry_config=retry or RetryConfiguration(),
    )


def test_each_express_stage_receives_exactly_the_contract_payload(sfn: StepFunctionsHarness):
    config = load_workflow("examples/engagement/workflow.py").config
    machine = sfn.deploy(config)
    batch = load_workflow("examples/engagement/workflow.py").sample_input()  # type: ignore[misc]
    execution = sfn.execute(machine, "exec-express-1", batch)
    assert execution.status == "SUCCEEDED", execution.cause
    expected = [
        (
            step.function_name,  # type: ignore[union-attr]
            lambda_event(
                config, i, execution_id="exec-express-1", state_input=batch if i == 0 else None
            ),
        )
        for i, step in enumerate(config.steps)
    ]
    assert sfn.lambdas.calls == expected
    first = sfn.lambdas.calls[0][1]
    assert first["initialData"] == batch  # the raw Pipes batch, first stage only
    assert all("initialData" not in payload for _, payload in sfn.lambdas.calls[1:])
    assert [p["previousStage"] for _, p in sfn.lambdas.calls] == [None, *config.state_names[:-1]]
    # The execution's output is the last stage's small result, not the data.
    assert execution.output == {"stage": "ReactiveStage", "result": sfn.lambdas.calls[-1][1]}


def test_standard_workflow_runs_glue_with_the_contract_arguments(sfn: StepFunctionsHarness):
    import boto3

    config = load_workflow("examples/engagement/workflow_standard.py").config
    machine = sfn.deploy(config)
    execution = sfn.execute(machine, "exec-standard-1", BATCH)
    assert execution.status == "SUCCEEDED", execution.cause
    lambda_steps = [(i, s) for i, s in enumerate(config.steps) if isinstance(s, LambdaStep)]
    assert sfn.lambdas.calls == [
        (
            step.function_name,
            lambda_event(
                config, i, execution_id="exec-standard-1", state_input=BATCH if i == 0 else None
            ),
        )
        for i, step in lambda_steps
    ]
    assert all(payload["redriveCount"] == 0 for _, payload in sfn.lambdas.calls)
    runs = boto3.client("glue").get_job_runs(JobName="engagement-score")["JobRuns"]
    assert [run["Arguments"] for run in runs] == [
        glue_arguments(config, 2, execution_id="exec-standard-1")
    ]
    after_glue = sfn.lambdas.payloads("engagement-store")[0]
    assert after_glue["previousStage"] == "ScoreStage"


def test_a_first_glue_step_finds_the_batch_staged_in_s3(sfn: StepFunctionsHarness):
    import boto3

    config = WorkflowConfiguration(
        workflow_name="glue-first",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            GlueStep(state_name="Prepare", job_name="prepare-job"),
            LambdaStep(state_name="Publish", function_name="publish-fn"),
        ],
        workflow_bucket="ceap-moto-glue-first",
        source_queue="in",
    )
    machine = sfn.deploy(config)
    execution = sfn.execute(machine, "exec-glue-first", BATCH)
    assert execution.status == "SUCCEEDED", execution.cause
    staged = boto3.client("s3").get_object(
        Bucket="ceap-moto-glue-first", Key="executions/exec-glue-first/initial/output.json"
    )
    assert json.loads(staged["Body"].read()) == BATCH
    runs = boto3.client("glue").get_job_runs(JobName="prepare-job")["JobRuns"]
    assert runs[0]["Arguments"] == glue_arguments(config, 0, execution_id="exec-glue-first")
    assert sfn.lambdas.payloads("publish-fn") == [
        lambda_event(config, 1, execution_id="exec-glue-first")
    ]


def test_a_transient_failure_is_retried_with_the_configured_interval(sfn: StepFunctionsHarness):
    config = _three_lambdas(RetryConfiguration(lambda_interval_seconds=7, lambda_backoff_rate=3))
    failures = iter([TransientStorageError("S3 is throttling")])

    def flaky(payload: dict[str, Any]) -> dict[str, Any]:
        error = next(failures, None)
        if error is not None:
            raise error
        return {"status": "SUCCESS", "retry": payload["retryCount"]}

    sfn.lambdas.behaviours["transform-fn"] = flaky
    execution = sfn.execute(sfn.deploy(config), "exec-retry-1", BATCH)
    assert execution.status == "SUCCEEDED", execution.cause
    transform = sfn.lambdas.payloads("transform-fn")
    assert [p["retryCount"] for p in transform] == [0, 1]
    assert transform[1] == lambda_event(config, 1, execution_id="exec-retry-1", retry_count=1)
    assert sfn.sleeps == [7]
    assert len(sfn.lambdas.payloads("publish-fn")) == 1


def test_a_throttled_lambda_service_is_retried(sfn: StepFunctionsHarness):
    config = _three_lambdas(RetryConfiguration(lambda_interval_seconds=3))
    refusals = iter([LambdaServiceError("TooManyRequestsException")])

    def throttled(payload: dict[str, Any]) -> dict[str, Any]:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return {"status": "SUCCESS"}

    sfn.lambdas.behaviours["load-fn"] = throttled
    execution = sfn.execute(sfn.deploy(config), "exec-throttled", BATCH)
    assert execution.status == "SUCCEEDED", execution.cause
    failed = [e for e in execution.events if e["type"] == "TaskFailed"]
    assert failed[0]["taskFailedEventDetails"]["error"] == "Lambda.TooManyRequestsException"
    assert [p["retryCount"] for p in sfn.lambdas.payloads("load-fn")] == [0, 1]
    assert sfn.sleeps == [3]


def test_retries_stop_after_max_attempts_and_the_execution_fails_with_the_error_class(
    sfn: StepFunctionsHarness,
):
    config = _three_lambdas(
        RetryConfiguration(lambda_max_attempts=3, lambda_interval_seconds=2, lambda_backoff_rate=2)
    )

    def always_throttled(payload: dict[str, Any]) -> Any:
        raise TransientStorageError("S3 is throttling", key="executions/x/Load/output.json")

    sfn.lambdas.behaviours["transform-fn"] = always_throttled
    execution = sfn.execute(sfn.deploy(config), "exec-retry-2", BATCH)
    assert execution.status == "FAILED"
    assert execution.error == "TransientStorageError"
    assert execution.cause is not None
    assert "S3 is throttling" in execution.cause
    assert [p["retryCount"] for p in sfn.lambdas.payloads("transform-fn")] == [0, 1, 2, 3]
    assert sfn.sleeps == [2, 4, 8]
    assert sfn.lambdas.payloads("publish-fn") == []
    assert "WorkflowFailed" in execution.entered()


def test_a_contract_error_is_not_retried_and_is_caught_into_the_fail_state(
    sfn: StepFunctionsHarness,
):
    config = _three_lambdas()

    def invalid(payload: dict[str, Any]) -> Any:
        raise InputValidationError("the input fails the model Order", stage="Transform")

    sfn.lambdas.behaviours["transform-fn"] = invalid
    execution = sfn.execute(sfn.deploy(config), "exec-catch-1", BATCH)
    assert execution.status == "FAILED"
    assert execution.error == "InputValidationError"
    assert execution.cause is not None
    assert "the input fails the model Order" in execution.cause
    assert len(sfn.lambdas.payloads("transform-fn")) == 1
    assert sfn.sleeps == []
    assert execution.entered() == ["Load", "Transform", "WorkflowFailed"]


def _in_lambda(runtime: Any) -> Any:
    """A behaviour that runs a stage runtime as its Lambda function would."""

    def handler(payload: dict[str, Any]) -> Any:
        return runtime.invoke(payload, FakeLambdaContext())

    return handler


def test_the_real_handlers_under_moto_produce_what_the_local_runner_produces(
    sfn: StepFunctionsHarness, tmp_path
):
    loaded = load_workflow("examples/engagement/workflow.py")
    config = loaded.config
    assert loaded.sample_input is not None
    batch = loaded.sample_input()
    in_moto = LocalStore(tmp_path / "moto")
    for step in config.steps:
        assert isinstance(step, LambdaStep)
        assert step.handler is not None
        runtime = load_handler(step.handler).runtime  # type: ignore[attr-defined]
        sfn.lambdas.behaviours[step.function_name] = _in_lambda(runtime.using_store(in_moto))
    execution = sfn.execute(sfn.deploy(config), "exec-real-1", batch)
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output["result"]["status"] == "SUCCESS"

    local = LocalStore(tmp_path / "local")
    result = LocalRunner(loaded, store=local).run(batch, execution_id="exec-real-1")
    assert result.succeeded
    for name in config.state_names:
        key = f"executions/exec-real-1/{name}/output.json"
        from_moto = in_moto.get(config.workflow_bucket, key)
        from_runner = local.get(config.workflow_bucket, key)
        assert from_moto is not None
        assert from_runner is not None
        assert from_moto.body == from_runner.body, name


@pytest.mark.parametrize("retry_count", [0, 3])
def test_retry_count_reaches_the_stage_context(retry_count: int, tmp_path):
    # The event's retryCount (from $$.State.RetryCount) is what ExecutionContext.retry_count says.
    seen: list[int] = []

    @stage
    def probe(data: list[dict[str, Any]], ctx: ExecutionContext) -> list[dict[str, Any]]:
        seen.append(ctx.retry_count)
        return data

    config = _three_lambdas()
    event = lambda_event(
        config, 0, execution_id="exec-ctx", state_input=BATCH, retry_count=retry_count
    )
    probe.runtime.using_store(LocalStore(tmp_path)).invoke(event, FakeLambdaContext())
    assert seen == [retry_count]
