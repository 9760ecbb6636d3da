"""Step kinds: what one kind of step means, in one place.

A step kind (:class:`StepKind`) owns everything the rest of the workflow package needs to know
about one kind of step:

- its configuration model (a :class:`StepModel` subclass with a literal ``type``) and its checks
  in the context of the whole workflow (:meth:`StepKind.check`);
- the states it contributes to the state machine (:meth:`StepKind.states`; one or several, e.g.
  a staging state before a first Glue step) and the state the step is entered by;
- what the state machine's role needs (:meth:`StepKind.policy_statements`) and any template
  resources and outputs of its own;
- the event or arguments a step receives (named by :attr:`StepKind.input_function`);
- how it runs locally: one attempt, and which errors are retried (:meth:`StepKind.local_attempt`,
  :meth:`StepKind.local_retry`);
- how it is displayed (:meth:`StepKind.display`).

The ASL and template generators, the local runner and the CLI iterate the steps and ask each
step's kind (:func:`kind_of`); none of them tests a step's class. Adding a kind is one module
(a model and a :class:`StepKind`) plus its registration in ``_config.py`` (the ``Step`` union
and :func:`register_kind`). A *variant* of a kind (:attr:`StepKind.variant_of`) serves the steps
of an existing model that an option turns into something else (a fanned-out Lambda step, a
Kotlin stage): one module subclassing that kind plus :func:`register_kind`, and the option's
field on the model.

This module also holds what every kind shares: the base model, the identifier check, the Fail
state and the ``Retry``/``Catch`` guard every task state gets.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

from ceap_stage._context import INITIAL_STAGE, output_key, validate_identifier
from ceap_stage._errors import ContextResolutionError
from ceap_stage._settings import Settings

from ._compat import StageContract
from ._paths import escape_intrinsic_literal

if TYPE_CHECKING:
    from ceap_stage._store import Store

    from ._config import WorkflowConfiguration
    from ._loader import LoadedWorkflow
    from ._resources import DeployedTarget, StackArtifacts

__all__ = [
    "BATCH_FAILURES_STATE",
    "BATCH_OUTCOME_STATE",
    "EXECUTION_NAME",
    "FAIL_STATE",
    "QUEUE_BATCH_VARIABLE",
    "RESERVED_STATE_NAMES",
    "STAGE_INITIAL_INPUT_STATE",
    "SUCCEED_STATE",
    "LocalRetry",
    "LocalStepRun",
    "PackageSource",
    "StepKind",
    "StepKindError",
    "StepModel",
    "WorkflowConfigurationError",
    "WorkflowDraft",
    "WorkflowType",
    "chain",
    "context_object",
    "guarded",
    "key_expression",
    "kind_named",
    "kind_of",
    "output_format_for",
    "register_kind",
    "registered_kinds",
    "require_kind",
    "sub",
]

#: The Fail state every task's ``Catch`` leads to.
FAIL_STATE: Final = "WorkflowFailed"
#: The state that stages the initial input for a workflow whose first step is a Glue job.
STAGE_INITIAL_INPUT_STATE: Final = "StageInitialInput"
#: The state variable an EXPRESS workflow's first Lambda step assigns its pointer to.
QUEUE_BATCH_VARIABLE: Final = "queueBatch"
#: The Choice after the last step of an EXPRESS workflow: did the first stage report rejects?
BATCH_OUTCOME_STATE: Final = "QueueBatchOutcome"
#: The Pass state returning ``{"batchItemFailures": [...]}`` to the pipe.
BATCH_FAILURES_STATE: Final = "ReturnBatchItemFailures"
#: The Succeed state that ends an execution whose first stage reports no batch outcome.
SUCCEED_STATE: Final = "WorkflowSucceeded"
#: Names a step may not take: the generated states, and the initial input's pseudo-stage.
RESERVED_STATE_NAMES: Final = frozenset(
    {
        FAIL_STATE,
        STAGE_INITIAL_INPUT_STATE,
        INITIAL_STAGE,
        BATCH_OUTCOME_STATE,
        BATCH_FAILURES_STATE,
        SUCCEED_STATE,
    }
)
#: The execution's name (the contract's execution id) in a JSONPath template.
EXECUTION_NAME: Final = "$$.Execution.Name"


class WorkflowConfigurationError(ValueError):
    """A workflow configuration is unusable. The message says what to change.

    Example:
        >>> from ceap_stage.workflow import WorkflowConfiguration
        >>> try:
        ...     WorkflowConfiguration(workflow_name="w", steps=[], workflow_bucket="bkt-1",
        ...                           source_queue="q")
        ... except WorkflowConfigurationError as exc:
        ...     print(str(exc).splitlines()[0])
        invalid workflow configuration:
    """


class StepKindError(WorkflowConfigurationError):
    """A function that serves one step kind was asked about a step of another kind.

    Example:
        >>> from ceap_stage.workflow import GlueStep, WorkflowConfiguration, lambda_event
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_type="STANDARD",
        ...     workflow_bucket="bkt-1", source_queue="q",
        ...     steps=[GlueStep(state_name="G", job_name="job-g")])
        >>> try:
        ...     lambda_event(wf, 0, execution_id="run-1")
        ... except StepKindError as exc:
        ...     print(exc)
        step 0 (G) is a Glue step (kind 'glue'), and lambda_event serves Lambda steps only; use glue_arguments(config, 0) for it
    """  # noqa: E501


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


def identifier(value: str, what: str) -> str:
    """``value`` when it is a valid, unreserved state name; else a ``ValueError`` saying why."""
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


class StepModel(_Model):
    """The configuration every step has: its kind's ``type`` tag and its state name.

    A kind's model subclasses this, narrows ``type`` to a literal with a default (e.g.
    ``type: Literal["lambda"] = "lambda"``) and adds its own fields (snake_case; camelCase is
    accepted too).

    Example:
        >>> from ceap_stage.workflow import LambdaStep
        >>> issubclass(LambdaStep, StepModel)
        True
    """

    type: str
    state_name: str

    @field_validator("state_name")
    @classmethod
    def _check_state_name(cls, value: str) -> str:
        return identifier(value, "state_name")


S = TypeVar("S", bound=StepModel)


@dataclass(frozen=True)
class WorkflowDraft:
    """What a kind's workflow-level checks see: the parts of a configuration that are valid.

    Built from a finished configuration, or from one whose fields failed validation, so that
    every fault is reported in one round.

    Attributes:
        workflow_type: The workflow type (None when it is itself invalid).
        steps: The steps in order; None where a step is itself invalid.

    Example:
        >>> from ceap_stage.workflow import LambdaStep
        >>> draft = WorkflowDraft(WorkflowType.EXPRESS, (LambdaStep(state_name="A",
        ...                                                         function_name="fa"), None))
        >>> draft.steps[1] is None
        True
    """

    workflow_type: WorkflowType | None
    steps: tuple[StepModel | None, ...]


@dataclass(frozen=True)
class LocalRetry:
    """How the local runner retries a failed attempt of a step.

    Attributes:
        max_retries: Retries after the first attempt.
        interval_seconds: Wait before the first retry.
        backoff_rate: Multiplier of the wait per retry.
        errors: Class names of the errors that are retried.

    Example:
        >>> LocalRetry(2, 20.0, 2.0, ("TransientStorageError",)).max_retries
        2
    """

    max_retries: int
    interval_seconds: float
    backoff_rate: float
    errors: tuple[str, ...]

    def wait_after(self, error: BaseException, attempt: int, scale: float = 1.0) -> float | None:
        """The wait before retrying attempt ``attempt`` (0: the first), which raised ``error``;
        None when it is not retried (another error class, or no retries left).

        ``scale`` multiplies the wait (a runner's ``retry_delay_scale``).

        Example:
            >>> from ceap_stage import TransientStorageError
            >>> retry = LocalRetry(2, 20.0, 2.0, ("TransientStorageError",))
            >>> retry.wait_after(TransientStorageError("slow"), 1), retry.wait_after(KeyError(), 0)
            (40.0, None)
        """
        if type(error).__name__ not in self.errors or attempt >= self.max_retries:
            return None
        return self.interval_seconds * self.backoff_rate**attempt * scale


@dataclass
class LocalStepRun:
    """What a kind gets to run one step in the local runner.

    Attributes:
        config: The workflow.
        workflow: Where it was loaded from (scripts resolve against it).
        store: Where the run's outputs go.
        settings: The run's settings (``store_url`` is the store's); hand them to stage code.
        index: The step's index.
        execution_id: The execution id of the run.
        initial_input: The execution input (the SQS batch).
        measure: Records and bytes of a stage's output, read back from the store.
        stage_scope: A context in which stage code run in this process resolves the run's
            settings and store (``using_settings``; the environment is never written).
        shared: Values shared by the run's steps (e.g. one Spark session), by kind-chosen key.
        resources: Closed when the run ends (register a session's ``stop`` here).
        workers: How many processes a step may run its parts in (a fanned-out step's shards).
        retry_delay_scale: Multiplies every retry wait (as the runner's own).
        report_shards: Called with (done, total) as a fanned-out step's shards finish.
        report_shard_failure: Called with a shard's index and error when it fails for good.
        details: What the attempt wants shown beside its outcome (shards, workers, memory).
    """

    config: WorkflowConfiguration
    workflow: LoadedWorkflow
    store: Store
    settings: Settings
    index: int
    execution_id: str
    initial_input: Any
    measure: Callable[[str], tuple[int | None, int | None]]
    stage_scope: Callable[[], contextlib.AbstractContextManager[object]]
    shared: dict[str, Any] = field(default_factory=dict)
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    workers: int = 1
    retry_delay_scale: float = 1.0
    report_shards: Callable[[int, int], None] = lambda done, total: None
    report_shard_failure: Callable[[int, BaseException], None] = lambda index, error: None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> StepModel:
        """The step to run."""
        return self.config.steps[self.index]


#: One attempt of a step: called with the retry count (0 first), returns the records and bytes
#: of the step's output (None where unknown); raises what the stage raised.
Attempt = Callable[[int], tuple[int | None, int | None]]


class PackageSource(NamedTuple):
    """What ``ceap-stage package`` builds for a step: one of the two is set.

    Example:
        >>> PackageSource(handler="pipeline.score:handler").handler
        'pipeline.score:handler'
    """

    #: A Lambda handler (``package.module:name``): its code is zipped with the layer.
    handler: str | None = None
    #: A Glue script, found on disk: it is uploaded with ceap-stage as a wheel.
    script: Path | None = None


class StepKind(ABC, Generic[S]):
    """One kind of step: its model, checks, states, permissions, local run and display.

    Subclass it once per kind, set the class attributes, implement the abstract methods, and
    register one instance with :func:`register_kind`.

    Attributes:
        name: The ``type`` tag of the kind's steps (``"lambda"``, ``"glue"``).
        model: The kind's configuration model.
        label: How people call it (``"Lambda"``, ``"Glue job"``).
        noun: How messages call one of its steps (``"Lambda step"``).
        identifying_fields: Field names (either spelling) that select this kind when a step in
            a file leaves ``type`` out.
        input_function: The public function that builds what a step of this kind receives.
        reads_staged_input: True when a first step of this kind reads the batch from the
            pseudo-stage ``initial`` (staged by one of its states) instead of the event.
        input_format: The output format this kind's steps need the step before them to write
            (``"json"``: one JSON document), or None when they read any format. The step before
            receives it as ``"outputFormat"`` in its event.
        output_formats: The ``outputFormat`` values this kind's steps honour when the step
            after them asks for one (a kind that cannot write one JSON document on request
            leaves it empty, and a step that needs one is refused after it).
        variant_of: For a variant, the ``name`` of the kind it refines. A variant subclasses
            that kind, its steps keep that kind's model and ``type``, and it serves those of
            them for which :meth:`applies_to` is true (the latest registered variant first).

    Example:
        >>> from ceap_stage.workflow import LambdaStep
        >>> kind = kind_of(LambdaStep(state_name="A", function_name="fa"))
        >>> kind.name, kind.display(LambdaStep(state_name="A", function_name="fa"))
        ('lambda', 'Lambda fa')
    """

    name: ClassVar[str]
    model: ClassVar[type[StepModel]]
    label: ClassVar[str]
    noun: ClassVar[str]
    identifying_fields: ClassVar[frozenset[str]] = frozenset()
    input_function: ClassVar[str]
    reads_staged_input: ClassVar[bool] = False
    input_format: ClassVar[str | None] = None
    output_formats: ClassVar[frozenset[str]] = frozenset()
    variant_of: ClassVar[str | None] = None

    def applies_to(self, step: S) -> bool:
        """For a variant: whether it serves ``step`` (a step of the kind it refines)."""
        return True

    # -- configuration ------------------------------------------------------------------------

    def check(self, draft: WorkflowDraft, indices: Sequence[int]) -> list[str]:
        """Problems of this kind's steps (at ``indices``) in the context of the whole workflow.

        Field rules belong on the model; this sees the workflow type and the other steps (the
        previous and next step of each). Return one message per problem; an empty list is fine.
        """
        return []

    def code_problems(self, step: S) -> list[str]:
        """Problems of the step's code, found when it can be imported here (the workflow
        loader asks; none by default). Code that cannot be imported is not a problem here."""
        return []

    @abstractmethod
    def target(self, step: S) -> str:
        """What runs the step in AWS (a function name, a job name)."""

    def display(self, step: S) -> str:
        """The step's label for people: the kind's label and its target."""
        return f"{self.label} {self.target(step)}"

    def step_input(
        self, config: WorkflowConfiguration, index: int, *, execution_id: str, state_input: Any
    ) -> Any:
        """What the state machine sends step ``index`` (its :attr:`input_function`'s value):
        ``ceap-stage event`` prints it, ready for ``ceap-stage invoke``.

        Raises:
            StepKindError: The kind does not say (the default).
        """
        raise StepKindError(f"{self.noun}s do not say what the state machine sends them")

    # -- the state machine --------------------------------------------------------------------

    def entry_state(self, config: WorkflowConfiguration, index: int) -> str:
        """The state the execution enters step ``index`` by (default: the step's own state)."""
        return config.steps[index].state_name

    @abstractmethod
    def states(
        self, config: WorkflowConfiguration, index: int, next_state: str | None
    ) -> dict[str, dict[str, Any]]:
        """The states of step ``index``, in order, the entry state first.

        Their last state goes on to ``next_state`` (the next step's entry state), or ends the
        execution when it is None (see :func:`chain`); task states are :func:`guarded`.
        """

    @abstractmethod
    def policy_statements(
        self, config: WorkflowConfiguration, indices: Sequence[int]
    ) -> list[dict[str, Any]]:
        """The IAM statements the state machine's role needs to run this kind's steps."""

    def resources(self, config: WorkflowConfiguration, indices: Sequence[int]) -> dict[str, Any]:
        """CloudFormation resources this kind's steps add to the template (by logical id)."""
        return {}

    def outputs(self, config: WorkflowConfiguration, indices: Sequence[int]) -> dict[str, Any]:
        """CloudFormation outputs this kind's steps add to the template (by name)."""
        return {}

    def deployed_resources(
        self, config: WorkflowConfiguration, index: int, artifacts: StackArtifacts
    ) -> dict[str, Any]:
        """The resources that create step ``index`` itself, from the packaged ``artifacts``
        (``ceap-stage package``): a function, a job, their roles, logs and alarms. None by
        default: the step's target exists already."""
        return {}

    def machine_statements(
        self, config: WorkflowConfiguration, indices: Sequence[int], *, deployed: bool
    ) -> list[dict[str, Any]]:
        """What the state machine's role needs for this kind's steps beyond reaching their
        targets (a fan-out: its own child executions, ``shards.jsonl`` and the map results).

        ``deployed``: in the stack ``ceap-stage deploy`` builds (the state machine is named
        ``<name>-<Environment>`` and the bucket is its ``WorkflowBucket``), not the plain
        template. None by default.
        """
        return []

    def deployed_target(self, config: WorkflowConfiguration, index: int) -> DeployedTarget | None:
        """How the state machine reaches step ``index`` once :meth:`deployed_resources` created
        it (None: the kind creates nothing)."""
        return None

    def package_source(self, step: S, workflow: LoadedWorkflow) -> PackageSource | None:
        """What ``ceap-stage package`` builds for ``step`` (None: nothing, its target exists).

        Raises:
            ValueError: The step cannot be packaged (no handler, a missing script); the
                message says what to fix.
        """
        return None

    # -- local runs ---------------------------------------------------------------------------

    def local_problems(self, step: S, workflow: LoadedWorkflow) -> list[str]:
        """Why ``step`` cannot run locally (a missing handler or script); empty when it can."""
        return []

    def local_environment_problems(self, steps: Sequence[S]) -> list[str]:
        """Why this kind's steps cannot run on this machine (a missing optional dependency)."""
        return []

    def local_store_problems(
        self, steps: Sequence[S], workflow: LoadedWorkflow, store: Store, bucket: str
    ) -> list[str]:
        """Why this kind's ``steps`` cannot run locally on ``store`` (``bucket`` holds the
        execution); empty when they can. Only the steps that are about to run are given."""
        return []

    @abstractmethod
    def local_retry(self, config: WorkflowConfiguration) -> LocalRetry:
        """Which errors of a local attempt are retried, how often and after what wait."""

    @abstractmethod
    def local_attempt(self, run: LocalStepRun) -> Attempt:
        """Prepare step ``run.index`` (once per run) and return how one attempt runs."""

    # -- contracts between stages -------------------------------------------------------------

    def contract(self, step: S, workflow: LoadedWorkflow) -> StageContract:
        """What ``step`` reads and writes, for ``ceap-stage check`` (default: nothing known).

        A kind whose steps declare models (or schemas) returns them here; the check compares
        each step's ``writes`` with the next step's ``reads``. A side left unknown makes the
        edge UNCHECKED, with the reason given.
        """
        return StageContract.unknown(f"{self.noun} {step.state_name} declares no models")


_KINDS: dict[str, StepKind[Any]] = {}
# The variants of each kind, by the name of the kind they refine, the latest registered first.
_VARIANTS: dict[str, list[StepKind[Any]]] = {}


def register_kind(kind: StepKind[Any]) -> StepKind[Any]:
    """Make ``kind`` known to the ASL, the template, the runner and the CLI.

    Kinds are asked in registration order (it orders, e.g., the role's policy statements).

    Raises:
        ValueError: Another kind has the same name, or a variant does not subclass the
            registered kind it refines.

    Example:
        >>> kind_named("lambda") in registered_kinds()
        True
    """
    if kind.name in _KINDS:
        if _KINDS[kind.name] is kind:
            return kind
        raise ValueError(f"a step kind named {kind.name!r} is registered already")
    if kind.variant_of is not None:
        base = _KINDS.get(kind.variant_of)
        if base is None or base.variant_of is not None or not isinstance(kind, type(base)):
            raise ValueError(
                f"step kind {kind.name!r} refines {kind.variant_of!r}: register that kind first "
                "and subclass it"
            )
        _VARIANTS.setdefault(base.name, []).insert(0, kind)
    _KINDS[kind.name] = kind
    return kind


def registered_kinds() -> tuple[StepKind[Any], ...]:
    """The registered kinds, in registration order.

    Example:
        >>> [kind.name for kind in registered_kinds()]
        ['lambda', 'glue', 'ceap-kotlin', 'lambda-fan-out']
    """
    return tuple(_KINDS.values())


def kind_named(name: str) -> StepKind[Any]:
    """The kind whose steps have ``type`` ``name``.

    Raises:
        KeyError: No such kind is registered.

    Example:
        >>> kind_named("glue").label
        'Glue job'
    """
    return _KINDS[name]


def kind_of(step: StepModel) -> StepKind[Any]:
    """The kind of ``step``: the first variant of its model's kind that applies, else that kind.

    Example:
        >>> from ceap_stage.workflow import GlueStep
        >>> kind_of(GlueStep(state_name="G", job_name="job-g")).noun
        'Glue step'
    """
    for variant in _VARIANTS.get(step.type, ()):
        if variant.applies_to(step):
            return variant
    return _KINDS[step.type]


def output_format_for(config: WorkflowConfiguration, index: int) -> str | None:
    """The output format step ``index`` must write for the step after it (None: its choice).

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa"),
        ...     LambdaStep(state_name="K", function_name="fk", contract="ceap-kotlin")])
        >>> output_format_for(wf, 0), output_format_for(wf, 1)
        ('json', None)
    """
    if index + 1 >= len(config.steps):
        return None
    return kind_of(config.steps[index + 1]).input_format


def kind_name_of_data(value: Any, default: str) -> str | None:
    """The kind tag of a step given as a model or a mapping (for the ``Step`` discriminator).

    A mapping without ``type`` is the kind whose identifying fields it has, else ``default``.
    """
    if isinstance(value, StepModel):
        return value.type
    if isinstance(value, Mapping):
        tag = value.get("type")
        if isinstance(tag, str):
            return tag.lower()
        keys = set(value.keys())
        for kind in _KINDS.values():
            if kind.variant_of is None and kind.identifying_fields & keys:
                return kind.name
        return default
    return None


def require_kind(config: WorkflowConfiguration, index: int, kind: StepKind[S], function: str) -> S:
    """Step ``index`` when it is of ``kind`` (or of a variant of it); else a
    :class:`StepKindError` naming the function to use instead.
    """
    step = config.steps[index]
    actual = kind_of(step)
    if not isinstance(actual, type(kind)):
        raise StepKindError(
            f"step {index} ({step.state_name}) is a {actual.noun} (kind {actual.name!r}), and "
            f"{function} serves {kind.noun}s only; use {actual.input_function}(config, {index}) "
            "for it"
        )
    return step  # type: ignore[return-value]  # its kind's model, checked just above


# -- what the kinds' states share ---------------------------------------------------------------


def sub(text: str) -> dict[str, str]:
    """A CloudFormation ``Fn::Sub``."""
    return {"Fn::Sub": text}


def key_expression(stage: str) -> str:
    """``States.Format`` of a stage's output key from the execution name."""
    template = escape_intrinsic_literal(output_key("\x00", stage)).replace("\x00", "{}")
    return f"States.Format('{template}', {EXECUTION_NAME})"


def _retry(errors: Sequence[str], attempts: int, interval: int, rate: float) -> list[Any]:
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


def guarded(
    state: dict[str, Any], errors: Sequence[str], attempts: int, interval: int, rate: float
) -> dict[str, Any]:
    """``state`` with its ``Retry`` (when ``attempts`` allows one) and the ``Catch`` into the
    Fail state every step's failure ends in."""
    retriers = _retry(errors, attempts, interval, rate)
    if retriers:
        state["Retry"] = retriers
    state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": FAIL_STATE}]
    return state


def chain(state: dict[str, Any], next_state: str | None) -> dict[str, Any]:
    """``state`` going on to ``next_state``, or ending the execution when it is None."""
    if next_state is None:
        state["End"] = True
    else:
        state["Next"] = next_state
    return state


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
