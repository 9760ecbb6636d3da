"""Generate the Step Functions definition (Amazon States Language, JSONPath) of a workflow.

The event a Lambda stage receives and the arguments a Glue stage receives are built here, once,
as ASL ``Parameters`` templates. The state machine uses them as they are; the local runner
evaluates the same templates (:func:`lambda_event`, :func:`glue_arguments`), so what runs on a
laptop and what runs in AWS cannot disagree.

Shape of the generated machine::

    [StageInitialInput]      only when the first step is a Glue job: S3 putObject of the batch
    Step 1 .. Step n         Lambda (lambda:invoke) or Glue (glue:startJobRun.sync) tasks
    WorkflowFailed           Fail state every task's Catch leads to; records Error and Cause

Each task keeps only a small result (the stage's pointer, or the Glue job run id and state)
as its output; no stage data ever passes through Step Functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ceap_stage._context import INITIAL_STAGE, output_key

from ._config import (
    FAIL_STATE,
    STAGE_INITIAL_INPUT_STATE,
    GlueStep,
    LambdaStep,
    WorkflowConfiguration,
    WorkflowType,
)
from ._paths import escape_intrinsic_literal, evaluate_parameters

__all__ = [
    "EXPRESS_TIMEOUT_SECONDS",
    "GLUE_RETRY_ERRORS",
    "LAMBDA_RETRY_ERRORS",
    "LAMBDA_SERVICE_ERRORS",
    "build_definition",
    "context_object",
    "definition_json",
    "glue_arguments",
    "glue_parameters",
    "initial_input_parameters",
    "lambda_event",
    "lambda_payload",
]

#: Errors the Lambda service raises around an invocation (not the function's own errors).
LAMBDA_SERVICE_ERRORS: Final = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
#: What a Lambda step is retried on: the service errors and the contract's one retryable error.
LAMBDA_RETRY_ERRORS: Final = (*LAMBDA_SERVICE_ERRORS, "TransientStorageError")
#: What a Glue step is retried on. Step Functions reports a failed job run as
#: ``States.TaskFailed`` (the job's own error class is only in the cause's text).
GLUE_RETRY_ERRORS: Final = ("States.TaskFailed",)
#: An EXPRESS execution's hard limit.
EXPRESS_TIMEOUT_SECONDS: Final = 300

_EXECUTION_NAME: Final = "$$.Execution.Name"


def _key_expression(stage: str) -> str:
    """``States.Format`` of a stage's output key from the execution name."""
    template = escape_intrinsic_literal(output_key("\x00", stage)).replace("\x00", "{}")
    return f"States.Format('{template}', {_EXECUTION_NAME})"


def lambda_payload(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The ``Payload`` template of Lambda step ``index``: CONTRACT section 2, as ASL.

    ``initialData`` is the state input (the EventBridge Pipes batch) and only the first step
    gets it; ``redriveCount`` exists only in STANDARD executions, which can be redriven.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa"),
        ...                               LambdaStep(state_name="B", function_name="fb")])
        >>> lambda_payload(wf, 1)["previousStage"], "initialData.$" in lambda_payload(wf, 1)
        ('A', False)
    """
    step = config.steps[index]
    payload: dict[str, Any] = {
        "executionId.$": _EXECUTION_NAME,
        "currentStage": step.state_name,
        "previousStage": config.previous_stage(index),
        "workflowBucket": config.workflow_bucket,
        "workflowName": config.workflow_name,
        "retryCount.$": "$$.State.RetryCount",
    }
    if config.workflow_type is WorkflowType.STANDARD:
        payload["redriveCount.$"] = "$$.Execution.RedriveCount"
    if index == 0:
        payload["initialData.$"] = "$"
    return payload


def glue_parameters(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The ``Parameters`` of Glue step ``index``: the job name and its arguments.

    The keys are built from ``$$.Execution.Name`` with ``States.Format``. A first step reads
    the staged batch (``executions/{id}/initial/output.json``) and gets no ``--previous-stage``.

    Example:
        >>> from ceap_stage.workflow import GlueStep, WorkflowConfiguration, WorkflowType
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_type=WorkflowType.STANDARD,
        ...     workflow_bucket="bkt-1", source_queue="q",
        ...     steps=[GlueStep(state_name="G", job_name="job-g")])
        >>> glue_parameters(wf, 0)["Arguments"]["--input-key.$"]
        "States.Format('executions/{}/initial/output.json', $$.Execution.Name)"
    """
    step = config.steps[index]
    bucket = config.workflow_bucket
    assert isinstance(step, GlueStep)
    arguments: dict[str, Any] = {
        "--execution-id.$": _EXECUTION_NAME,
        "--input-bucket": bucket,
        "--input-key.$": _key_expression(config.previous_stage(index) or INITIAL_STAGE),
        "--output-bucket": bucket,
        "--output-key.$": _key_expression(step.state_name),
        "--current-stage": step.state_name,
    }
    if index > 0:  # a first step has no previous stage: the Glue idiom is to omit it
        arguments["--previous-stage"] = config.steps[index - 1].state_name
    return {"JobName": step.job_name, "Arguments": arguments}


def initial_input_parameters(config: WorkflowConfiguration) -> dict[str, Any]:
    """The S3 ``PutObject`` parameters that stage the batch for a first step that is Glue."""
    return {
        "Bucket": config.workflow_bucket,
        "Key.$": _key_expression(INITIAL_STAGE),
        "Body.$": "States.JsonToString($)",
        "ContentType": "application/json",
    }


def _catch() -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": FAIL_STATE}]


def _guarded(
    state: dict[str, Any], errors: tuple[str, ...], attempts: int, interval: int, rate: float
) -> dict[str, Any]:
    """``state`` with its Retry (when ``attempts`` allows one) and the Catch into the Fail state."""
    retriers = _retry(errors, attempts, interval, rate)
    if retriers:
        state["Retry"] = retriers
    state["Catch"] = _catch()
    return state


def _retry(errors: tuple[str, ...], attempts: int, interval: int, rate: float) -> list[Any]:
    if attempts == 0:
        return []
    return [
        {
            "ErrorEquals": list(errors),
            "IntervalSeconds": interval,
            "MaxAttempts": attempts,
            "BackoffRate": rate,
        }
    ]


def _lambda_state(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    step = config.steps[index]
    assert isinstance(step, LambdaStep)
    retry = config.retry_config
    state: dict[str, Any] = {
        "Type": "Task",
        "Comment": f"Lambda stage {step.state_name}",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": step.function_name,
            "Payload": lambda_payload(config, index),
        },
        # Keep the stage's small result pointer, drop the Lambda invocation metadata.
        "ResultSelector": {"stage": step.state_name, "result.$": "$.Payload"},
        "ResultPath": "$",
    }
    return _guarded(
        state,
        LAMBDA_RETRY_ERRORS,
        retry.lambda_max_attempts,
        retry.lambda_interval_seconds,
        retry.lambda_backoff_rate,
    )


def _glue_state(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    step = config.steps[index]
    retry = config.retry_config
    state: dict[str, Any] = {
        "Type": "Task",
        "Comment": f"Glue stage {step.state_name}",
        "Resource": "arn:aws:states:::glue:startJobRun.sync",
        "Parameters": glue_parameters(config, index),
        "ResultSelector": {
            "stage": step.state_name,
            "jobRunId.$": "$.Id",
            "jobRunState.$": "$.JobRunState",
        },
        "ResultPath": "$",
    }
    return _guarded(
        state,
        GLUE_RETRY_ERRORS,
        retry.glue_max_attempts,
        retry.glue_interval_seconds,
        retry.glue_backoff_rate,
    )


def _initial_input_state(config: WorkflowConfiguration, first: str) -> dict[str, Any]:
    retry = config.retry_config
    state: dict[str, Any] = {
        "Type": "Task",
        "Comment": "Stage the SQS batch where a first Glue step reads its input",
        "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
        "Parameters": initial_input_parameters(config),
        "ResultPath": None,
        "Next": first,
    }
    return _guarded(
        state,
        ("States.TaskFailed",),
        retry.lambda_max_attempts,
        retry.lambda_interval_seconds,
        retry.lambda_backoff_rate,
    )


def build_definition(config: WorkflowConfiguration) -> dict[str, Any]:
    """The state machine definition (ASL, JSONPath) of a workflow, as a dict.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> asl = build_definition(wf)
        >>> asl["StartAt"], asl["TimeoutSeconds"], sorted(asl["States"])
        ('A', 300, ['A', 'WorkflowFailed'])
    """
    states: dict[str, Any] = {}
    names = config.state_names
    start = names[0]
    if isinstance(config.steps[0], GlueStep):
        start = STAGE_INITIAL_INPUT_STATE
        states[STAGE_INITIAL_INPUT_STATE] = _initial_input_state(config, names[0])
    for index, step in enumerate(config.steps):
        if isinstance(step, GlueStep):
            state = _glue_state(config, index)
        else:
            state = _lambda_state(config, index)
        if index + 1 < len(names):
            state["Next"] = names[index + 1]
        else:
            state["End"] = True
        states[step.state_name] = state
    states[FAIL_STATE] = {
        "Type": "Fail",
        "Comment": "A stage failed after its retries; the error class and message are kept",
        "ErrorPath": "$.Error",
        "CausePath": "$.Cause",
    }
    definition: dict[str, Any] = {
        "Comment": (
            f"{config.workflow_name} ({config.workflow_type.value}): "
            f"{' -> '.join(names)}. Generated by ceap-stage."
        ),
        "StartAt": start,
        "States": states,
    }
    if config.workflow_type is WorkflowType.EXPRESS:
        definition["TimeoutSeconds"] = EXPRESS_TIMEOUT_SECONDS
    return definition


def definition_json(config: WorkflowConfiguration, *, indent: bool = True) -> str:
    """:func:`build_definition` as JSON text (indented by default).

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> definition_json(wf, indent=False)[:30]
        '{"Comment":"w (EXPRESS): A. Ge'
    """
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(build_definition(config), option=option).decode()


def context_object(
    config: WorkflowConfiguration,
    *,
    execution_id: str,
    state_name: str,
    retry_count: int = 0,
    redrive_count: int = 0,
    state_input: Any = None,
    region: str = "us-east-1",
    account: str = "000000000000",
) -> dict[str, Any]:
    """A Step Functions context object (``$$``) for a local run of one state.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> context_object(wf, execution_id="run-1", state_name="A")["Execution"]["Name"]
        'run-1'
    """
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    machine = f"arn:aws:states:{region}:{account}:stateMachine:{config.workflow_name}"
    kind = "express" if config.workflow_type is WorkflowType.EXPRESS else "execution"
    return {
        "Execution": {
            "Id": f"arn:aws:states:{region}:{account}:{kind}:{config.workflow_name}:{execution_id}",
            "Input": state_input,
            "Name": execution_id,
            "RedriveCount": redrive_count,
            "StartTime": now,
        },
        "State": {"EnteredTime": now, "Name": state_name, "RetryCount": retry_count},
        "StateMachine": {"Id": machine, "Name": config.workflow_name},
    }


def lambda_event(
    config: WorkflowConfiguration,
    index: int,
    *,
    execution_id: str,
    state_input: Any = None,
    retry_count: int = 0,
    redrive_count: int = 0,
) -> dict[str, Any]:
    """The event the generated state machine sends Lambda step ``index``.

    It is :func:`lambda_payload` evaluated against ``state_input`` (the SQS batch, for the
    first step) and a context object, exactly as Step Functions evaluates it.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> event = lambda_event(wf, 0, execution_id="run-1", state_input=[])
        >>> event  # doctest: +NORMALIZE_WHITESPACE
        {'executionId': 'run-1', 'currentStage': 'A', 'previousStage': None,
         'workflowBucket': 'bkt-1', 'workflowName': 'w', 'retryCount': 0, 'initialData': []}
    """
    step = config.steps[index]
    context = context_object(
        config,
        execution_id=execution_id,
        state_name=step.state_name,
        retry_count=retry_count,
        redrive_count=redrive_count,
        state_input=state_input,
    )
    event: dict[str, Any] = evaluate_parameters(lambda_payload(config, index), state_input, context)
    return event


def glue_arguments(
    config: WorkflowConfiguration, index: int, *, execution_id: str
) -> dict[str, str]:
    """The job arguments the generated state machine passes Glue step ``index``.

    Example:
        >>> from ceap_stage.workflow import GlueStep, WorkflowConfiguration, WorkflowType
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_type=WorkflowType.STANDARD,
        ...     workflow_bucket="bkt-1", source_queue="q",
        ...     steps=[GlueStep(state_name="G", job_name="job-g")])
        >>> glue_arguments(wf, 0, execution_id="run-1")["--output-key"]
        'executions/run-1/G/output.json'
    """
    step = config.steps[index]
    context = context_object(config, execution_id=execution_id, state_name=step.state_name)
    parameters = evaluate_parameters(glue_parameters(config, index), None, context)
    arguments: Mapping[str, Any] = parameters["Arguments"]
    return {key: str(value) for key, value in arguments.items()}


def initial_input_object(
    config: WorkflowConfiguration, *, execution_id: str, state_input: Any
) -> tuple[str, str, bytes]:
    """The bucket, key and body the initial-input state writes (for local runs)."""
    context = context_object(
        config, execution_id=execution_id, state_name=STAGE_INITIAL_INPUT_STATE
    )
    parameters = evaluate_parameters(initial_input_parameters(config), state_input, context)
    return parameters["Bucket"], parameters["Key"], str(parameters["Body"]).encode()
