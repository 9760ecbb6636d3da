"""The workflow configuration: what a team writes to describe its pipeline.

The models mirror CEAP's Kotlin ``WorkflowConfiguration`` (``workflowName``, ``workflowType``,
``steps``, ``workflowBucket``, ``sourceQueue``, ``retryConfig``) and accept both snake_case and
the Kotlin camelCase field names, so a YAML or JSON file can use either. Validation happens at
construction and raises :class:`WorkflowConfigurationError` (a ``ValueError``) with a message
that says what to change.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ceap_stage._context import INITIAL_STAGE, validate_bucket, validate_identifier
from ceap_stage._errors import ContextResolutionError

__all__ = [
    "FAIL_STATE",
    "RESERVED_STATE_NAMES",
    "STAGE_INITIAL_INPUT_STATE",
    "GlueStep",
    "LambdaStep",
    "RetryConfiguration",
    "Step",
    "WorkflowConfiguration",
    "WorkflowConfigurationError",
    "WorkflowType",
]

#: The Fail state every task's ``Catch`` leads to.
FAIL_STATE = "WorkflowFailed"
#: The state that stages the initial input for a workflow whose first step is a Glue job.
STAGE_INITIAL_INPUT_STATE = "StageInitialInput"
#: Names a step may not take: the generated states, and the initial input's pseudo-stage.
RESERVED_STATE_NAMES = frozenset({FAIL_STATE, STAGE_INITIAL_INPUT_STATE, INITIAL_STAGE})

# State machine names: 1-80 of letters, digits, '-' and '_' (they also name AWS resources).
_WORKFLOW_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
# Glue job names: 1-255 of word characters and a few punctuation marks.
_GLUE_JOB_NAME = re.compile(r"[\w .:@+=,-]{1,255}")
# A Lambda function name, partial ARN or full ARN (with an optional version or alias).
_FUNCTION_NAME = re.compile(
    r"(arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:|\d{12}:function:)?"
    r"[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]+))?"
)
# ``module.path:attribute`` (the attribute may be dotted).
_HANDLER_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_MAX_INTERVAL_SECONDS = 99_999_999


class WorkflowConfigurationError(ValueError):
    """A workflow configuration is unusable. The message says what to change.

    Example:
        >>> try:
        ...     WorkflowConfiguration(workflow_name="w", steps=[], workflow_bucket="bkt-1",
        ...                           source_queue="q")
        ... except WorkflowConfigurationError as exc:
        ...     print(str(exc).splitlines()[0])
        invalid workflow configuration:
    """


class WorkflowType(StrEnum):
    """How Step Functions runs the workflow.

    ``EXPRESS``: at most 5 minutes, started synchronously by the pipe (``REQUEST_RESPONSE``),
    Lambda steps only. ``STANDARD``: up to a year, started asynchronously
    (``FIRE_AND_FORGET``), Lambda and Glue steps.

    Example:
        >>> WorkflowType("STANDARD") is WorkflowType.STANDARD
        True
    """

    EXPRESS = "EXPRESS"
    STANDARD = "STANDARD"


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        use_enum_values=False,
    )


def _identifier(value: str, what: str) -> str:
    try:
        validate_identifier(value, what)
    except ContextResolutionError as exc:
        raise ValueError(exc.detail) from None
    if value.strip() != value or not value.strip():
        raise ValueError(f"{what} must not be blank")
    if value in RESERVED_STATE_NAMES:
        raise ValueError(
            f"{what} {value!r} is reserved (the generated state machine uses "
            f"{sorted(RESERVED_STATE_NAMES)}); choose another name"
        )
    return value


class LambdaStep(_Model):
    """A stage run by a Lambda function.

    Args:
        state_name: The Step Functions state name, which is also the stage name (the
            ``currentStage`` of the event and the directory of its output).
        function_name: The Lambda function: a name, a partial ARN or a full ARN.
        handler: For local runs, the handler as ``module:attribute`` (a ``@stage`` function
            or a ``WorkflowLambdaHandler`` instance). Not part of the state machine.

    Example:
        >>> LambdaStep(state_name="FilterStage", function_name="engagement-filter",
        ...            handler="examples.engagement.stages:filter_stage").type
        'lambda'
    """

    type: Literal["lambda"] = "lambda"
    state_name: str
    function_name: str = Field(
        validation_alias=AliasChoices("function_name", "functionName", "lambdaFunctionKey")
    )
    handler: str | None = None

    @field_validator("state_name")
    @classmethod
    def _check_state_name(cls, value: str) -> str:
        return _identifier(value, "state_name")

    @field_validator("function_name")
    @classmethod
    def _check_function_name(cls, value: str) -> str:
        if not _FUNCTION_NAME.fullmatch(value):
            raise ValueError(
                "function_name must be a Lambda function name (1-64 letters, digits, '-' or "
                "'_'), optionally as a partial or full ARN with a version or alias"
            )
        return value

    @field_validator("handler")
    @classmethod
    def _check_handler(cls, value: str | None) -> str | None:
        if value is not None and not _HANDLER_REF.fullmatch(value):
            raise ValueError("handler must look like 'package.module:attribute'")
        return value


class GlueStep(_Model):
    """A stage run by an AWS Glue job (STANDARD workflows only).

    Args:
        state_name: The Step Functions state name, which is also the stage name.
        job_name: The Glue job's name.
        script: For local runs, the path of the job's script (relative paths are resolved
            against the configuration file's directory). Not part of the state machine.

    Example:
        >>> GlueStep(state_name="EnrichStage", job_name="engagement-enrich",
        ...          script="glue_enrich.py").type
        'glue'
    """

    type: Literal["glue"] = "glue"
    state_name: str
    job_name: str = Field(validation_alias=AliasChoices("job_name", "jobName", "glueJobName"))
    script: str | None = None

    @field_validator("state_name")
    @classmethod
    def _check_state_name(cls, value: str) -> str:
        return _identifier(value, "state_name")

    @field_validator("job_name")
    @classmethod
    def _check_job_name(cls, value: str) -> str:
        if not _GLUE_JOB_NAME.fullmatch(value) or not value.strip():
            raise ValueError("job_name must be 1-255 letters, digits, spaces or any of '_.:@+=,-'")
        return value


_GLUE_KEYS = frozenset({"job_name", "jobName", "glueJobName"})


def _step_kind(value: Any) -> str | None:
    if isinstance(value, (LambdaStep, GlueStep)):
        return value.type
    if isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str):
            return kind.lower()
        return "glue" if _GLUE_KEYS & value.keys() else "lambda"
    return None


#: One step of a workflow: a :class:`LambdaStep` or a :class:`GlueStep`. In a file, a step's
#: ``type`` (``lambda`` or ``glue``) may be left out when ``job_name`` tells them apart.
Step = Annotated[
    Annotated[LambdaStep, Tag("lambda")] | Annotated[GlueStep, Tag("glue")],
    Discriminator(
        _step_kind,
        custom_error_type="step_type",
        custom_error_message="a step's type must be 'lambda' or 'glue'",
    ),
]


class RetryConfiguration(_Model):
    """How Step Functions retries a failed step (the Kotlin ``RetryConfiguration``).

    A Lambda step is retried on Lambda service errors and on ``TransientStorageError``; a Glue
    step on a failed job run and on Glue service errors. The wait before retry ``n`` (from 1) is
    ``interval * backoff_rate ** (n - 1)``.

    Args:
        lambda_max_attempts: Retries of a Lambda step (0-10; default 2).
        lambda_interval_seconds: Wait before the first retry of a Lambda step (default 20).
        lambda_backoff_rate: Multiplier of the wait per retry (1.0-10.0; default 2.0).
        glue_max_attempts: Retries of a Glue step (0-10; default 2).
        glue_interval_minutes: Wait before the first retry of a Glue step (default 5).
        glue_backoff_rate: Multiplier of the wait per retry (1.0-10.0; default 2.0).

    Example:
        >>> RetryConfiguration().lambda_interval_seconds, RetryConfiguration().glue_interval_seconds
        (20, 300)
    """

    lambda_max_attempts: int = Field(2, ge=0, le=10)
    lambda_interval_seconds: int = Field(20, ge=1, le=_MAX_INTERVAL_SECONDS)
    lambda_backoff_rate: float = Field(2.0, ge=1.0, le=10.0)
    glue_max_attempts: int = Field(2, ge=0, le=10)
    glue_interval_minutes: int = Field(5, ge=1, le=_MAX_INTERVAL_SECONDS // 60)
    glue_backoff_rate: float = Field(2.0, ge=1.0, le=10.0)

    @property
    def glue_interval_seconds(self) -> int:
        """The Glue interval in seconds, as Step Functions takes it."""
        return self.glue_interval_minutes * 60


class WorkflowConfiguration(_Model):
    """A workflow: its steps in order, where intermediate data lives, what starts it.

    Args:
        workflow_name: Names the state machine and the resources around it (1-80 letters,
            digits, ``-`` and ``_``).
        workflow_type: :class:`WorkflowType` (default ``EXPRESS``).
        steps: The stages in order; the first reads the SQS batch, each next one the output of
            the one before.
        workflow_bucket: The S3 bucket for intermediate data.
        source_queue: The SQS queue (name or ARN) whose messages start executions.
        retry_config: The :class:`RetryConfiguration` (defaults as in CEAP).

    Raises:
        WorkflowConfigurationError: A name breaks the identifier rules or repeats, there are
            no steps, an EXPRESS workflow has a Glue step, or a retry value is out of range.

    Example:
        >>> wf = WorkflowConfiguration(
        ...     workflow_name="engagement",
        ...     workflow_type=WorkflowType.EXPRESS,
        ...     steps=[LambdaStep(state_name="ETLStage", function_name="engagement-etl"),
        ...            LambdaStep(state_name="FilterStage", function_name="engagement-filter")],
        ...     workflow_bucket="ceap-workflow-dev",
        ...     source_queue="engagement-events",
        ... )
        >>> [s.state_name for s in wf.steps]
        ['ETLStage', 'FilterStage']
    """

    workflow_name: str
    workflow_type: WorkflowType = WorkflowType.EXPRESS
    steps: list[Step]
    workflow_bucket: str
    source_queue: str
    retry_config: RetryConfiguration = Field(default_factory=RetryConfiguration)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise WorkflowConfigurationError(describe(exc)) from None

    @classmethod
    def parse(cls, data: Any) -> WorkflowConfiguration:
        """Build a configuration from a mapping (e.g. parsed YAML or JSON).

        Raises:
            WorkflowConfigurationError: The mapping is not a valid configuration.

        Example:
            >>> WorkflowConfiguration.parse({
            ...     "workflowName": "w", "workflowType": "STANDARD",
            ...     "steps": [{"stateName": "A", "jobName": "job-a"}],
            ...     "workflowBucket": "bkt-1", "sourceQueue": "q"}).steps[0].type
            'glue'
        """
        if not isinstance(data, dict):
            raise WorkflowConfigurationError(
                f"a workflow configuration must be a mapping, not {type(data).__name__}"
            )
        return cls(**data)

    @field_validator("workflow_name")
    @classmethod
    def _check_workflow_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("workflow_name must not be blank")
        if not _WORKFLOW_NAME.fullmatch(value):
            raise ValueError(
                "workflow_name must be 1-80 letters, digits, '-' or '_' (it names the state "
                "machine)"
            )
        return value

    @field_validator("workflow_type", mode="before")
    @classmethod
    def _upper_type(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("workflow_bucket")
    @classmethod
    def _check_bucket(cls, value: str) -> str:
        try:
            return validate_bucket(value, "workflow_bucket")
        except ContextResolutionError as exc:
            raise ValueError(exc.detail) from None

    @field_validator("source_queue")
    @classmethod
    def _check_queue(cls, value: str) -> str:
        name = value.rsplit(":", 1)[-1] if value.startswith("arn:") else value
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,75}(\.fifo)?", name):
            raise ValueError(
                "source_queue must be an SQS queue name (1-80 letters, digits, '-' or '_', "
                "optionally ending in .fifo) or a queue ARN"
            )
        return value

    @model_validator(mode="after")
    def _check_steps(self) -> WorkflowConfiguration:
        if not self.steps:
            raise ValueError("a workflow needs at least one step; steps is empty")
        seen: dict[str, int] = {}
        for step in self.steps:
            seen[step.state_name] = seen.get(step.state_name, 0) + 1
        duplicates = sorted(name for name, count in seen.items() if count > 1)
        if duplicates:
            raise ValueError(f"step names must be unique within a workflow; repeated: {duplicates}")
        glue = [s for s in self.steps if isinstance(s, GlueStep)]
        if self.workflow_type is WorkflowType.EXPRESS and glue:
            listed = ", ".join(f"{s.state_name} (job {s.job_name})" for s in glue)
            raise ValueError(
                "an EXPRESS workflow cannot run Glue steps: EXPRESS executions stop after 5 "
                "minutes and cannot wait for a job with the '.sync' integration, which a Glue "
                f"job needs. Glue steps found: {listed}. Use workflow_type STANDARD."
            )
        return self

    def to_asl(self) -> dict[str, Any]:
        """The state machine definition (see :func:`ceap_stage.workflow.build_definition`).

        Example:
            >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
            ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
            >>> wf.to_asl()["StartAt"]
            'A'
        """
        from ._asl import build_definition

        return build_definition(self)

    def to_cloudformation(self) -> dict[str, Any]:
        """The CloudFormation template (see :func:`ceap_stage.workflow.build_template`).

        Example:
            >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
            ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
            >>> wf.to_cloudformation()["Resources"]["StateMachine"]["Type"]
            'AWS::StepFunctions::StateMachine'
        """
        from ._template import build_template

        return build_template(self)

    @property
    def state_names(self) -> list[str]:
        """The steps' state names, in order."""
        return [step.state_name for step in self.steps]

    def previous_stage(self, index: int) -> str | None:
        """The stage whose output step ``index`` reads (None for the first step).

        A first step that is a Glue job reads the staged initial input, so its previous stage
        is the pseudo-stage ``initial``.
        """
        if index > 0:
            return self.steps[index - 1].state_name
        return INITIAL_STAGE if isinstance(self.steps[0], GlueStep) else None


def describe(exc: ValidationError) -> str:
    """One line per problem, naming the field path (e.g. ``steps.1.state_name``)."""
    lines = ["invalid workflow configuration:"]
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"] if p not in ("lambda", "glue"))
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where or 'configuration'}: {message}")
    return "\n".join(lines)
