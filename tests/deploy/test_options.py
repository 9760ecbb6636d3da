"""The steps' deployment options: defaults, snake_case and camelCase, validation; and a workflow
without a source queue (no pipe)."""

from __future__ import annotations

import pytest

from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    WorkflowConfiguration,
    WorkflowConfigurationError,
    build_template,
)


def _workflow(step: dict[str, object], **extra: object) -> WorkflowConfiguration:
    return WorkflowConfiguration.parse(
        {"workflowName": "w", "workflowType": "STANDARD", "workflowBucket": "bkt-1",
         "steps": [step], **extra}
    )  # fmt: skip


def test_lambda_options_have_defaults_that_suit_the_example() -> None:
    step = LambdaStep(state_name="A", function_name="fa")
    assert (step.memory_mb, step.timeout_seconds, step.architecture, step.runtime) == (
        512, 60, "x86_64", "python3.12",
    )  # fmt: skip
    assert (step.environment, step.reserved_concurrency) == ({}, None)


def test_options_are_read_in_snake_case_and_camel_case() -> None:
    camel = _workflow(
        {"stateName": "A", "functionName": "fa", "memoryMb": 1024, "timeoutSeconds": 120,
         "architecture": "arm64", "runtime": "python3.13", "environment": {"MODE": "fast"},
         "reservedConcurrency": 5}
    ).steps[0]  # fmt: skip
    snake = _workflow(
        {"state_name": "A", "function_name": "fa", "memory_mb": 1024, "timeout_seconds": 120,
         "architecture": "arm64", "runtime": "python3.13", "environment": {"MODE": "fast"},
         "reserved_concurrency": 5}
    ).steps[0]  # fmt: skip
    assert camel == snake
    glue = _workflow(
        {"stateName": "G", "jobName": "jg", "glueVersion": "4.0", "workerType": "G.2X",
         "numberOfWorkers": 10, "timeoutMinutes": 30, "maxConcurrentRuns": 3}
    ).steps[0]  # fmt: skip
    assert isinstance(glue, GlueStep)
    assert (glue.glue_version, glue.worker_type, glue.number_of_workers) == ("4.0", "G.2X", 10)
    assert (glue.timeout_minutes, glue.max_concurrent_runs) == (30, 3)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"memoryMb": 64}, "steps.0.memoryMb: Input should be greater than or equal to 128"),
        ({"timeoutSeconds": 901}, "steps.0.timeoutSeconds: Input should be less than or equal"),
        ({"runtime": "python3.10"}, "steps.0.runtime: Input should be 'python3.11', 'python3.12'"),
        ({"architecture": "sparc"}, "steps.0.architecture: Input should be 'x86_64' or 'arm64'"),
        ({"environment": {"AWS_REGION": "x"}}, "'AWS_REGION' is reserved by Lambda"),
        ({"environment": {"CEAP_WORKFLOW_BUCKET": "x"}}, "is set by the stack itself"),
        ({"environment": {"1BAD": "x"}}, "environment variable name '1BAD' must be letters"),
        ({"reservedConcurrency": -1}, "steps.0.reservedConcurrency: Input should be greater"),
    ],
    ids=["memory", "timeout", "runtime", "architecture", "aws-name", "stack-name", "bad-name",
         "concurrency"],
)  # fmt: skip
def test_a_bad_lambda_option_names_the_field_as_written(
    option: dict[str, object], message: str
) -> None:
    with pytest.raises(WorkflowConfigurationError) as failure:
        _workflow({"stateName": "A", "functionName": "fa", **option})
    assert message in str(failure.value)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"glueVersion": "2.0"}, "steps.0.glueVersion: Input should be '4.0' or '5.0'"),
        ({"workerType": "Standard"}, "steps.0.workerType: Input should be"),
        ({"numberOfWorkers": 1}, "steps.0.numberOfWorkers: Input should be greater"),
        ({"maxConcurrentRuns": 0}, "steps.0.maxConcurrentRuns: Input should be greater"),
    ],
    ids=["version", "worker", "workers", "runs"],
)
def test_a_bad_glue_option_names_the_field(option: dict[str, object], message: str) -> None:
    with pytest.raises(WorkflowConfigurationError) as failure:
        _workflow({"stateName": "G", "jobName": "jg", **option})
    assert message in str(failure.value)


def test_a_workflow_without_a_source_queue_has_no_pipe() -> None:
    without = build_template(_workflow({"stateName": "A", "functionName": "fa"}))
    with_queue = build_template(_workflow({"stateName": "A", "functionName": "fa"},
                                          sourceQueue="in"))  # fmt: skip
    assert {"SourcePipe", "PipeRole"} <= set(with_queue["Resources"])
    assert not {"SourcePipe", "PipeRole"} & set(without["Resources"])
    assert "StateMachine" in without["Resources"]
