"""Run a whole workflow in one process, as the generated state machine would.

Each Lambda step's handler gets exactly the event the state machine sends (the ASL ``Payload``
template evaluated by :func:`~ceap_stage.workflow.lambda_event`) and a fake Lambda context; each
Glue step's script runs in-process on local Spark with the arguments the state machine passes
(:func:`~ceap_stage.workflow.glue_arguments`). Retryable errors are retried with the configured
intervals (scaled by ``retry_delay_scale``). Nothing is shared with AWS: outputs go to the given
store (a :class:`~ceap_stage.LocalStore` directory by default).

How one attempt of a step runs, and which errors are retried, is its kind's business
(``StepKind.local_attempt`` and ``StepKind.local_retry``, see ``_kinds.py``); the runner runs the
steps in order, retries, measures and reports.

Retries, locally: a Lambda step is retried on the errors its ``Retry`` names
(:data:`~ceap_stage.workflow.LAMBDA_RETRY_ERRORS`; only ``TransientStorageError`` can occur
without AWS). A Glue step follows its state's rule too: it is retried on Glue service errors only
(:data:`~ceap_stage.workflow.GLUE_RETRY_ERRORS`), so a failed script, like a failed job run in
AWS, runs once. A Kotlin step runs through its stand-in; its failure is ``StageFailed``, which is
not retried.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ceap_stage._context import output_key, validate_execution_id
from ceap_stage._errors import CeapStageError, InputValidationError
from ceap_stage._io import OutputRef, StageIO
from ceap_stage._models import drift
from ceap_stage._settings import Settings, resolve_settings, using_settings
from ceap_stage._store import LocalStore, Store

from ._asl import returns_batch_item_failures
from ._config import Step, WorkflowConfiguration
from ._glue_kind import GLUE_LOCAL_RETRY_ERRORS
from ._kinds import LocalStepRun, kind_of, registered_kinds
from ._loader import LoadedWorkflow

__all__ = [
    "ExecutionExistsError",
    "GLUE_LOCAL_RETRY_ERRORS",
    "LocalRunError",
    "LocalRunner",
    "Reporter",
    "RunResult",
    "StageOutcome",
    "error_origin",
    "new_execution_id",
]

Status = Literal["SUCCEEDED", "FAILED", "NOT_RUN", "REUSED", "KEPT"]


class LocalRunError(Exception):
    """The workflow cannot run locally (a missing handler or script, no PySpark, ...).

    Raised before any step runs.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> LocalRunner(wf).check()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ceap_stage.workflow._runner.LocalRunError: cannot run this workflow locally:
          - Lambda step A names no handler ('module:attribute') to run locally
    """


class ExecutionExistsError(LocalRunError):
    """A new run was given the id of an execution that already has stage outputs.

    Like Step Functions, which refuses a second execution with the same name, a new run never
    writes over another run's outputs: a failed run would otherwise leave the earlier run's
    later outputs in place, and look complete. Continue that execution with
    :meth:`LocalRunner.resume` instead, or pick another id. Raised before any step runs; nothing
    is written.

    Attributes:
        execution_id: The execution id.
        stages: The stages that have an output in that execution (workflow order first).

    Example:
        >>> error = ExecutionExistsError("run-1", ["Load", "Score"])
        >>> str(error).split(":")[0]
        'execution run-1 already has outputs (stages Load, Score)'
        >>> error.stages
        ['Load', 'Score']
    """

    def __init__(self, execution_id: str, stages: list[str]) -> None:
        super().__init__(
            f"execution {execution_id} already has outputs (stages {', '.join(stages)}): give a "
            "new run another execution id, or continue this one with resume"
        )
        self.execution_id = execution_id
        self.stages = stages


@dataclass
class StageOutcome:
    """What happened to one step in a local run.

    Attributes:
        stage: The step's state name.
        kind: The step's kind (its ``type``: ``"lambda"``, ``"glue"``).
        status: ``SUCCEEDED``, ``FAILED``, ``NOT_RUN`` (after an earlier failure, or a stage
            without output that ``run_only`` left out), ``REUSED`` (kept from the execution a
            ``resume`` continues) or ``KEPT`` (not run by ``run_only``; its earlier output is
            left as it was).
        attempts: How many times it ran (retries included).
        records: Records in its output (None when unknown).
        bytes: Size of its output in bytes (data parts included; None when unknown).
        seconds: Wall time, retries and their waits included.
        output: Where its ``output.json`` is (a local path or an ``s3://`` URL).
        error_type: The class name of the error it failed with.
        error_message: That error's message (contract errors carry no payload).
        error_origin: Where the stage's own code raised it, ``path:line`` (the deepest frame
            outside ceap-stage, the standard library and installed packages; None when there is
            none, e.g. a contract error raised before the stage's function ran).
        rejected: Queue records it left out under ``on_invalid_record="reject"`` (None when
            it wrote no ``rejected.jsonl``).
        details: What its kind reported beside (a fanned-out step: ``shards``, ``workers``,
            ``peak_shard_process_bytes``, ``failed_shards``).

    Example:
        >>> StageOutcome("ScoreStage", "lambda").status
        'NOT_RUN'
    """

    stage: str
    kind: str
    status: Status = "NOT_RUN"
    attempts: int = 0
    records: int | None = None
    bytes: int | None = None
    seconds: float = 0.0
    output: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_origin: str | None = None
    rejected: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """The outcome of :meth:`LocalRunner.run`.

    Attributes:
        workflow: The workflow's name.
        execution_id: The execution id the stages ran under.
        bucket: The workflow bucket the outputs are under.
        store: The store that holds them.
        stages: One :class:`StageOutcome` per step, in order.
        error: The exception the failed step raised (None when all succeeded).
        batch_item_failures: What the generated EXPRESS machine returns to its pipe when the
            first stage rejected queue records, ``[{"itemIdentifier": messageId}, ...]``; None
            when it returns the last step's result (see docs/batches.md).
        only: The one stage :meth:`LocalRunner.run_only` ran (None: a whole or resumed run).
        warnings: What the run found worth saying (a kept output written by another model
            than the code has now).
        cleared: The stages whose earlier outputs a ``resume`` removed before running them
            again (they were not this run's to keep).

    Example:
        >>> from ceap_stage import LocalStore
        >>> result = RunResult("w", "run-1", "bkt-1", LocalStore("/data"),
        ...                    [StageOutcome("A", "lambda", status="SUCCEEDED")])
        >>> result.succeeded, result.execution_location
        (True, '/data/bkt-1/executions/run-1/')
    """

    workflow: str
    execution_id: str
    bucket: str
    store: Store
    stages: list[StageOutcome] = field(default_factory=list)
    error: BaseException | None = None
    batch_item_failures: list[dict[str, str]] | None = None
    only: str | None = None
    warnings: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """True when no step failed and every step that was to run succeeded."""
        ran = [s for s in self.stages if s.status != "REUSED"]
        if self.only is not None:
            ran = [s for s in ran if s.stage == self.only]
        return all(s.status == "SUCCEEDED" for s in ran)

    @property
    def failed_stage(self) -> StageOutcome | None:
        """The step that failed, if any."""
        return next((s for s in self.stages if s.status == "FAILED"), None)

    @property
    def execution_location(self) -> str:
        """Where this execution's outputs live (a directory, or an ``s3://`` prefix)."""
        return _display(self.store, self.bucket, f"executions/{self.execution_id}/")

    @property
    def final_output(self) -> str | None:
        """The last step's output location, when the run succeeded."""
        if not self.succeeded or not self.stages:
            return None
        if self.only is not None:
            return next(s.output for s in self.stages if s.stage == self.only)
        return self.stages[-1].output

    @property
    def outputs_exist(self) -> bool:
        """True when some stage of the execution has an output (its directory exists)."""
        return any(s.status in ("SUCCEEDED", "REUSED", "KEPT") for s in self.stages)


class Reporter(Protocol):
    """Receives progress from :class:`LocalRunner` (the CLI prints it).

    Example:
        >>> class Dots:
        ...     def run_started(self, result, config): pass
        ...     def stage_started(self, index, step): print(".", end="")
        ...     def attempt_failed(self, step, attempt, error, retry_in): print("!", end="")
        ...     def stage_finished(self, index, outcome): pass
        >>> runner = LocalRunner  # LocalRunner(workflow, reporter=Dots())
    """

    def run_started(self, result: RunResult, config: WorkflowConfiguration) -> None:
        """The run is about to start its first step."""

    def stage_started(self, index: int, step: Step) -> None:
        """Step ``index`` (0-based) starts its first attempt."""

    def attempt_failed(
        self, step: Step, attempt: int, error: BaseException, retry_in: float | None
    ) -> None:
        """An attempt failed; ``retry_in`` is the wait before the next one (None: no retry)."""

    def stage_finished(self, index: int, outcome: StageOutcome) -> None:
        """Step ``index`` succeeded or failed for good."""


# Optional Reporter methods, called when a reporter has them (a fanned-out step's shards):
#   shards_progress(step, done, total) and shard_failed(step, shard_index, error).


class _SilentReporter:
    def run_started(self, result: RunResult, config: WorkflowConfiguration) -> None:
        pass

    def stage_started(self, index: int, step: Step) -> None:
        pass

    def attempt_failed(
        self, step: Step, attempt: int, error: BaseException, retry_in: float | None
    ) -> None:
        pass

    def stage_finished(self, index: int, outcome: StageOutcome) -> None:
        pass


def new_execution_id() -> str:
    """A fresh execution id for a local run: ``local-{UTC time}-{random}``.

    Example:
        >>> new_execution_id().startswith("local-")
        True
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"local-{stamp}-{uuid.uuid4().hex[:8]}"


def _display(store: Store, bucket: str, key: str) -> str:
    if isinstance(store, LocalStore):
        path = store.root.joinpath(bucket, *key.rstrip("/").split("/"))
        with contextlib.suppress(ValueError):
            path = path.relative_to(Path.cwd())
        return str(path) + ("/" if key.endswith("/") else "")
    return f"s3://{bucket}/{key}"


def _store_url(store: Store) -> str:
    return store.root.as_uri() if isinstance(store, LocalStore) else "s3://"


def _library_dirs() -> tuple[str, ...]:
    """Where code that is not the user's lives: ceap-stage, the standard library, packages."""
    import sysconfig

    paths = sysconfig.get_paths()
    found = {Path(__file__).resolve().parents[1]}
    found.update(
        Path(paths[name]).resolve()
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
        if name in paths
    )
    return tuple(sorted(str(path) + os.sep for path in found))


def error_origin(error: BaseException) -> str | None:
    """Where the user's code raised ``error``: ``path:line`` of its deepest frame outside
    ceap-stage, the standard library and installed packages (None: no such frame).

    The path is relative to the working directory when it lies below it.

    Example:
        >>> try:
        ...     {}["missing"]
        ... except KeyError as exc:
        ...     error_origin(exc).startswith("<doctest")
        True
    """
    import traceback

    libraries = _library_dirs()
    origin = None
    for frame in traceback.extract_tb(error.__traceback__):
        filename = frame.filename
        if filename.startswith("<frozen") or (
            not filename.startswith("<") and str(Path(filename).resolve()).startswith(libraries)
        ):
            continue
        origin = frame
    if origin is None:
        return None
    path = origin.filename
    with contextlib.suppress(ValueError):
        path = str(Path(path).resolve().relative_to(Path.cwd()))
    return f"{path}:{origin.lineno}"


def _root_cause(error: BaseException) -> BaseException:
    """The contract error behind a Glue script's ``SystemExit(1)``."""
    if isinstance(error, SystemExit) and error.__cause__ is not None:
        return error.__cause__
    return error


class LocalRunner:
    """Runs a workflow's steps in order in this process.

    Args:
        workflow: A :class:`LoadedWorkflow` (from :func:`~ceap_stage.workflow.load_workflow`) or
            a bare :class:`WorkflowConfiguration` (Glue scripts then resolve against the
            working directory).
        store: Where outputs go (default: ``LocalStore(".ceap")``).
        bucket: Use this bucket instead of the configuration's (e.g. ``--store s3://bucket``).
        retry_delay_scale: Multiplies every retry wait (0 retries at once; for tests and
            impatient laptops). Default 1.0: the configured intervals.
        reporter: Receives progress (default: silent).
        sleep: How to wait between retries (tests may record instead of sleeping).
        settings: The settings the stages run with (default: resolved from the environment
            now); their ``store_url`` is replaced by ``store``'s. A ``@stage`` handler gets them
            (and ``store``) through ``handler.runtime.configured``; a Glue script or a plain
            Lambda function runs inside :func:`~ceap_stage.using_settings`. The environment is
            never written.
        workers: How many processes a fanned-out step runs its shards in (default: the
            machine's cores; 1 runs them in this process).

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="demo", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="Echo", function_name="echo",
        ...                                         handler="ceap_stage.testing:build_event")])
        >>> runner = LocalRunner(wf, store=LocalStore(tempfile.mkdtemp()))
        >>> runner.check()  # every step can run here
    """

    def __init__(
        self,
        workflow: LoadedWorkflow | WorkflowConfiguration,
        *,
        store: Store | None = None,
        bucket: str | None = None,
        retry_delay_scale: float = 1.0,
        reporter: Reporter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        settings: Settings | None = None,
        workers: int | None = None,
    ) -> None:
        if isinstance(workflow, WorkflowConfiguration):
            workflow = LoadedWorkflow(workflow, Path.cwd(), Path.cwd())
        config = workflow.config
        if bucket is not None and bucket != config.workflow_bucket:
            config = WorkflowConfiguration.parse({**config.model_dump(), "workflow_bucket": bucket})
        if retry_delay_scale < 0:
            raise ValueError("retry_delay_scale must not be negative")
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.workflow = workflow
        self.config = config
        self.store = store if store is not None else LocalStore(".ceap")
        self.settings = (settings or resolve_settings()).replace(store_url=_store_url(self.store))
        self.retry_delay_scale = retry_delay_scale
        self.reporter: Reporter = reporter or _SilentReporter()
        self._sleep = sleep

    # -- before the run ---------------------------------------------------------------------

    def check(self) -> None:
        """Check that every step can run here: handlers import, scripts exist, PySpark is there.

        Raises:
            LocalRunError: A step cannot run locally; the message says which and why.
        """
        problems: list[str] = []
        for step in self.config.steps:
            problems.extend(kind_of(step).local_problems(step, self.workflow))
        for kind in registered_kinds():
            steps = [step for step in self.config.steps if kind_of(step) is kind]
            if steps:
                problems.extend(kind.local_environment_problems(steps))
        if problems:
            raise LocalRunError("cannot run this workflow locally:\n  - " + "\n  - ".join(problems))

    def _check_store(self, start: int, stop: int) -> None:
        """Check that steps ``start`` to ``stop`` (those about to run) can run on this store.

        Raises:
            LocalRunError: They cannot (Glue steps on S3); one line, nothing ran or was written.
        """
        problems: list[str] = []
        steps = self.config.steps[start:stop]
        bucket = self.config.workflow_bucket
        for kind in registered_kinds():
            mine = [step for step in steps if kind_of(step) is kind]
            if mine:
                problems.extend(kind.local_store_problems(mine, self.workflow, self.store, bucket))
        if problems:
            raise LocalRunError("; ".join(problems))

    # -- the run ----------------------------------------------------------------------------

    def run(self, initial_input: Any, *, execution_id: str | None = None) -> RunResult:
        """Run every step in order; stop at the first step that fails for good.

        Args:
            initial_input: The execution input: what the EventBridge Pipe sends, i.e. a batch
                (list) of SQS records whose ``body`` is a JSON string.
            execution_id: The execution id (default: a new ``local-...`` id).

        Returns:
            The :class:`RunResult`; ``succeeded`` is False when a step failed (its error is in
            ``error``, and the failed step wrote no ``output.json``).

        Raises:
            ExecutionExistsError: ``execution_id`` already has stage outputs (nothing ran; the
                execution input staged for a first Glue step does not count).
            LocalRunError: A step cannot run locally (nothing ran).
            ContextResolutionError: ``execution_id`` breaks the identifier rules.
        """
        self.check()
        self._check_store(0, len(self.config.steps))
        execution_id = (
            new_execution_id() if execution_id is None else validate_execution_id(execution_id)
        )
        # Also for a fresh id: one listing finds a missing or unreadable bucket before any stage.
        existing = self.stage_outputs(execution_id)
        if existing:
            raise ExecutionExistsError(execution_id, existing)
        return self._run(initial_input, execution_id, start=0, stop=len(self.config.steps))

    def stage_outputs(self, execution_id: str) -> list[str]:
        """The stages with an ``output.json`` in ``execution_id``: workflow order, then others.

        One delimiter listing of the execution and one ``HEAD`` per stage found. A stage that
        failed wrote no output and does not count, nor does the staged execution input.

        Example:
            >>> import tempfile
            >>> from ceap_stage import LocalStore
            >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
            >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
            ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
            >>> LocalRunner(wf, store=LocalStore(tempfile.mkdtemp())).stage_outputs("run-1")
            []
        """
        from ._inspect import Execution

        names = [step.state_name for step in self.config.steps]
        execution = Execution(
            self.store, self.config.workflow_bucket, execution_id, stage_order=names
        )
        return [name for name, output in execution.stages_if_any().items() if output.exists]

    def resume(
        self,
        execution_id: str,
        *,
        from_stage: str | None = None,
        initial_input: Any = None,
    ) -> RunResult:
        """Continue an execution: keep the outputs before the failed step, run the rest.

        The steps before ``from_stage`` (default: before the first step without an output)
        are kept, after checking their outputs (the object exists; a manifest's parts exist
        with their sizes), and reported ``REUSED``; the rest run with the same execution id.
        Outputs of the steps that run again are removed first (listed in
        :attr:`RunResult.cleared`): were the run to fail, an output the earlier run left after
        the failed step would otherwise make the execution look complete.

        Args:
            execution_id: The execution to continue.
            from_stage: Run again from this stage on (default: from the first one without an
                output).
            initial_input: The execution input, needed only when the first step runs again.

        Raises:
            InspectError: The execution does not exist, ``from_stage`` is not in the workflow,
                or a kept output is missing or damaged (nothing ran).
            LocalRunError: A step cannot run locally (nothing ran).
        """
        from ._inspect import Execution, InspectError

        self.check()
        execution_id = validate_execution_id(execution_id)
        names = [step.state_name for step in self.config.steps]
        execution = Execution(
            self.store, self.config.workflow_bucket, execution_id, stage_order=names
        )
        if not execution.exists():
            raise InspectError(
                f"no execution {execution_id} in bucket {self.config.workflow_bucket}"
            )
        if from_stage is not None:
            start = self._index_of(from_stage, "--from stage")
        else:
            start = next(
                (i for i, name in enumerate(names) if not execution.output(name).exists),
                len(names),
            )
        warnings: list[str] = []
        for index, name in enumerate(names[:start]):
            output = execution.output(name)
            if not output.exists:
                raise InspectError(
                    f"cannot keep stage {name} of execution {execution_id}: it has no output"
                )
            output.check()
            changed = output.drift(self.written_model(index))
            if changed:
                warnings.append(f"the kept output of stage {name} was {changed}")
        self._check_store(start, len(names))
        cleared = [name for name in names[start:] if execution.output(name).exists]
        for name in cleared:
            self._clear(execution_id, name)
        result = self._run(
            initial_input, execution_id, start=start, stop=len(names), cleared=cleared
        )
        result.warnings.extend(warnings)
        return result

    def _clear(self, execution_id: str, stage: str) -> None:
        """Remove what a stage stored: its ``output.json`` first, so it never looks written."""
        ref = OutputRef(self.config.workflow_bucket, execution_id, stage)
        self.store.delete(ref.bucket, [ref.key])
        rest = self.store.list_keys(ref.bucket, ref.prefix)
        if rest:
            self.store.delete(ref.bucket, rest)

    def written_model(self, index: int) -> Any:
        """The model step ``index`` writes with as the code has it now (None: unknown)."""
        step = self.config.steps[index]
        try:
            return kind_of(step).contract(step, self.workflow).writes.model
        except Exception:  # a handler that does not import: no model to compare
            return None

    def run_only(self, stage: str, *, execution_id: str, initial_input: Any = None) -> RunResult:
        """Run one step alone, on the input the execution's previous stage wrote.

        It gets exactly the event (Lambda) or arguments (Glue) the state machine sends.

        Args:
            stage: The step's state name.
            execution_id: The execution whose input it reads and where it writes.
            initial_input: The execution input, for a first step.

        Raises:
            InspectError: ``stage`` is not in the workflow, or its input is missing.
            LocalRunError: The step cannot run locally.
        """
        from ._inspect import Execution, InspectError

        self.check()
        execution_id = validate_execution_id(execution_id)
        index = self._index_of(stage, "stage")
        self._check_store(index, index + 1)
        previous = self.config.previous_stage(index)
        if index > 0 and previous is not None:
            execution = Execution(self.store, self.config.workflow_bucket, execution_id)
            if not execution.output(previous).exists:
                raise InspectError(
                    f"stage {stage} reads the output of stage {previous}, which execution "
                    f"{execution_id} does not have"
                )
        result = self._run(initial_input, execution_id, start=index, stop=index + 1, keep=False)
        result.only = stage
        for outcome in result.stages:  # the others did not run; their outputs stay as they were
            if outcome.stage != stage:
                self._mark_kept(execution_id, outcome, "KEPT")
        return result

    def _mark_kept(self, execution_id: str, outcome: StageOutcome, status: Status) -> None:
        """Describe a stage's existing output in ``outcome`` (left NOT_RUN when it has none)."""
        ref = OutputRef(self.config.workflow_bucket, execution_id, outcome.stage)
        if self.store.head(ref.bucket, ref.key) is None:
            return
        outcome.status = status
        outcome.records, outcome.bytes = self._measure(execution_id, outcome.stage)
        outcome.output = _display(self.store, ref.bucket, ref.key)

    def _index_of(self, stage: str, what: str) -> int:
        from ._inspect import InspectError

        try:
            return self.config.index_of(stage, what)
        except ValueError as exc:
            raise InspectError(str(exc)) from None

    def _run(
        self,
        initial_input: Any,
        execution_id: str,
        *,
        start: int,
        stop: int,
        keep: bool = True,
        cleared: list[str] | None = None,
    ) -> RunResult:
        """Run steps ``start`` to ``stop``; those before ``start`` are ``REUSED`` when ``keep``."""
        config = self.config
        result = RunResult(
            workflow=config.workflow_name,
            execution_id=execution_id,
            bucket=config.workflow_bucket,
            store=self.store,
            stages=[StageOutcome(step.state_name, step.type) for step in config.steps],
            cleared=list(cleared or ()),
        )
        kept = start if keep else 0
        for outcome in result.stages[:kept]:
            outcome.status = "REUSED"
            outcome.records, outcome.bytes = self._measure(execution_id, outcome.stage)
            outcome.output = _display(
                self.store, config.workflow_bucket, output_key(execution_id, outcome.stage)
            )
        self.reporter.run_started(result, config)
        for index in range(kept):
            self.reporter.stage_finished(index, result.stages[index])
        shared: dict[str, Any] = {}
        with contextlib.ExitStack() as resources:  # e.g. the Spark session of the Glue steps
            for index in range(start, stop):
                step = config.steps[index]
                run = LocalStepRun(
                    config=config,
                    workflow=self.workflow,
                    store=self.store,
                    settings=self.settings,
                    index=index,
                    execution_id=execution_id,
                    initial_input=initial_input,
                    measure=lambda stage: self._measure(execution_id, stage),
                    stage_scope=self._stage_scope,
                    shared=shared,
                    resources=resources,
                    workers=self.workers,
                    retry_delay_scale=self.retry_delay_scale,
                    report_shards=self._shard_reporter(step),
                    report_shard_failure=self._shard_failure_reporter(step),
                    details=result.stages[index].details,
                )
                attempt = kind_of(step).local_attempt(run)
                self.reporter.stage_started(index, step)
                outcome = result.stages[index]
                error = self._run_step(step, attempt, execution_id, outcome)
                if error is not None:
                    outcome.error_message = (outcome.error_message or "") + self._drift_note(
                        index, error, execution_id
                    )
                self.reporter.stage_finished(index, outcome)
                if error is not None:
                    result.error = error
                    break
        if result.succeeded and returns_batch_item_failures(config):
            rejected = self._rejected(execution_id, config.steps[0].state_name)
            if rejected is not None:
                result.batch_item_failures = [
                    {"itemIdentifier": str(entry.get("messageId"))} for entry in rejected
                ]
        return result

    def _rejected(self, execution_id: str, stage: str) -> list[dict[str, Any]] | None:
        """The entries of a stage's ``rejected.jsonl``, read through the stage I/O layer."""
        return StageIO(self.store).rejected(
            OutputRef(self.config.workflow_bucket, execution_id, stage)
        )

    def _shard_reporter(self, step: Step) -> Callable[[int, int], None]:
        report = getattr(self.reporter, "shards_progress", None)
        if report is None:
            return lambda done, total: None
        return lambda done, total: report(step, done, total)

    def _shard_failure_reporter(self, step: Step) -> Callable[[int, BaseException], None]:
        report = getattr(self.reporter, "shard_failed", None)
        if report is None:
            return lambda index, error: None
        return lambda index, error: report(step, index, error)

    def _stage_scope(self) -> contextlib.AbstractContextManager[Settings]:
        """Stage code run in this process resolves the run's settings (and so its store)."""
        return using_settings(self.settings)

    def _run_step(
        self,
        step: Step,
        attempt_fn: Callable[[int], tuple[int | None, int | None]],
        execution_id: str,
        outcome: StageOutcome,
    ) -> BaseException | None:
        retry = kind_of(step).local_retry(self.config)
        started = time.perf_counter()
        # A rejected.jsonl left by an earlier run of this stage in this execution (say under
        # on_invalid_record="reject", since switched off) is not this run's: report only what
        # this run rejects.
        ref = OutputRef(self.config.workflow_bucket, execution_id, step.state_name)
        self.store.delete(ref.bucket, [ref.rejected_key])
        attempt = 0
        while True:
            outcome.attempts = attempt + 1
            try:
                records, size = attempt_fn(attempt)
            except (Exception, SystemExit) as raised:
                error = _root_cause(raised)
                wait = retry.wait_after(error, attempt, self.retry_delay_scale)
                self.reporter.attempt_failed(step, attempt + 1, error, wait)
                if wait is None:
                    outcome.status = "FAILED"
                    outcome.error_type = type(error).__name__
                    outcome.error_message = self._error_message(error)
                    outcome.error_origin = error_origin(error)
                    outcome.seconds = time.perf_counter() - started
                    return error
                if wait > 0:
                    self._sleep(wait)
                attempt += 1
                continue
            outcome.status = "SUCCEEDED"
            outcome.records, outcome.bytes = records, size
            # A manifest's pointer gives the manifest's own size: count its parts too, as `show`
            # and a REUSED row do.
            written = StageIO(self.store).describe(ref)
            if written is not None and written.manifest is not None:
                outcome.bytes = written.total_bytes
            outcome.output = _display(
                self.store, self.config.workflow_bucket, output_key(execution_id, step.state_name)
            )
            rejected = self._rejected(execution_id, step.state_name)
            outcome.rejected = None if rejected is None else len(rejected)
            outcome.seconds = time.perf_counter() - started
            return None

    def _error_message(self, error: BaseException) -> str:
        """``str(error)``, with a local store's path where a contract error names an object."""
        message = str(error)
        if isinstance(self.store, LocalStore) and isinstance(error, CeapStageError) and error.key:
            bucket = error.bucket or self.config.workflow_bucket
            local = _display(self.store, bucket, error.key)
            message = message.replace(f"key={error.location}", f"key={error.key}, file={local}")
        return message

    def _drift_note(self, index: int, error: BaseException, execution_id: str) -> str:
        """For an input that fails its model: whether the previous stage's code changed since.

        The runner knows both sides: the fingerprint stored with the previous output, and the
        one the previous stage's model has now.
        """
        if not isinstance(error, InputValidationError) or index == 0:
            return ""
        before = self.config.steps[index - 1]
        model = kind_of(before).contract(before, self.workflow).writes.model
        if model is None:
            return ""
        stored = self.store.get(
            self.config.workflow_bucket, output_key(execution_id, before.state_name)
        )
        changed = drift(stored.metadata, model) if stored is not None else None
        return f" (schema drift: the stored input was {changed})" if changed else ""

    def _measure(self, execution_id: str, stage: str) -> tuple[int | None, int | None]:
        """Records and bytes of a stage's output, read back through the stage I/O layer."""
        ref = OutputRef(self.config.workflow_bucket, execution_id, stage)
        io = StageIO(self.store)
        try:
            described = io.describe(ref)
        except CeapStageError:
            described = None
            info = self.store.head(ref.bucket, ref.key)
            if info is not None:
                return None, info.size
        if described is None:
            where = _display(self.store, ref.bucket, ref.key)
            raise LocalRunError(f"stage {stage} finished but wrote no output.json at {where}")
        return io.measure(ref)
