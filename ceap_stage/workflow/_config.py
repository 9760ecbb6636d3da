"""The workflow configuration: what a team writes to describe its pipeline.

The models mirror CEAP's Kotlin ``WorkflowConfiguration`` (``workflowName``, ``workflowType``,
``steps``, ``workflowBucket``, ``sourceQueue``, ``retryConfig``) and accept both snake_case and
the Kotlin camelCase field names, so a YAML or JSON file can use either. Validation happens at
construction and raises :class:`WorkflowConfigurationError` (a ``ValueError``) with a message
that says what to change.
"""

from __future__ import annotations

import difflib
import functools
import re
import typing
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from ceap_stage._context import INITIAL_STAGE, validate_bucket
from ceap_stage._errors import ContextResolutionError

from ._fanout_kind import FANOUT_KIND
from ._glue_kind import GLUE_KIND, GlueStep
from ._kinds import (
    FAIL_STATE,
    RESERVED_STATE_NAMES,
    STAGE_INITIAL_INPUT_STATE,
    StepKindError,
    StepModel,
    WorkflowConfigurationError,
    WorkflowDraft,
    WorkflowType,
    _Model,
    kind_name_of_data,
    kind_of,
    register_kind,
    registered_kinds,
)
from ._kotlin_kind import KOTLIN_KIND
from ._lambda_kind import LAMBDA_KIND, FanOut, LambdaStep

__all__ = [
    "FAIL_STATE",
    "RESERVED_STATE_NAMES",
    "STAGE_INITIAL_INPUT_STATE",
    "FanOut",
    "GlueStep",
    "LambdaStep",
    "RetryConfiguration",
    "Step",
    "StepKindError",
    "WorkflowConfiguration",
    "WorkflowConfigurationError",
    "WorkflowType",
]

# The step kinds, in the order the generators ask them. A new kind is registered here and added
# to the ``Step`` union below.
register_kind(LAMBDA_KIND)
register_kind(GLUE_KIND)
register_kind(KOTLIN_KIND)  # a variant of the Lambda kind: LambdaStep(contract="ceap-kotlin")
register_kind(FANOUT_KIND)  # a variant of the Lambda kind: LambdaStep(fan_out=FanOut(...))

# State machine names: 1-80 of letters, digits, '-' and '_' (they also name AWS resources).
_WORKFLOW_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_MAX_INTERVAL_SECONDS = 99_999_999


def _step_kind(value: Any) -> str | None:
    return kind_name_of_data(value, default=LAMBDA_KIND.name)


#: One step of a workflow: a :class:`LambdaStep` or a :class:`GlueStep`. In a file, a step's
#: ``type`` (``lambda`` or ``glue``) may be left out when ``job_name`` tells them apart.
Step = Annotated[
    Annotated[LambdaStep, Tag(LAMBDA_KIND.name)] | Annotated[GlueStep, Tag(GLUE_KIND.name)],
    Discriminator(
        _step_kind,
        custom_error_type="step_type",
        custom_error_message=(
            "a step's type must be "
            + " or ".join(repr(k.name) for k in registered_kinds() if k.variant_of is None)
        ),
    ),
]
_STEP: TypeAdapter[Step] = TypeAdapter(Step)


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
        source_queue: The SQS queue (name or ARN) whose messages start executions through an
            EventBridge Pipe (default: none; start executions another way).
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
    source_queue: str | None = None
    retry_config: RetryConfiguration = Field(default_factory=RetryConfiguration)

    def __init__(self, /, **data: Any) -> None:
        # Every fault in one round: the field errors, and the workflow-level checks over the
        # parts that are valid (a bad retry_config must not hide a repeated step name).
        try:
            super().__init__(**data)
        except ValidationError as exc:
            given = isinstance(data.get("steps"), list | tuple)
            problems = field_problems(exc, snake=_snake_style(data))
            problems += _workflow_problems(_draft_of(data), steps_given=given)
            raise WorkflowConfigurationError(_message(problems)) from None
        problems = _workflow_problems(WorkflowDraft(self.workflow_type, tuple(self.steps)))
        if problems:
            raise WorkflowConfigurationError(_message(problems))

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
    def _check_queue(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.rsplit(":", 1)[-1] if value.startswith("arn:") else value
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,75}(\.fifo)?", name):
            raise ValueError(
                "source_queue must be an SQS queue name (1-80 letters, digits, '-' or '_', "
                "optionally ending in .fifo) or a queue ARN"
            )
        return value

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

    def index_of(self, stage: str, what: str = "stage") -> int:
        """The position of the step named ``stage``.

        Raises:
            ValueError: No step has that name; the message lists the workflow's stages.

        Example:
            >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="ceap-w",
            ...     steps=[LambdaStep(state_name="A", function_name="fa")])
            >>> wf.index_of("A")
            0
            >>> wf.index_of("B")
            Traceback (most recent call last):
            ...
            ValueError: stage B is not in workflow w (its stages: A)
        """
        names = self.state_names
        if stage not in names:
            raise ValueError(
                f"{what} {stage} is not in workflow {self.workflow_name} "
                f"(its stages: {', '.join(names)})"
            )
        return names.index(stage)

    def previous_stage(self, index: int) -> str | None:
        """The stage whose output step ``index`` reads (None for the first step).

        A first step whose kind reads the staged initial input (a Glue job) has the
        pseudo-stage ``initial`` as its previous stage.
        """
        if index > 0:
            return self.steps[index - 1].state_name
        return INITIAL_STAGE if kind_of(self.steps[0]).reads_staged_input else None


def field_problems(
    exc: ValidationError, *, snake: bool, title: str | None = None, show_input: bool = False
) -> list[str]:
    """One line per field error of ``exc``: where (dotted), and what is wrong.

    The one formatting of configuration errors, for a file (:meth:`WorkflowConfiguration.parse`)
    and for a Python module that builds the models itself (the loader): a key the model does not
    have is named with the closest known key (:func:`_unknown_key`), and fields are named the way
    the configuration names them, snake_case (``state_name``) or camelCase (``stateName``).

    Args:
        exc: What pydantic raised.
        snake: Name fields in snake_case (else in camelCase, as a file of CEAP's names does).
        title: The model's name before each location (``LambdaStep.handler``).
        show_input: Add the refused value to a value's error (``(got 'x')``).

    Example:
        >>> from ceap_stage.workflow import LambdaStep
        >>> try:
        ...     LambdaStep(stat_name="A", function_name="fa")
        ... except ValidationError as exc:
        ...     field_problems(exc, snake=True, title="LambdaStep")
        ['LambdaStep.state_name: Field required', 'LambdaStep.stat_name: not a known key (did you mean state_name, a key of a Lambda step and a Glue step?)']
    """  # noqa: E501
    kinds = {kind.name for kind in registered_kinds()}
    names = _field_names() if snake else _camel_names()
    problems = []
    for error in exc.errors(include_url=False):
        path = [str(p) for p in error["loc"] if p not in kinds]
        unknown = error["type"] == "extra_forbidden" and bool(path)
        if unknown:
            path[:-1] = [names.get(part, part) for part in path[:-1]]  # the typo as written
        else:
            path = [names.get(part, part) for part in path]
        where = ".".join(([title] if title else []) + path)
        message = error["msg"].removeprefix("Value error, ")
        if unknown:
            message = _unknown_key(path[-1], snake=snake)
        elif show_input and isinstance(error.get("input"), str | int | float):
            message += f" (got {error['input']!r})"
        problems.append(f"{where or 'configuration'}: {message}")
    return problems


def _unknown_key(key: str, *, snake: bool = False) -> str:
    """Why ``key`` is refused: where it belongs, or the closest known key when one is close
    (a snake_case one when the configuration is written in snake_case).

    >>> _unknown_key("workflowBuckt")
    'not a known key (did you mean workflowBucket, a key of the workflow?)'
    >>> _unknown_key("workflow_buckt", snake=True)
    'not a known key (did you mean workflow_bucket, a key of the workflow?)'
    >>> _unknown_key("retryConfig")
    'not a key here: retryConfig is a key of the workflow'
    """
    owners = _key_owners()
    if key in owners:
        return f"not a key here: {key} is a key of {' and '.join(owners[key])}"
    known = [k for k in owners if k == k.lower()] if snake else list(owners)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if not close:
        return "not a known key"
    return f"not a known key (did you mean {close[0]}, a key of {' and '.join(owners[close[0]])}?)"


def _snake_style(data: dict[str, Any]) -> bool:
    """Whether a configuration's keys are snake_case (as Python keywords are): none is
    camelCase."""
    return not any(isinstance(key, str) and key != key.lower() for key in data)


@functools.cache
def _field_names() -> dict[str, str]:
    """The field name (``state_name``) of every camelCase alias (``stateName``) of the
    configuration's models."""
    names: dict[str, str] = {}
    for model in _models():
        for name, info in model.model_fields.items():
            for key in (info.alias, *_alias_names(info.validation_alias)):
                if isinstance(key, str) and key != name:
                    names.setdefault(key, name)
    return names


@functools.cache
def _camel_names() -> dict[str, str]:
    """The camelCase name (``functionName``) of every field name (``function_name``) of the
    configuration's models: pydantic names a field by its alias, or by its name when it has
    a choice of aliases."""
    names: dict[str, str] = {}
    for model in _models():
        for name, info in model.model_fields.items():
            names.setdefault(name, info.alias or to_camel(name))
    return names


@functools.cache
def _key_owners() -> dict[str, tuple[str, ...]]:
    """Every key a workflow configuration may hold (field names and aliases, nested models
    too), with what holds it: ``the workflow``, ``a Lambda step``, ``RetryConfiguration``..."""
    owners: dict[str, list[str]] = {}
    for model, label in _labelled_models():
        for name, info in model.model_fields.items():
            for key in (name, info.alias, *_alias_names(info.validation_alias)):
                if isinstance(key, str) and label not in owners.setdefault(key, []):
                    owners[key].append(label)
    return {key: tuple(labels) for key, labels in owners.items()}


def _models() -> list[Any]:
    return [model for model, _ in _labelled_models()]


@functools.cache
def _labelled_models() -> tuple[tuple[Any, str], ...]:
    """The configuration's models (the workflow, each kind's step, the models they hold), each
    with what it is called in a message."""
    found: list[tuple[Any, str]] = []
    pending: list[tuple[Any, str]] = [(WorkflowConfiguration, "the workflow")]
    pending += [(kind.model, f"a {kind.noun}") for kind in registered_kinds()]
    seen: set[Any] = set()
    while pending:
        model, label = pending.pop(0)
        if model in seen:
            continue
        seen.add(model)
        found.append((model, label))
        for info in model.model_fields.values():
            pending.extend((m, m.__name__) for m in _models_in(info.annotation))
    return tuple(found)


def _alias_names(alias: Any) -> list[str]:
    """The plain names of a validation alias (a string, or ``AliasChoices`` of strings)."""
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return []


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation names (in unions, lists, Annotated...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _message(problems: list[str]) -> str:
    return "\n".join(["invalid workflow configuration:", *(f"  - {p}" for p in problems)])


def _given(data: dict[str, Any], name: str, camel: str, default: Any = None) -> Any:
    return data[name] if name in data else data.get(camel, default)


def _draft_of(data: dict[str, Any]) -> WorkflowDraft:
    """The valid parts of a configuration whose fields did not all validate."""
    raw_type = _given(data, "workflow_type", "workflowType", WorkflowType.EXPRESS)
    try:
        workflow_type: WorkflowType | None = WorkflowType(
            raw_type.upper() if isinstance(raw_type, str) else raw_type
        )
    except ValueError:
        workflow_type = None
    raw_steps = data.get("steps")
    steps: list[StepModel | None] = []
    if isinstance(raw_steps, list | tuple):
        for raw in raw_steps:
            try:
                steps.append(_STEP.validate_python(raw))
            except ValidationError:
                steps.append(None)  # its own errors are among the field errors
    return WorkflowDraft(workflow_type, tuple(steps))


def _workflow_problems(draft: WorkflowDraft, *, steps_given: bool = True) -> list[str]:
    """What is wrong with the workflow as a whole, and each kind's checks of its steps."""
    problems: list[str] = []
    valid = [step for step in draft.steps if step is not None]
    if not draft.steps and steps_given:
        problems.append("a workflow needs at least one step; steps is empty")
    seen: dict[str, int] = {}
    for step in valid:
        seen[step.state_name] = seen.get(step.state_name, 0) + 1
    duplicates = sorted(name for name, count in seen.items() if count > 1)
    if duplicates:
        problems.append(f"step names must be unique within a workflow; repeated: {duplicates}")
    for kind in registered_kinds():
        indices = [
            i for i, step in enumerate(draft.steps) if step is not None and kind_of(step) is kind
        ]
        if indices:
            problems.extend(kind.check(draft, indices))
    return [f"configuration: {problem}" for problem in problems]
