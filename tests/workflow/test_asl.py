"""The generated state machine: shape, contract payloads, retries, catches; asl-validator."""

from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ceap_stage.workflow import (
    GLUE_RETRY_ERRORS,
    LAMBDA_RETRY_ERRORS,
    GlueStep,
    LambdaStep,
    RetryConfiguration,
    WorkflowConfiguration,
    WorkflowType,
    build_definition,
    definition_json,
    glue_arguments,
    lambda_event,
    load_workflow,
)
from ceap_stage.workflow._asl import initial_input_object

from ._asl_tools import validate_definitions

EXAMPLES = [
    "examples/engagement/workflow.py",
    "examples/engagement/workflow_standard.py",
    "examples/engagement/workflow.yaml",
    "examples/hybrid/workflow.py",
]


def _express() -> WorkflowConfiguration:
    return load_workflow(EXAMPLES[0]).config


def _standard() -> WorkflowConfiguration:
    return load_workflow(EXAMPLES[1]).config


def _glue_first() -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="glue-first",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            GlueStep(state_name="Prepare", job_name="prepare-job"),
            LambdaStep(state_name="Publish", function_name="publish"),
        ],
        workflow_bucket="ceap-glue-first",
        source_queue="in",
    )


def test_lambda_tasks_send_exactly_the_contract_payload():
    config = _express()
    states = build_definition(config)["States"]
    first = states["ETLStage"]
    assert first["Resource"] == "arn:aws:states:::lambda:invoke"
    assert first["Parameters"] == {
        "FunctionName": "engagement-etl",
        "Payload": {
            "executionId.$": "$$.Execution.Name",
            "currentStage": "ETLStage",
            "previousStage": None,
            "workflowBucket": "ceap-workflow-dev",
            "workflowName": "engagement",
            "retryCount.$": "$$.State.RetryCount",
            "initialData.$": "$",
        },
    }
    for previous, name in zip(config.state_names, config.state_names[1:], strict=False):
        payload = states[name]["Parameters"]["Payload"]
        assert payload == {
            "executionId.$": "$$.Execution.Name",
            "currentStage": name,
            "previousStage": previous,
            "workflowBucket": "ceap-workflow-dev",
            "workflowName": "engagement",
            "retryCount.$": "$$.State.RetryCount",
        }
    # Never the state input's $.Execution.Name (the Kotlin bug).
    assert "$.Execution" not in definition_json(config).replace("$$.Execution", "")


def test_standard_payloads_carry_the_redrive_count():
    states = build_definition(_standard())["States"]
    assert states["StoreStage"]["Parameters"]["Payload"]["redriveCount.$"] == (
        "$$.Execution.RedriveCount"
    )
    assert (
        "redriveCount.$"
        not in build_definition(_express())["States"]["ETLStage"]["Parameters"]["Payload"]
    )


def test_states_chain_in_order_keep_a_small_result_and_end_at_the_last_step():
    config = _express()
    definition = build_definition(config)
    states = definition["States"]
    assert definition["StartAt"] == "ETLStage"
    assert definition["TimeoutSeconds"] == 300
    names = config.state_names
    for name, following in itertools.pairwise(names):
        assert states[name]["Next"] == following
        assert "End" not in states[name]
    # EXPRESS: the last step goes on to the Choice that answers the pipe (docs/batches.md).
    assert states[names[-1]]["Next"] == "QueueBatchOutcome"
    assert "End" not in states[names[-1]]
    assert states["ReturnBatchItemFailures"]["End"] is True
    assert states["WorkflowSucceeded"] == {"Type": "Succeed"}
    for name in names:
        assert states[name]["ResultSelector"] == {"stage": name, "result.$": "$.Payload"}
        assert states[name]["ResultPath"] == "$"
    batch = {"QueueBatchOutcome", "ReturnBatchItemFailures", "WorkflowSucceeded"}
    assert set(states) == {*names, *batch, "WorkflowFailed"}


def test_retry_and_catch_follow_the_configuration():
    config = WorkflowConfiguration(
        workflow_name="retry",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            LambdaStep(state_name="A", function_name="fa"),
            GlueStep(state_name="G", job_name="jg"),
        ],
        workflow_bucket="ceap-retry",
        source_queue="in",
        retry_config=RetryConfiguration(
            lambda_max_attempts=4,
            lambda_interval_seconds=7,
            lambda_backoff_rate=1.5,
            glue_max_attempts=1,
            glue_interval_minutes=3,
            glue_backoff_rate=3.0,
        ),
    )
    states = build_definition(config)["States"]
    assert states["A"]["Retry"] == [
        {
            "ErrorEquals": [
                "Lambda.ServiceException",
                "Lambda.AWSLambdaException",
                "Lambda.SdkClientException",
                "Lambda.TooManyRequestsException",
                "TransientStorageError",
            ],
            "IntervalSeconds": 7,
            "MaxAttempts": 4,
            "BackoffRate": 1.5,
        }
    ]
    assert list(LAMBDA_RETRY_ERRORS) == states["A"]["Retry"][0]["ErrorEquals"]
    assert states["G"]["Retry"] == [
        {
            "ErrorEquals": list(GLUE_RETRY_ERRORS),
            "IntervalSeconds": 180,
            "MaxAttempts": 1,
            "BackoffRate": 3.0,
        }
    ]
    assert states["A"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "WorkflowFailed"}
    ]
    # A failed job run is named after its error class on its way to WorkflowFailed.
    assert states["G"]["Catch"] == [
        {"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$", "Next": "Glue job failed"},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "WorkflowFailed"},
    ]
    assert states["WorkflowFailed"]["Type"] == "Fail"
    assert states["WorkflowFailed"]["ErrorPath"] == "$.Error"
    assert states["WorkflowFailed"]["CausePath"] == "$.Cause"
    assert "TimeoutSeconds" not in build_definition(config)


def test_zero_retries_means_no_retrier():
    config = WorkflowConfiguration(
        workflow_name="noretry",
        steps=[LambdaStep(state_name="A", function_name="fa")],
        workflow_bucket="ceap-retry",
        source_queue="in",
        retry_config=RetryConfiguration(lambda_max_attempts=0),
    )
    state = build_definition(config)["States"]["A"]
    assert "Retry" not in state
    assert state["Catch"][0]["Next"] == "WorkflowFailed"


def test_glue_tasks_build_their_keys_from_the_execution_name():
    config = _standard()
    state = build_definition(config)["States"]["ScoreStage"]
    assert state["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
    assert state["Parameters"] == {
        "JobName": "engagement-score",
        "Arguments": {
            "--execution-id.$": "$$.Execution.Name",
            "--input-bucket": "ceap-workflow-dev",
            "--input-key.$": (
                "States.Format('executions/{}/FilterStage/output.json', $$.Execution.Name)"
            ),
            "--output-bucket": "ceap-workflow-dev",
            "--output-key.$": (
                "States.Format('executions/{}/ScoreStage/output.json', $$.Execution.Name)"
            ),
            "--current-stage": "ScoreStage",
            "--previous-stage": "FilterStage",
        },
    }
    assert "${" not in definition_json(config)  # no literal CDK placeholders
    assert glue_arguments(config, 2, execution_id="run-9") == {
        "--execution-id": "run-9",
        "--input-bucket": "ceap-workflow-dev",
        "--input-key": "executions/run-9/FilterStage/output.json",
        "--output-bucket": "ceap-workflow-dev",
        "--output-key": "executions/run-9/ScoreStage/output.json",
        "--current-stage": "ScoreStage",
        "--previous-stage": "FilterStage",
    }


def test_a_first_glue_step_is_preceded_by_staging_the_batch():
    config = _glue_first()
    definition = build_definition(config)
    assert definition["StartAt"] == "StageInitialInput"
    staging = definition["States"]["StageInitialInput"]
    assert staging["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    assert staging["Next"] == "Prepare"
    assert staging["ResultPath"] is None  # the batch stays the state input
    assert staging["Catch"][0]["Next"] == "WorkflowFailed"
    arguments = glue_arguments(config, 0, execution_id="run-1")
    assert arguments["--input-key"] == "executions/run-1/initial/output.json"
    assert "--previous-stage" not in arguments
    bucket, key, body = initial_input_object(config, execution_id="run-1", state_input=[{"a": 1}])
    assert (bucket, key, body) == (
        "ceap-glue-first",
        "executions/run-1/initial/output.json",
        b'[{"a":1}]',
    )
    # The Lambda after it reads the Glue step's output.
    assert lambda_event(config, 1, execution_id="run-1")["previousStage"] == "Prepare"


def test_lambda_event_is_the_payload_evaluated_for_an_execution():
    config = _express()
    batch = [{"messageId": "m-1", "body": "{}"}]
    assert lambda_event(config, 0, execution_id="run-1", state_input=batch) == {
        "executionId": "run-1",
        "currentStage": "ETLStage",
        "previousStage": None,
        "workflowBucket": "ceap-workflow-dev",
        "workflowName": "engagement",
        "retryCount": 0,
        "initialData": batch,
    }
    later = lambda_event(config, 3, execution_id="run-1", retry_count=2)
    assert later["previousStage"] == "ScoreStage"
    assert later["retryCount"] == 2
    assert "initialData" not in later


@pytest.mark.node
def test_every_example_definition_passes_asl_validator(tmp_path):
    definitions = [build_definition(load_workflow(p).config) for p in EXAMPLES]
    definitions.append(build_definition(_glue_first()))
    assert validate_definitions(definitions, tmp_path) == {}


@pytest.mark.node
def test_asl_validator_catches_a_broken_definition(tmp_path):
    broken = build_definition(_express())
    broken["States"]["ETLStage"]["Next"] = "Nowhere"
    del broken["States"]["ETLStage"]["Type"]
    assert list(validate_definitions([broken], tmp_path)) == ["definition-0000.json"]


# -- generated configurations ---------------------------------------------------------------

_NAME_CHARS = string.ascii_letters + string.digits + "-_.'{}:()$@"
_names = st.text(_NAME_CHARS, min_size=1, max_size=40).filter(
    lambda s: (
        s not in (".", "..", "initial", "WorkflowFailed", "StageInitialInput", "QueueBatchOutcome")
        and s not in ("ReturnBatchItemFailures", "WorkflowSucceeded")
    )
)


@st.composite
def configurations(draw):
    standard = draw(st.booleans())
    names = draw(st.lists(_names, min_size=1, max_size=6, unique=True))
    steps: list[LambdaStep | GlueStep] = []
    for index, name in enumerate(names):
        if standard and draw(st.booleans()):
            steps.append(GlueStep(state_name=name, job_name=f"job-{index}"))
        else:
            # A Kotlin step cannot follow a Glue step (that is refused).
            after_glue = bool(steps) and isinstance(steps[-1], GlueStep)
            contract = "ceap-kotlin" if not after_glue and draw(st.booleans()) else "ceap"
            steps.append(
                LambdaStep(state_name=name, function_name=f"fn-{index}", contract=contract)
            )
    retry = RetryConfiguration(
        lambda_max_attempts=draw(st.integers(0, 10)),
        lambda_interval_seconds=draw(st.integers(1, 3600)),
        lambda_backoff_rate=draw(st.floats(1.0, 10.0)),
        glue_max_attempts=draw(st.integers(0, 10)),
        glue_interval_minutes=draw(st.integers(1, 120)),
        glue_backoff_rate=draw(st.floats(1.0, 10.0)),
    )
    return WorkflowConfiguration(
        workflow_name=draw(st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)),
        workflow_type=WorkflowType.STANDARD if standard else WorkflowType.EXPRESS,
        steps=steps,
        workflow_bucket="ceap-generated",
        source_queue="generated-in",
        retry_config=retry,
    )


@given(st.lists(configurations(), min_size=12, max_size=12))
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_configurations_give_valid_definitions_and_consistent_arguments(configs):
    import tempfile
    from pathlib import Path

    definitions = [build_definition(c) for c in configs]
    for config, definition in zip(configs, definitions, strict=True):
        states = definition["States"]
        for index, step in enumerate(config.steps):
            state = states[step.state_name]
            if isinstance(step, GlueStep):
                # The evaluated keys are the contract's keys, whatever the stage names hold.
                args = glue_arguments(config, index, execution_id="run-1")
                assert args["--output-key"] == f"executions/run-1/{step.state_name}/output.json"
                previous = config.previous_stage(index) or "initial"
                assert args["--input-key"] == f"executions/run-1/{previous}/output.json"
            else:
                event = lambda_event(config, index, execution_id="run-1", state_input=[])
                assert event["currentStage"] == step.state_name
                assert ("initialData" in event) == (index == 0)
            assert state["Catch"][-1] == {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$",
                "Next": "WorkflowFailed",
            }
    with tempfile.TemporaryDirectory() as directory:
        assert validate_definitions(definitions, Path(directory)) == {}
