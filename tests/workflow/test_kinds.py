"""Step kinds: one home per kind, the registry the generators and the runner ask, and the errors
for a function asked about the wrong kind of step."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from ceap_stage import LocalStore
from ceap_stage._cli import ConsoleReporter
from ceap_stage._context import output_key
from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    LocalRunner,
    WorkflowConfiguration,
    WorkflowConfigurationError,
    WorkflowType,
    _kinds,
    build_definition,
    build_template,
    glue_arguments,
    lambda_event,
)
from ceap_stage.workflow._asl import glue_parameters, lambda_payload
from ceap_stage.workflow._kinds import (
    Attempt,
    LocalRetry,
    LocalStepRun,
    StepKind,
    StepKindError,
    StepModel,
    WorkflowDraft,
    chain,
    guarded,
    kind_named,
    kind_of,
    register_kind,
    registered_kinds,
)
from ceap_stage.workflow._lambda_kind import LambdaKind

from .handlers import batch

WORKFLOW = Path(__file__).parents[2] / "ceap_stage" / "workflow"


def _mixed() -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="mixed",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            LambdaStep(state_name="Prepare", function_name="prepare"),
            GlueStep(state_name="Enrich", job_name="enrich-job"),
        ],
        workflow_bucket="bkt-1",
        source_queue="q",
    )


# -- the wrong kind of step ---------------------------------------------------------------------


def test_lambda_event_on_a_glue_step_names_the_step_its_kind_and_the_function_to_use():
    config = _mixed()
    with pytest.raises(StepKindError) as caught:
        lambda_event(config, 1, execution_id="run-1")
    message = str(caught.value)
    assert isinstance(caught.value, WorkflowConfigurationError)
    assert isinstance(caught.value, ValueError)
    assert "Enrich" in message
    assert "Glue step" in message
    assert "'glue'" in message
    assert "lambda_event" in message
    assert "use glue_arguments(config, 1)" in message


def test_glue_arguments_on_a_lambda_step_is_a_clear_error_not_an_assertion():
    config = _mixed()
    with pytest.raises(StepKindError) as caught:
        glue_arguments(config, 0, execution_id="run-1")
    message = str(caught.value)
    assert "Prepare" in message
    assert "Lambda step" in message
    assert "'lambda'" in message
    assert "glue_arguments" in message
    assert "use lambda_event(config, 0)" in message


def test_the_asl_templates_refuse_the_wrong_kind_too():
    config = _mixed()
    with pytest.raises(StepKindError, match="lambda_payload serves Lambda steps only"):
        lambda_payload(config, 1)
    with pytest.raises(StepKindError, match="glue_parameters serves Glue steps only"):
        glue_parameters(config, 0)
    # The right kind still works.
    assert glue_arguments(config, 1, execution_id="run-1")["--previous-stage"] == "Prepare"
    assert lambda_event(config, 0, execution_id="run-1", state_input=[])["initialData"] == []


# -- every fault in one round -------------------------------------------------------------------


def test_every_fault_of_a_configuration_is_reported_in_one_round():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration.parse(
            {
                "workflowName": "orders",
                "workflowType": "EXPRESS",
                "steps": [
                    {"stateName": "A", "functionName": "fa"},
                    {"stateName": "A", "functionName": "fb"},
                    {"stateName": "Heavy", "jobName": "heavy-job"},
                    {"stateName": "Bad", "functionName": "no spaces"},
                ],
                "workflowBucket": "Not_A_Bucket",
                "sourceQueue": "q",
                "retryConfig": {"lambdaMaxAttempts": 11},
            }
        )
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid workflow configuration:"
    message = "\n".join(lines)
    assert "retry_config.lambdaMaxAttempts" in message or "retryConfig" in message
    assert "less than or equal to 10" in message
    assert "not a valid S3 bucket name" in message
    assert "steps.3.function_name" in message or "steps.3.functionName" in message
    assert "repeated: ['A']" in message
    assert "an EXPRESS workflow cannot run Glue steps" in message
    assert "Heavy (job heavy-job)" in message
    assert len(lines) == 6  # the header and one line per fault, no more


def test_workflow_level_faults_are_all_reported_when_the_fields_are_valid():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration(
            workflow_name="orders",
            steps=[
                GlueStep(state_name="G", job_name="job-g"),
                GlueStep(state_name="G", job_name="job-h"),
            ],
            workflow_bucket="bkt-1",
            source_queue="q",
        )
    message = str(caught.value)
    assert "repeated: ['G']" in message
    assert "an EXPRESS workflow cannot run Glue steps" in message


def test_an_invalid_workflow_type_hides_no_other_fault():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration(
            workflow_name="orders",
            workflow_type="HOURLY",
            steps=[
                LambdaStep(state_name="A", function_name="fa"),
                LambdaStep(state_name="A", function_name="fb"),
            ],
            workflow_bucket="bkt-1",
            source_queue="q",
        )
    message = str(caught.value)
    assert "workflow_type" in message
    assert "repeated: ['A']" in message
    assert "EXPRESS workflow" not in message  # no guess about the type it does not have


def test_missing_steps_are_reported_once():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration(workflow_name="orders", workflow_bucket="bkt-1", source_queue="q")
    message = str(caught.value)
    assert "steps: Field required" in message
    assert "at least one step" not in message


# -- the registry -------------------------------------------------------------------------------


def test_the_builtin_kinds_are_registered_in_order_and_own_their_models():
    assert [kind.name for kind in registered_kinds()] == [
        "lambda",
        "glue",
        "ceap-kotlin",
        "lambda-fan-out",
    ]
    assert kind_named("ceap-kotlin").variant_of == "lambda"
    assert kind_named("ceap-kotlin").model is LambdaStep
    assert kind_named("lambda-fan-out").variant_of == "lambda"
    assert kind_named("lambda").model is LambdaStep
    assert kind_named("glue").model is GlueStep
    config = _mixed()
    assert [kind_of(step).display(step) for step in config.steps] == [
        "Lambda prepare",
        "Glue job enrich-job",
    ]
    with pytest.raises(ValueError, match="registered already"):
        register_kind(type(kind_named("glue"))())


def test_no_module_outside_the_kind_modules_tests_a_step_class():
    # The generators, the runner and the CLI ask a step's kind; only a kind knows its class.
    step_classes = re.compile(r"isinstance\([^)]*(LambdaStep|GlueStep)|\.type\s*==")
    sources = [*WORKFLOW.glob("*.py"), *(WORKFLOW.parent / n for n in ("_cli.py", "_package.py"))]
    offenders = [
        f"{path.name}:{n}"
        for path in sources
        if not path.name.endswith("_kind.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if step_classes.search(line)
    ]
    assert offenders == []


# -- a new kind is one module plus a registration -----------------------------------------------


class PauseStep(StepModel):
    """A toy kind with two states: a Wait, then a Pass that records the stage."""

    type: Literal["pause"] = "pause"
    seconds: int = 1


class PauseKind(StepKind[PauseStep]):
    name: ClassVar[str] = "pause"
    model: ClassVar[type[StepModel]] = PauseStep
    label: ClassVar[str] = "Pause"
    noun: ClassVar[str] = "pause step"
    input_function: ClassVar[str] = "pause_event"

    def check(self, draft: WorkflowDraft, indices: Sequence[int]) -> list[str]:
        return [f"pause step {i} is first" for i in indices if i == 0]

    def target(self, step: PauseStep) -> str:
        return f"{step.seconds}s"

    def entry_state(self, config: WorkflowConfiguration, index: int) -> str:
        return f"{config.steps[index].state_name}Wait"

    def states(
        self, config: WorkflowConfiguration, index: int, next_state: str | None
    ) -> dict[str, dict[str, Any]]:
        step = config.steps[index]
        assert isinstance(step, PauseStep)
        wait = {"Type": "Wait", "Seconds": step.seconds, "Next": step.state_name}
        record = guarded(
            {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                "Parameters": {"Bucket": config.workflow_bucket, "Key": "k", "Body": "{}"},
                "ResultPath": None,
            },
            ("States.TaskFailed",),
            1,
            1,
            2.0,
        )
        return {f"{step.state_name}Wait": wait, step.state_name: chain(record, next_state)}

    def policy_statements(
        self, config: WorkflowConfiguration, indices: Sequence[int]
    ) -> list[dict[str, Any]]:
        return [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*", "Sid": "Pause"}]

    def resources(self, config: WorkflowConfiguration, indices: Sequence[int]) -> dict[str, Any]:
        return {"PauseTopic": {"Type": "AWS::SNS::Topic", "Properties": {}}}

    def local_retry(self, config: WorkflowConfiguration) -> LocalRetry:
        return LocalRetry(0, 0.0, 1.0, ())

    def local_attempt(self, run: LocalStepRun) -> Attempt:
        def attempt(retry_count: int) -> tuple[int | None, int | None]:
            stage = run.config.steps[run.index].state_name
            previous = run.config.steps[run.index - 1].state_name
            bucket = run.config.workflow_bucket
            source = run.store.get(bucket, output_key(run.execution_id, previous))
            assert source is not None
            run.store.put(bucket, output_key(run.execution_id, stage), source.body)
            return run.measure(stage)

        return attempt


@pytest.fixture
def pause_kind(monkeypatch: pytest.MonkeyPatch) -> PauseKind:
    kind = PauseKind()
    monkeypatch.setitem(_kinds._KINDS, kind.name, kind)
    return kind


def _with_pause() -> WorkflowConfiguration:
    # The Step union is where a registered kind's model is added; the toy kind is not, so the
    # configuration is assembled without validation.
    steps: list[Any] = [
        LambdaStep(
            state_name="First", function_name="first", handler="tests.workflow.handlers:first"
        ),
        PauseStep(state_name="Breathe", seconds=3),
        LambdaStep(state_name="Last", function_name="last"),
    ]
    return WorkflowConfiguration.model_construct(
        workflow_name="paused",
        workflow_type=WorkflowType.STANDARD,
        steps=steps,
        workflow_bucket="bkt-1",
        source_queue="q",
    )


def test_a_registered_kind_contributes_its_states_permissions_resources_and_label(
    pause_kind: PauseKind,
):
    config = _with_pause()
    asl = build_definition(config)
    assert list(asl["States"]) == ["First", "BreatheWait", "Breathe", "Last", "WorkflowFailed"]
    assert asl["States"]["First"]["Next"] == "BreatheWait"  # the next step's entry state
    assert asl["States"]["Breathe"]["Next"] == "Last"
    assert asl["States"]["Breathe"]["Catch"][0]["Next"] == "WorkflowFailed"
    assert asl["States"]["Last"]["End"] is True
    template = build_template(config)
    statements = template["Resources"]["StateMachineRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    assert [s.get("Sid") for s in statements] == [None, "Pause"]  # registration order
    assert template["Resources"]["PauseTopic"]["Type"] == "AWS::SNS::Topic"
    out = io.StringIO()
    ConsoleReporter(out).stage_started(1, config.steps[1])
    assert "Breathe (Pause 3s) running" in out.getvalue()
    assert pause_kind.check(WorkflowDraft(WorkflowType.STANDARD, tuple(config.steps)), [1]) == []


def test_the_runner_runs_a_registered_kind_through_its_local_attempt(
    pause_kind: PauseKind, tmp_path: Path
):
    config = _with_pause().model_copy(
        update={"steps": _with_pause().steps[:2]}  # First, then the pause step last
    )
    store = LocalStore(tmp_path)
    result = LocalRunner(config, store=store).run(batch(1.0, 2.0))
    assert result.succeeded, result.error
    assert [s.kind for s in result.stages] == ["lambda", "pause"]
    first = store.get("bkt-1", output_key(result.execution_id, "First"))
    copied = store.get("bkt-1", output_key(result.execution_id, "Breathe"))
    assert first is not None
    assert copied is not None
    assert copied.body == first.body


# -- a variant serves the steps an option turns into something else -----------------------------


class TracedLambdaKind(LambdaKind):
    """A toy variant: a Lambda step whose function name starts with 'traced-' gets a Pass state
    before its task."""

    name: ClassVar[str] = "traced-lambda"
    label: ClassVar[str] = "Traced Lambda"
    variant_of: ClassVar[str | None] = "lambda"

    def applies_to(self, step: LambdaStep) -> bool:
        return step.function_name.startswith("traced-")

    def entry_state(self, config: WorkflowConfiguration, index: int) -> str:
        return f"{config.steps[index].state_name}Note"

    def states(
        self, config: WorkflowConfiguration, index: int, next_state: str | None
    ) -> dict[str, dict[str, Any]]:
        task = super().states(config, index, next_state)
        name = config.steps[index].state_name
        return {f"{name}Note": {"Type": "Pass", "Next": name}, **task}


@pytest.fixture
def traced_kind(monkeypatch: pytest.MonkeyPatch) -> TracedLambdaKind:
    kind = TracedLambdaKind()
    monkeypatch.setattr(_kinds, "_KINDS", dict(_kinds._KINDS))
    monkeypatch.setattr(_kinds, "_VARIANTS", {})
    register_kind(kind)
    return kind


def test_a_variant_serves_the_steps_it_applies_to_and_the_base_kind_the_rest(
    traced_kind: TracedLambdaKind,
):
    config = WorkflowConfiguration(
        workflow_name="traced",
        steps=[
            LambdaStep(state_name="Plain", function_name="plain"),
            LambdaStep(state_name="Watched", function_name="traced-watched"),
        ],
        workflow_bucket="bkt-1",
        source_queue="q",
    )
    assert [kind_of(step).name for step in config.steps] == ["lambda", "traced-lambda"]
    asl = build_definition(config)
    assert list(asl["States"]) == [
        "Plain",
        "WatchedNote",
        "Watched",
        "QueueBatchOutcome",
        "ReturnBatchItemFailures",
        "WorkflowSucceeded",
        "WorkflowFailed",
    ]
    assert asl["States"]["Plain"]["Next"] == "WatchedNote"
    assert asl["States"]["Watched"]["Next"] == "QueueBatchOutcome"
    # A variant's steps are still served by the functions of the kind it refines.
    assert lambda_event(config, 1, execution_id="run-1")["currentStage"] == "Watched"
    with pytest.raises(StepKindError, match=r"Watched.*Lambda step"):
        glue_arguments(config, 1, execution_id="run-1")


def test_a_variant_must_refine_a_registered_kind_it_subclasses(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_kinds, "_KINDS", dict(_kinds._KINDS))
    monkeypatch.setattr(_kinds, "_VARIANTS", {})

    class Orphan(TracedLambdaKind):
        name: ClassVar[str] = "orphan"
        variant_of: ClassVar[str | None] = "batch"

    class Stranger(PauseKind):
        name: ClassVar[str] = "stranger"
        variant_of: ClassVar[str | None] = "lambda"

    with pytest.raises(ValueError, match="refines 'batch'"):
        register_kind(Orphan())
    with pytest.raises(ValueError, match="refines 'lambda'"):
        register_kind(Stranger())
