"""Glue failure semantics: a failed job run is not retried, Glue service errors are.

Step Functions reports every failed job run as ``States.TaskFailed`` (the job's own error class
is only in the cause's text), so a Glue step never retries it: a deterministic failure costs one
run and fails the execution with the job run (its ``ErrorMessage``) as the cause.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ceap_stage.workflow import (
    GLUE_RETRY_ERRORS,
    GlueStep,
    LambdaStep,
    RetryConfiguration,
    WorkflowConfiguration,
    WorkflowType,
    build_definition,
)
from ceap_stage.workflow._glue_kind import GLUE_KIND

from ._moto_sfn import StepFunctionsHarness

BATCH = [{"messageId": "m-1", "body": json.dumps({"id": 1, "value": 2.5})}]
_JOB_ERROR = "InputValidationError: the input fails the schema [execution_id=exec-glue-bad]"


def _config(retry: RetryConfiguration | None = None) -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="glue-failures",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            LambdaStep(state_name="Load", function_name="load-fn"),
            GlueStep(state_name="Enrich", job_name="enrich-job"),
            LambdaStep(state_name="Publish", function_name="publish-fn"),
        ],
        workflow_bucket="ceap-moto-glue-failures",
        source_queue="in",
        retry_config=retry or RetryConfiguration(glue_interval_minutes=2, glue_backoff_rate=3),
    )


def test_a_glue_task_retries_service_errors_and_never_a_failed_job_run():
    state = build_definition(_config())["States"]["Enrich"]
    assert state["Retry"] == [
        {
            "ErrorEquals": list(GLUE_RETRY_ERRORS),
            "IntervalSeconds": 120,
            "MaxAttempts": 2,
            "BackoffRate": 3.0,
        }
    ]
    retried = state["Retry"][0]["ErrorEquals"]
    assert "States.TaskFailed" not in retried
    assert "States.ALL" not in retried
    assert all(error.startswith("Glue.") for error in retried)
    assert {"Glue.ConcurrentRunsExceededException", "Glue.AWSGlueException"} <= set(retried)
    assert state["Catch"] == [
        {"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$", "Next": "Glue job failed"},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "WorkflowFailed"},
    ]


def test_a_failed_job_run_is_named_after_the_contract_error_in_its_message():
    states = build_definition(_config())["States"]
    choice = states["Glue job failed"]
    patterns = [rule["StringMatches"] for rule in choice["Choices"]]
    # A subclass is tried before its base: "TransientStorageError: " ends in "StorageError: ".
    assert patterns.index("*TransientStorageError: *") < patterns.index("*StorageError: *")
    assert "*InputValidationError: *" in patterns
    assert choice["Default"] == "Glue job failed: GlueJobFailed"
    for rule in choice["Choices"]:
        named = states[rule["Next"]]
        assert named["Parameters"]["Error"] == rule["StringMatches"].strip("*: ")
        assert named["Parameters"]["Cause.$"] == "$.Cause"
        assert named["Next"] == "WorkflowFailed"


def test_the_local_runner_retries_glue_steps_on_the_same_errors():
    retry = GLUE_KIND.local_retry(_config())
    assert retry.errors == GLUE_RETRY_ERRORS
    assert "TransientStorageError" not in retry.errors
    assert (retry.max_retries, retry.interval_seconds, retry.backoff_rate) == (2, 120.0, 3.0)


def _failing_job_runs(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """Every moto Glue job run ends FAILED with ``message`` as its ``ErrorMessage``."""
    from moto.glue.models import FakeJobRun

    original = FakeJobRun.as_dict

    def as_failed(self: Any) -> dict[str, Any]:
        run = original(self)
        run["JobRunState"] = "FAILED"
        run["ErrorMessage"] = message
        return run

    monkeypatch.setattr(FakeJobRun, "as_dict", as_failed)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (_JOB_ERROR, "InputValidationError"),
        ("TransientStorageError: S3 is throttling (simulated)", "TransientStorageError"),
        ("StorageError: access denied", "StorageError"),
        ("Error Category: OUT_OF_MEMORY_ERROR; executor lost", "GlueJobFailed"),
    ],
)
def test_a_failed_job_run_runs_once_and_fails_the_execution_with_its_error_class(
    sfn: StepFunctionsHarness, monkeypatch: pytest.MonkeyPatch, message: str, error: str
):
    import boto3

    _failing_job_runs(monkeypatch, message)
    execution = sfn.execute(sfn.deploy(_config()), "exec-glue-bad", BATCH)
    assert execution.status == "FAILED"
    runs = boto3.client("glue").get_job_runs(JobName="enrich-job")["JobRuns"]
    assert len(runs) == 1  # one paid job run, no retry (a transient one too)
    assert sfn.sleeps == []
    assert execution.error == error
    assert execution.cause is not None
    cause = json.loads(execution.cause)  # the job run, as Step Functions reported it
    assert cause["JobRunState"] == "FAILED"
    assert cause["ErrorMessage"] == message
    assert cause["JobName"] == "enrich-job"
    assert execution.entered() == [
        "Load",
        "Enrich",
        "Glue job failed",
        f"Glue job failed: {error}",
        "WorkflowFailed",
    ]
    assert sfn.lambdas.payloads("publish-fn") == []


def test_a_glue_service_refusal_is_retried(sfn: StepFunctionsHarness, monkeypatch):
    import boto3
    from moto.glue.exceptions import ConcurrentRunsExceededException
    from moto.glue.models import GlueBackend

    refusals = iter([ConcurrentRunsExceededException("enrich-job")])
    original = GlueBackend.start_job_run

    def busy_once(self: Any, *args: Any, **kwargs: Any) -> str:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GlueBackend, "start_job_run", busy_once)
    execution = sfn.execute(sfn.deploy(_config()), "exec-glue-busy", BATCH)
    assert execution.status == "SUCCEEDED", execution.cause
    failed = [e for e in execution.events if e["type"] == "TaskFailed"]
    assert [e["taskFailedEventDetails"]["error"] for e in failed] == [
        "Glue.ConcurrentRunsExceededException"
    ]
    assert sfn.sleeps == [120]
    assert len(boto3.client("glue").get_job_runs(JobName="enrich-job")["JobRuns"]) == 1
    assert len(sfn.lambdas.payloads("publish-fn")) == 1
