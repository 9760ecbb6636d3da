"""The ``ceap-stage`` command line.

Commands::

    ceap-stage check WORKFLOW         can every stage read what the one before writes?
    ceap-stage run WORKFLOW [--input FILE] [--store file://DIR | s3://BUCKET] [--execution-id ID]
                            [--no-check] [--workers N]
    ceap-stage run WORKFLOW --resume EXECUTION [--from STAGE]     continue an execution
    ceap-stage run WORKFLOW --only STAGE --execution-id ID         one step alone
    ceap-stage executions [--store URL] [--bucket B] [--limit N]  executions, newest first
    ceap-stage show EXECUTION [STAGE] [--head N] [--format table|jsonl|json]
    ceap-stage replay WORKFLOW EXECUTION STAGE --from-store s3://BUCKET [--store URL] [--pdb]
    ceap-stage event WORKFLOW STAGE [--execution-id ID]           what a step receives
    ceap-stage asl WORKFLOW           print the state machine definition (ASL JSON)
    ceap-stage template WORKFLOW      print the CloudFormation template (JSON)
    ceap-stage invoke module:handler --event FILE [--store URL]
    ceap-stage layer [--python V] [--arch A] [--out DIR] [--source DIR | --wheel FILE]
    ceap-stage package WORKFLOW --artifacts-bucket B [--out DIR] [--layer-arn ARN]
    ceap-stage deploy WORKFLOW --stack-name S --artifacts-bucket B [--parameter K=V ...]
                      [--dry-run] [--region R] [--profile P]
    ceap-stage init DIR               a new project: one stage, its test, a workflow
    ceap-stage --version

``WORKFLOW`` is a Python module exposing a ``WorkflowConfiguration`` (as ``workflow``) or a
YAML/JSON file. Exit status: 0 on success, 1 when a stage fails (the error class is printed) or
an edge is incompatible (``check``, and ``run`` before any stage runs), 2 for a usage or
configuration error (a handler that does not import included), 130 when interrupted (Ctrl-C).
The module imports only the standard library; the rest is imported by the command that needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ceap_stage._settings import Settings
    from ceap_stage._store import Store
    from ceap_stage.workflow import WorkflowConfiguration
    from ceap_stage.workflow._config import Step
    from ceap_stage.workflow._runner import RunResult, StageOutcome

__all__ = ["main"]

EXIT_OK = 0
EXIT_STAGE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
DEFAULT_STORE = "file://.ceap"


class _UsageError(Exception):
    """A problem with the command line or the configuration (exit status 2)."""


def _human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover - the loop always returns


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 60 else f"{value / 60:.1f} min"


class ConsoleReporter:
    """Prints a local run's progress and summary for humans."""

    def __init__(self, out: TextIO) -> None:
        self.out: TextIO | None = out
        self.total = 0
        self.standard = False
        self.execution_id: str | None = None
        self.running: str | None = None  # the stage running now
        self.first_running = False

    def _print(self, text: str = "") -> None:
        if self.out is None:
            return
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError:
            # The reader went away (`ceap-stage run ... | head`): the run goes on unprinted,
            # rather than stopping between two stages; its exit status still tells how it went.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
            self.out = None

    def run_started(self, result: RunResult, config: WorkflowConfiguration) -> None:
        self.total = len(config.steps)
        self.standard = config.workflow_type.value == "STANDARD"
        self.execution_id = result.execution_id
        self._print(
            f"ceap-stage run: workflow {config.workflow_name} ({config.workflow_type.value}, "
            f"{self.total} step{'' if self.total == 1 else 's'}), execution {result.execution_id}"
        )
        self._print(f"store: {_describe_store(result.store)}, bucket {result.bucket}")
        if result.cleared:
            self._print(
                f"removed the earlier outputs of {', '.join(result.cleared)}: they run again"
            )

    def stage_started(self, index: int, step: Step) -> None:
        from ceap_stage.workflow._kinds import kind_of

        label = kind_of(step).display(step)
        self.running, self.first_running = step.state_name, index == 0
        self._print(f"[{index + 1}/{self.total}] {step.state_name} ({label}) running ...")

    def attempt_failed(
        self, step: Step, attempt: int, error: BaseException, retry_in: float | None
    ) -> None:
        if retry_in is None:
            return  # failed for good: reported once, at the end
        self._print(
            f"      attempt {attempt} failed with {type(error).__name__}; "
            f"retrying in {_seconds(retry_in)}"
        )

    def shards_progress(self, step: Step, done: int, total: int) -> None:
        # About twenty lines per fanned-out step, whatever its number of shards.
        every = max(1, total // 20)
        if done in (0, total) or done % every == 0:
            self._print(f"      shards {done}/{total} done")

    def shard_failed(self, step: Step, index: int, error: BaseException) -> None:
        self._print(f"      shard {index} failed with {type(error).__name__}: {error}")

    def stage_finished(self, index: int, outcome: StageOutcome) -> None:
        self.running = None
        prefix = f"[{index + 1}/{self.total}] {outcome.stage}"
        retries = f", {outcome.attempts} attempts" if outcome.attempts > 1 else ""
        if outcome.status == "REUSED":
            self._print(
                f"{prefix} REUSED: {_records(outcome.records)}, {_human_bytes(outcome.bytes)}"
            )
        elif outcome.status == "SUCCEEDED":
            rejected = f", {outcome.rejected} rejected" if outcome.rejected is not None else ""
            self._print(
                f"{prefix} succeeded: {_records(outcome.records)}{rejected}, "
                f"{_human_bytes(outcome.bytes)}, "
                f"{_seconds(outcome.seconds)}{retries}"
            )
            failed_shards = outcome.details.get("failed_shards")
            if failed_shards:  # a fan-out that tolerated failures: its output lacks their records
                shards = outcome.details.get("shards", "?")
                self._print(
                    f"{prefix}: {len(failed_shards)} of {shards} shards failed (tolerated): their "
                    f"records are missing from the output (shards "
                    f"{', '.join(map(str, failed_shards))})"
                )
        else:
            self._print(f"{prefix} FAILED{retries}")

    def summary(self, result: RunResult) -> None:
        rows = [("STAGE", "STATUS", "RECORDS", "BYTES", "TIME", "OUTPUT")]
        for s in result.stages:
            done = s.status in ("SUCCEEDED", "REUSED")
            rows.append(
                (
                    s.stage,
                    s.status,
                    "-" if s.records is None else str(s.records),
                    _human_bytes(s.bytes),
                    _seconds(s.seconds) if s.status in ("SUCCEEDED", "FAILED") else "-",
                    (s.output or "-") if done or s.status == "KEPT" else "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        self._print()
        for row in rows:
            cells = [
                cell.rjust(w) if i in (2, 3, 4) else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            self._print("  ".join(cells).rstrip())
        self._print()
        total = sum(s.seconds for s in result.stages)
        if result.succeeded and result.only is not None:
            self._print(
                f"{result.only} of execution {result.execution_id} succeeded in "
                f"{_seconds(total)}, run alone: the other stages did not run (KEPT: their "
                "earlier outputs are left as they were)."
            )
            self._print(f"Outputs: {result.execution_location}")
        elif result.succeeded and all(s.status == "REUSED" for s in result.stages):
            self._print(
                f"Nothing to run: every stage of execution {result.execution_id} already has "
                "its output (add --from STAGE to run again from STAGE)."
            )
            self._print(f"Final output: {result.final_output}")
        elif result.succeeded:
            self._print(f"Execution {result.execution_id} succeeded in {_seconds(total)}.")
            self._print(f"Outputs: {result.execution_location}")
            self._print(f"Final output: {result.final_output}")
            if result.batch_item_failures is not None:
                ids = ", ".join(f["itemIdentifier"] for f in result.batch_item_failures) or "none"
                self._print(f"Returned to the queue (batchItemFailures): {ids}")
        elif result.outputs_exist:
            self._print(f"Outputs of the stages that succeeded: {result.execution_location}")
        self._rejected(result)

    def _rejected(self, result: RunResult) -> None:
        """Where the records the first stage rejected are, and what becomes of them."""
        from ceap_stage._io import OutputRef
        from ceap_stage.workflow._runner import _display

        first = result.stages[0] if result.stages else None
        if first is None or not first.rejected or first.status != "SUCCEEDED":
            return
        ref = OutputRef(result.bucket, result.execution_id, first.stage)
        where = _display(result.store, result.bucket, ref.rejected_key)
        self._print(f"Rejected by {first.stage}: {_records(first.rejected)}, listed in {where}")
        if self.standard:
            self._print(
                "  a STANDARD workflow does not return them to the queue (the pipe deleted the "
                "batch when the execution started): see docs/batches.md to replay them"
            )


def _records(count: int | None) -> str:
    if count is None:
        return "? records"
    return f"{count} record{'' if count == 1 else 's'}"


def _describe_store(store: Store) -> str:
    from ceap_stage._store import LocalStore

    if isinstance(store, LocalStore):
        root = store.root
        try:
            return f"local directory {root.relative_to(Path.cwd())}"
        except ValueError:
            return f"local directory {root}"
    return "S3"


def _parse_store(url: str, source: str = "--store") -> tuple[Store, str | None]:
    """The store a ``--store`` value names, and the bucket it pins (``s3://BUCKET``).

    ``source`` names where the value came from in an error (``--store`` or ``CEAP_STORE``).
    """
    from ceap_stage._store import store_from_url

    if url.startswith("s3://"):
        from ceap_stage._context import validate_bucket
        from ceap_stage._errors import ContextResolutionError

        bucket = url[len("s3://") :].strip("/") or None
        if bucket is not None:
            try:
                validate_bucket(bucket, f"the {source} bucket")
            except ContextResolutionError as exc:
                raise _UsageError(str(exc)) from None
        return store_from_url("s3://"), bucket
    if url.startswith("s3:") or (not url.startswith(("file:", "/", ".")) and "://" in url):
        raise _UsageError(f"{source} must be file://DIR or s3://BUCKET, not {url!r}")
    return store_from_url(url), None


def _read_json(path: str, what: str) -> Any:
    import orjson

    try:
        return orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise _UsageError(f"{what}: no file at {path}") from None
    except orjson.JSONDecodeError as exc:
        raise _UsageError(
            f"{what}: {path} is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})"
        ) from None


def _load(path: str) -> Any:
    from ceap_stage.workflow import load_workflow

    try:
        return load_workflow(path)
    except ValueError as exc:  # WorkflowConfigurationError is a ValueError
        raise _UsageError(str(exc)) from None


def _load_stage_handler(reference: str) -> Any:
    """Import the stage handler ``reference`` names; anything else is a usage error."""
    from ceap_stage._handler import StageHandler, WorkflowLambdaHandler
    from ceap_stage.workflow import load_handler

    try:
        handler = load_handler(reference)
    except ValueError as exc:  # WorkflowConfigurationError: a missing module or attribute
        raise _UsageError(str(exc)) from None
    if not isinstance(handler, StageHandler | WorkflowLambdaHandler):
        import inspect

        if isinstance(handler, type):
            kind = "class"
        elif inspect.isroutine(handler):
            kind = "function"
        else:
            kind = f"{type(handler).__name__} object"
        raise _UsageError(
            f"{reference} is a {kind}, not a stage handler: name a @stage function or a "
            "WorkflowLambdaHandler instance or subclass"
        )
    return handler


def _quiet_logs(verbose: bool) -> Settings:
    """The settings of the stages a command runs: logs and metrics quiet unless --verbose.

    Stage logs and EMF metrics are JSON lines for CloudWatch; shown with --verbose only. They
    are the defaults of the command's settings: what the environment says
    (``POWERTOOLS_LOG_LEVEL``, ``POWERTOOLS_METRICS_DISABLED``) is kept. Nothing is written to
    the environment.
    """
    from ceap_stage._settings import Settings, resolve_settings

    if verbose:
        return resolve_settings(defaults=Settings(log_level="INFO"))
    settings = resolve_settings(defaults=Settings(log_level="CRITICAL", metrics_enabled=False))
    import logging

    glue_logger = logging.getLogger("ceap_stage.glue")
    if not glue_logger.handlers:
        # The Glue helper installs its JSON handler only on a logger without handlers.
        glue_logger.addHandler(logging.NullHandler())
        glue_logger.setLevel(logging.WARNING)
    return settings


class _Refused(Exception):
    """The workflow has incompatible edges (exit status 1); the report is printed."""


def _contract_check(loaded: Any) -> Any:
    """Check the workflow's edges; a handler that does not import is a usage error."""
    from ceap_stage.workflow import check_workflow

    report = check_workflow(loaded)
    if report.import_errors:
        problems = _import_problems(loaded, report.import_errors)
        if len(problems) == 1:
            raise _UsageError(f"cannot check the workflow: {problems[0]}")
        raise _UsageError("cannot check the workflow:\n  - " + "\n  - ".join(problems))
    return report


def _import_problems(loaded: Any, errors: list[Any]) -> list[str]:
    """Each distinct import problem once: the handlers of one module share it.

    A module that does not import but lies beside the workflow file, which is not the working
    directory, gets the fix: run from there (handlers are imported from the working directory).
    """
    steps = {step.state_name: step for step in loaded.config.steps}
    grouped: dict[str, list[Any]] = {}  # the module's message -> its stages' problems
    modules: dict[str, str] = {}
    for problem in errors:
        text = problem.message
        reference = getattr(steps.get(problem.stage), "handler", None)
        if reference and ":" in reference:
            module = reference.partition(":")[0]
            shared = text.replace(f"the module of handler {reference!r}", f"module {module!r}")
            shared = shared.replace(f"handler {reference}: ", f"module {module}: ")
            if shared != text:
                text = shared
                modules[text] = module
        grouped.setdefault(text, []).append(problem)
    here = Path.cwd().resolve()
    beside = loaded.source.resolve().parent
    problems = []
    for text, same in grouped.items():
        if len(same) == 1:  # one handler: its own words, naming it
            line = same[0].message
        else:
            line = f"{text} (stages {', '.join(p.stage for p in same)})"
        module = modules.get(text)
        if module is not None and line.startswith("cannot import") and beside != here:
            path = Path(*module.split("."))
            found = next(
                (
                    p
                    for p in (path.with_suffix(".py"), path / "__init__.py")
                    if (beside / p).is_file()
                ),
                None,
            )
            if found is not None:
                line += f"; run from {beside}, the workflow's directory, which holds {found}"
        problems.append(line)
    return problems


def require_compatible(loaded: Any, *, no_check: bool, command: str, err: TextIO) -> None:
    """What ``run`` (and ``deploy``) do first: refuse a workflow with an incompatible edge.

    With ``no_check`` the check is skipped, and that is said loudly on ``err``.

    Raises:
        _Refused: An edge is incompatible or a handler is pinned to another stage name.
    """
    if no_check:
        print(
            f"ceap-stage {command}: WARNING: --no-check: the contracts between stages were NOT "
            "checked; an incompatible stage fails only when it runs",
            file=err,
        )
        return
    report = _contract_check(loaded)
    if not report.ok:
        for line in report.lines():
            if not line.split(": ", 2)[1].startswith("OK"):
                print(line, file=err)
        raise _Refused(
            f"ceap-stage {command}: refused: {len(report.incompatible) + len(report.problems)} "
            "contract problem(s) between stages (see `ceap-stage check`; --no-check to override)"
        )


def _cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded = _load(args.workflow)
    report = _contract_check(loaded)
    for line in report.lines():
        print(line, file=out)
    counts = {v: sum(e.verdict == v for e in report.edges) for v in ("OK", "UNCHECKED")}
    print(
        f"{len(report.edges)} edges: {counts['OK']} OK, {len(report.incompatible)} incompatible, "
        f"{counts['UNCHECKED']} unchecked; {len(report.problems)} stage problem(s) "
        f"({report.seconds:.2f} s)",
        file=out,
    )
    rejecting = _rejecting_first_stage(loaded)
    if rejecting is not None and loaded.config.workflow_type.value == "STANDARD":
        print(
            f'note: {rejecting} rejects invalid queue messages (on_invalid_record="reject"); '
            "a STANDARD workflow does not return them to the queue (they are listed in its "
            "rejected.jsonl): see docs/batches.md",
            file=out,
        )
    return EXIT_OK if report.ok else EXIT_STAGE_FAILED


def _rejecting_first_stage(loaded: Any) -> str | None:
    """The first step's name when it is a Lambda stage with ``on_invalid_record="reject"``."""
    from ceap_stage.workflow._loader import load_handler

    first = loaded.config.steps[0]
    reference = getattr(first, "handler", None)
    if not reference:
        return None
    try:
        runtime = getattr(load_handler(reference), "runtime", None)
    except Exception:  # the check above already reported a handler that does not load
        return None
    if getattr(runtime, "on_invalid_record", None) != "reject":
        return None
    return str(first.state_name)


def _initial_input(args: argparse.Namespace, loaded: Any, *, required: bool) -> Any:
    """The execution input: ``--input FILE``, else the module's ``sample_input()``."""
    if getattr(args, "input", None) is not None:
        return _read_json(args.input, "--input")
    if loaded.sample_input is not None:
        return loaded.sample_input()
    if required:
        raise _UsageError(
            f"{args.workflow} has no sample_input(); give the execution input with --input FILE"
        )
    return None


def _store_option(store: Store, bucket: str, explicit: str | None) -> str:
    """The ``--store`` option that names ``store`` again in a suggested command."""
    from ceap_stage._store import LocalStore

    if isinstance(store, LocalStore):
        if explicit is None or explicit == DEFAULT_STORE:
            return ""
        return f" --store {explicit}"
    return f" --store s3://{bucket}"


def _check_run_options(args: argparse.Namespace) -> None:
    if args.from_stage is not None and args.resume is None:
        raise _UsageError("--from needs --resume EXECUTION")
    if args.only is not None and args.resume is not None:
        raise _UsageError("--only and --resume do not go together")
    if args.only is not None and args.execution_id is None:
        raise _UsageError("--only needs --execution-id ID (the execution whose input it reads)")
    if args.resume is not None and args.execution_id is not None:
        raise _UsageError("--resume names the execution; leave --execution-id out")


def _cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage._errors import CeapStageError
    from ceap_stage.workflow._inspect import InspectError
    from ceap_stage.workflow._runner import ExecutionExistsError, LocalRunError, LocalRunner

    _check_run_options(args)
    settings = _quiet_logs(args.verbose)
    loaded = _load(args.workflow)
    try:
        require_compatible(loaded, no_check=args.no_check, command="run", err=err)
    except _Refused as exc:
        print(exc, file=err)
        return EXIT_STAGE_FAILED
    store, bucket = _parse_store(args.store)
    continuing = args.resume is not None or args.only is not None
    initial = _initial_input(args, loaded, required=not continuing)
    if args.only is not None and loaded.config.steps[0].state_name == args.only:
        initial = _initial_input(args, loaded, required=True)
    reporter = ConsoleReporter(out)
    try:
        runner = LocalRunner(
            loaded,
            store=store,
            bucket=bucket,
            retry_delay_scale=args.retry_delay_scale,
            reporter=reporter,
            settings=settings,
            workers=args.workers,
        )
        if args.resume is not None:
            result = runner.resume(args.resume, from_stage=args.from_stage, initial_input=initial)
        elif args.only is not None:
            result = runner.run_only(
                args.only, execution_id=args.execution_id, initial_input=initial
            )
        else:
            result = runner.run(initial, execution_id=args.execution_id)
    except KeyboardInterrupt:
        _report_interrupt(args, reporter, store, bucket or loaded.config.workflow_bucket, err)
        return EXIT_INTERRUPTED
    except ExecutionExistsError as exc:
        raise _UsageError(
            _execution_exists(args, exc, store, bucket or loaded.config.workflow_bucket)
        ) from None
    except (LocalRunError, InspectError) as exc:
        raise _UsageError(str(exc)) from None
    except (ValueError, CeapStageError) as exc:  # a bad --execution-id, bucket or store
        raise _UsageError(str(exc)) from None
    reporter.summary(result)
    for warning in result.warnings:
        print(f"warning: {warning}", file=err)
    if result.succeeded:
        return EXIT_OK
    failed = result.failed_stage
    assert failed is not None
    _report_failure(args, result, failed.stage, store, err)
    if args.verbose and result.error is not None:
        import traceback

        traceback.print_exception(result.error, file=err)
    return EXIT_STAGE_FAILED


def _report_interrupt(
    args: argparse.Namespace, reporter: ConsoleReporter, store: Store, bucket: str, err: TextIO
) -> None:
    """Ctrl-C during a run: one line, the stage it stopped and how to continue.

    The interrupted stage wrote nothing (every store write is atomic), so resuming runs it again.
    """
    import shlex

    if reporter.running is None or reporter.execution_id is None:
        print("ceap-stage run: interrupted before any stage ran", file=err)
        return
    workflow = shlex.quote(args.workflow)
    option = _store_option(store, bucket, args.store)
    if args.only is not None or (reporter.first_running and args.resume is None):
        given = getattr(args, "input", None)
        input_option = f" --input {shlex.quote(given)}" if given and reporter.first_running else ""
        only = f" --only {args.only}" if args.only is not None else ""
        again = (
            f"run it again: ceap-stage run {workflow}{input_option}{only} --execution-id "
            f"{reporter.execution_id}{option}"
        )
    else:
        again = f"resume: ceap-stage run {workflow} --resume {reporter.execution_id}{option}"
    print(
        f"ceap-stage run: interrupted during stage {reporter.running}, which wrote no output; "
        f"{again}",
        file=err,
    )


def _execution_exists(args: argparse.Namespace, exc: Any, store: Store, bucket: str) -> str:
    """The one line that refuses a new run under the id of an execution that has outputs."""
    import shlex

    resume = (
        f"ceap-stage run {shlex.quote(args.workflow)} --resume {exc.execution_id}"
        f"{_store_option(store, bucket, args.store)}"
    )
    return (
        f"execution {exc.execution_id} already has outputs (stages {', '.join(exc.stages)}); "
        f"a new run needs a new --execution-id (leave it out for a fresh one); to continue "
        f"this execution: {resume} (add --from STAGE to run again from STAGE)"
    )


def _failure_line(failed: StageOutcome) -> str:
    """``error: stage X failed with Class: message (file:line)``."""
    origin = f" ({failed.error_origin})" if failed.error_origin else ""
    return (
        f"error: stage {failed.stage} failed with {failed.error_type}: "
        f"{failed.error_message}{origin}"
    )


def _report_failure(
    args: argparse.Namespace, result: RunResult, stage: str, store: Store, err: TextIO
) -> None:
    """The one report of a failed stage: its error, and the commands that continue from it."""
    import shlex

    from ceap_stage._store import LocalStore

    failed = result.failed_stage
    assert failed is not None
    print(_failure_line(failed), file=err)
    workflow = shlex.quote(args.workflow)
    option = _store_option(store, result.bucket, args.store)
    given_input = getattr(args, "input", None)
    # The first stage reads the execution input: a command that runs it again must pass it.
    first = result.stages[0].stage == stage
    input_option = f" --input {shlex.quote(given_input)}" if first and given_input else ""
    if result.only is not None:  # the other stages' outputs are kept: run it alone again
        hints = [
            f"  fix it, then run it again: ceap-stage run {workflow}{input_option} --only "
            f"{stage} --execution-id {result.execution_id}{option}"
        ]
    elif first:  # nothing was written, so there is nothing to resume
        hints = [
            f"  fix it, then run it again: ceap-stage run {workflow}{input_option} "
            f"--execution-id {result.execution_id}{option}"
        ]
    else:
        hints = [
            f"  fix it, then resume: ceap-stage run {workflow} --resume {result.execution_id}"
            f"{option}"
        ]
        if failed.error_type == "InputValidationError":  # the input may be what is wrong
            names = [s.stage for s in result.stages]
            previous = names[names.index(stage) - 1]
            hints.append(
                f"  or, if {previous} wrote the wrong input, fix {previous} and run from it: "
                f"ceap-stage run {workflow} --resume {result.execution_id} --from {previous}"
                f"{option}"
            )
        if isinstance(store, LocalStore):
            hints.append(
                f"  or run it alone:     ceap-stage run {workflow} --only {stage} "
                f"--execution-id {result.execution_id}{option}"
            )
        else:
            hints.append(
                f"  or replay it here:   ceap-stage replay {workflow} {result.execution_id} "
                f"{stage} --from-store s3://{result.bucket}"
            )
    if not args.verbose:
        replay = "" if isinstance(store, LocalStore) else "; replay with --pdb opens the debugger"
        hints.append(f"  -v shows the traceback{replay}")
    for hint in hints:
        print(hint, file=err)


def _inspect_target(args: argparse.Namespace) -> tuple[Store, str, list[str] | None]:
    """The store, bucket and stage names of ``executions`` and ``show``.

    The bucket: ``--store s3://BUCKET``, ``--bucket``, then the ``--workflow``'s, then the
    environment's. The names: the ``--workflow``'s stages in its order (None without one).
    """
    from ceap_stage._settings import resolve_settings
    from ceap_stage._store import LocalStore

    config = None if args.workflow is None else _load(args.workflow).config
    names = None if config is None else [step.state_name for step in config.steps]
    workflow_bucket = None if config is None else config.workflow_bucket
    settings = resolve_settings()
    url = args.store or settings.store_url or DEFAULT_STORE
    store, bucket = _parse_store(url, "--store" if args.store else "CEAP_STORE")
    if args.bucket is not None:
        if bucket is not None and bucket != args.bucket:
            raise _UsageError(f"--store names bucket {bucket} and --bucket names {args.bucket}")
        bucket = args.bucket
    bucket = bucket or workflow_bucket or settings.workflow_bucket
    if bucket is None and isinstance(store, LocalStore):
        # A bucket is a folder with executions in it: `package` keeps its output and cache
        # folders under the default store root too.
        found = (
            sorted(p.name for p in store.root.iterdir() if (p / "executions").is_dir())
            if store.root.is_dir()
            else []
        )
        if len(found) == 1:
            bucket = found[0]
        elif not found:
            raise _UsageError(f"no bucket in {store.root}: nothing was run with this store")
        else:
            raise _UsageError(
                f"{store.root} holds several buckets ({', '.join(found)}): name one with --bucket"
            )
    if bucket is None:
        raise _UsageError("name the bucket: --store s3://BUCKET or --bucket B")
    return store, bucket, names


def _when(value: Any) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)


def _cmd_executions(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import orjson

    from ceap_stage.workflow._inspect import list_executions

    if args.limit is not None and args.limit < 1:
        raise _UsageError("--limit must be at least 1")
    store, bucket, names = _inspect_target(args)
    summaries = list_executions(store, bucket, limit=args.limit, stage_order=names)
    if args.format != "table":
        rows = [
            {
                "executionId": s.execution_id,
                "writtenAt": None if s.written_at is None else s.written_at.isoformat(),
                "stages": list(s.stages),
                "withoutOutput": list(s.pending),
                **({} if names is None else {"status": _progress(s.stages, names)}),
            }
            for s in summaries
        ]
        if args.format == "json":
            print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode(), file=out)
        else:
            for row in rows:
                print(orjson.dumps(row).decode(), file=out)
        return EXIT_OK
    if not summaries:
        print(f"no executions in bucket {bucket}", file=err)
        return EXIT_OK
    table: list[tuple[str, ...]] = [("EXECUTION", "LAST OUTPUT", "STAGES")]
    if names is not None:
        table[0] = (*table[0], "STATUS")
    for s in summaries:
        stages = [*s.stages, *(f"{name} (no output)" for name in s.pending)]
        cells = (s.execution_id, _when(s.written_at), ", ".join(stages) or "-")
        table.append(cells if names is None else (*cells, _progress(s.stages, names)))
    _table(table, (), out)
    return EXIT_OK


def _progress(stages: Sequence[str], names: Sequence[str]) -> str:
    """How far an execution got through the workflow's stages, from the outputs it has.

    >>> _progress(("A", "B", "C"), ["A", "B", "C"])
    'complete'
    >>> _progress(("A",), ["A", "B", "C"])
    'stopped after A (B: no output)'
    >>> _progress((), ["A", "B"])
    'no output'
    """
    done = set(stages)
    if all(name in done for name in names):
        return "complete"
    first_missing = next(i for i, name in enumerate(names) if name not in done)
    if first_missing == 0:
        return "no output"
    return f"stopped after {names[first_missing - 1]} ({names[first_missing]}: no output)"


def _stage_row(output: Any) -> dict[str, Any]:
    return {
        "stage": output.name,
        "format": output.format,
        "records": output.count_records(),
        "bytes": output.size,
        "schema": output.schema,
        "writtenAt": None if output.written_at is None else output.written_at.isoformat(),
        "parts": output.parts,
        "output": output.ref.key if output.exists else None,
        "rejected": output.rejected,
    }


def _warn_drift(workflow: str, outputs: list[Any], err: TextIO) -> None:
    """Warn about outputs written by another model than ``workflow``'s code has now."""
    from ceap_stage.workflow._runner import LocalRunner

    loaded = _load(workflow)
    probe = LocalRunner(loaded)
    names = [step.state_name for step in loaded.config.steps]
    for output in outputs:
        if output.name in names:
            changed = output.drift(probe.written_model(names.index(output.name)))
            if changed:
                print(f"warning: the output of stage {output.name} was {changed}", file=err)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import itertools

    import orjson

    from ceap_stage._errors import CeapStageError
    from ceap_stage.workflow._inspect import Execution, InspectError

    if args.head is not None and args.head < 0:
        raise _UsageError("--head must not be negative")
    # With the workflow, its stages are listed in its order, those without output too.
    store, bucket, names = _inspect_target(args)
    try:
        execution = Execution(store, bucket, args.execution, stage_order=names)
        if args.stage is None:
            found = execution.stages  # in the workflow's order when it is given
            outputs = list(found.values())
            if names is not None:  # its stages in its order, those without output too
                others = [o for name, o in found.items() if name not in names]
                outputs = [found[n] if n in found else execution.output(n) for n in names]
                outputs += others
        else:
            if names is not None and args.stage in names and args.stage not in execution.stages:
                raise InspectError(
                    f"stage {args.stage} of execution {args.execution} wrote no output (it "
                    "failed, or did not run)"
                )
            output = execution.stage(args.stage)
            records = output.records(chunk_size=64 * 1024)
    except (InspectError, CeapStageError) as exc:
        raise _UsageError(str(exc)) from None
    if args.workflow is not None:
        _warn_drift(args.workflow, outputs if args.stage is None else [output], err)
    if args.stage is None:
        rows = [_stage_row(o) for o in outputs]
        if args.format == "json":
            print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode(), file=out)
        elif args.format == "jsonl":
            for row in rows:
                print(orjson.dumps(row).decode(), file=out)
        else:
            table: list[tuple[str, ...]] = [
                ("STAGE", "FORMAT", "RECORDS", "BYTES", "SCHEMA", "WRITTEN AT", "PARTS")
            ]
            for o in outputs:
                table.append(
                    (
                        o.name,
                        o.format or "no output",
                        _count(o.count_records()),
                        _human_bytes(o.size),
                        o.schema or "-",
                        _when(o.written_at),
                        str(o.parts) if o.parts else "-",
                    )
                )
            _table(table, (2, 3, 6), out)
            from ceap_stage.workflow._runner import _display

            for o in outputs:
                if o.rejected is not None:
                    where = _display(store, bucket, o.ref.rejected_key)
                    print(
                        f"Rejected by {o.name}: {_records(o.rejected)}, listed in {where}", file=out
                    )
        return EXIT_OK
    if args.head is not None:
        records = itertools.islice(records, args.head)
    try:
        if args.format == "json":
            out.write("[")
            for number, record in enumerate(records):
                out.write(("," if number else "") + "\n  " + orjson.dumps(record).decode())
            out.write("\n]\n")
        else:  # one record per line (a table of arbitrary records is one JSON line each)
            for record in records:
                out.write(orjson.dumps(record).decode() + "\n")
    except CeapStageError as exc:
        out.flush()
        print(f"error: {type(exc).__name__}: {exc}", file=err)
        return EXIT_STAGE_FAILED
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
    out.flush()
    return EXIT_OK


def _step_index(loaded: Any, stage: str) -> int:
    try:
        index: int = loaded.config.index_of(stage)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    return index


def _cmd_event(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import orjson

    from ceap_stage._context import validate_execution_id
    from ceap_stage._errors import ContextResolutionError
    from ceap_stage.workflow._kinds import kind_of
    from ceap_stage.workflow._runner import new_execution_id

    loaded = _load(args.workflow)
    index = _step_index(loaded, args.stage)
    try:
        execution_id = validate_execution_id(args.execution_id or new_execution_id())
    except ContextResolutionError as exc:
        raise _UsageError(str(exc)) from None
    config = loaded.config
    step = config.steps[index]
    state_input = _initial_input(args, loaded, required=True) if index == 0 else None
    try:
        value = kind_of(step).step_input(
            config, index, execution_id=execution_id, state_input=state_input
        )
    except ValueError as exc:  # StepKindError: a kind that does not say
        raise _UsageError(str(exc)) from None
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), file=out)
    return EXIT_OK


def _copy_input(source: Store, target: Store, ref: Any) -> int:
    """Copy one stage output (a manifest's parts too) object by object; the bytes copied."""
    from ceap_stage._io import StageIO

    description = StageIO(source).describe(ref)
    if description is None:
        return -1
    keys = [ref.key]
    if description.manifest is not None:
        keys.extend(part.key for part in description.manifest.parts)
    copied = 0
    for key in reversed(keys):  # parts first, the manifest (the commit marker) last
        obj = source.get(ref.bucket, key)
        if obj is None:
            raise _UsageError(f"the output of stage {ref.stage} is missing {key}")
        target.put(
            ref.bucket,
            key,
            obj.body,
            content_type=obj.content_type or "application/json",
            metadata=obj.metadata,
        )
        copied += len(obj.body)
    return copied


def _cmd_replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage._errors import CeapStageError
    from ceap_stage._io import OutputRef
    from ceap_stage._store import LocalStore
    from ceap_stage.workflow._inspect import Execution, InspectError
    from ceap_stage.workflow._runner import LocalRunError, LocalRunner

    settings = _quiet_logs(args.verbose)
    loaded = _load(args.workflow)
    index = _step_index(loaded, args.stage)
    source, source_bucket = _parse_store(args.from_store)
    target, target_bucket = _parse_store(args.store)
    if not isinstance(target, LocalStore) or target_bucket is not None:
        raise _UsageError("replay runs the stage here: --store must be a file://DIR")
    if isinstance(source, LocalStore) and source.root == target.root:
        raise _UsageError(
            f"--from-store and --store are the same store ({target.root}): replay would copy the "
            "execution onto itself and overwrite its outputs; to run one stage of a local "
            f"execution again use: ceap-stage run {args.workflow} --only {args.stage} "
            f"--execution-id {args.execution} --store {args.store}"
        )
    bucket = source_bucket or loaded.config.workflow_bucket
    config = loaded.config
    previous = config.previous_stage(index)
    try:
        execution = Execution(source, bucket, args.execution)
        if not execution.exists():
            raise InspectError(f"no execution {args.execution} in {args.from_store}")
        initial = None
        if previous is not None:
            ref = OutputRef(bucket, execution.execution_id, previous)
            copied = _copy_input(source, target, ref)
            if copied < 0:
                raise InspectError(
                    f"stage {args.stage} reads the output of stage {previous}, which execution "
                    f"{args.execution} does not have"
                )
            print(
                f"copied the input of {args.stage} (stage {previous}, {_human_bytes(copied)}) "
                f"from {args.from_store} to {_describe_store(target)}",
                file=out,
            )
            probe = LocalRunner(loaded, store=target, bucket=bucket, settings=settings)
            changed = execution.output(previous).drift(probe.written_model(index - 1))
            if changed:
                print(
                    f"warning: the input of {args.stage} (stage {previous}) was {changed}", file=err
                )
        else:
            initial = _initial_input(args, loaded, required=True)
        runner = LocalRunner(
            loaded,
            store=target,
            bucket=bucket,
            retry_delay_scale=0.0,
            reporter=ConsoleReporter(out),
            settings=settings,
        )
        result = runner.run_only(args.stage, execution_id=args.execution, initial_input=initial)
    except (LocalRunError, InspectError) as exc:
        raise _UsageError(str(exc)) from None
    except (ValueError, CeapStageError) as exc:
        raise _UsageError(str(exc)) from None
    if result.succeeded:
        print(f"Output: {result.final_output}", file=out)
        return EXIT_OK
    failed = result.failed_stage
    assert failed is not None
    print(_failure_line(failed), file=err)
    if args.pdb and result.error is not None:
        import pdb

        pdb.post_mortem(result.error.__traceback__)
    elif args.verbose and result.error is not None:
        import traceback

        traceback.print_exception(result.error, file=err)
    return EXIT_STAGE_FAILED


def _cmd_asl(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage.workflow import definition_json

    print(definition_json(_load(args.workflow).config, indent=not args.compact), file=out)
    return EXIT_OK


def _cmd_template(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage.workflow import template_json

    print(template_json(_load(args.workflow).config, indent=not args.compact), file=out)
    return EXIT_OK


def _cmd_invoke(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import orjson

    from ceap_stage._errors import CeapStageError
    from ceap_stage.testing import FakeLambdaContext

    settings = _quiet_logs(args.verbose)
    event = _read_json(args.event, "--event")
    store_url = args.store or settings.store_url or DEFAULT_STORE
    settings = settings.replace(store_url=None if store_url.startswith("s3:") else store_url)
    # The command's settings (store, quiet logs) go to the handler, not into the environment.
    handler = _load_stage_handler(args.handler).runtime.configured(settings=settings).invoke
    function_name = args.handler.partition(":")[2].replace(".", "-")[:64] or "handler"
    import contextlib

    try:
        # stdout is for the result pointer alone: the stage's logs and prints go to stderr.
        with contextlib.redirect_stdout(err):
            result = handler(event, FakeLambdaContext(function_name=function_name))
    except CeapStageError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=err)
        return EXIT_STAGE_FAILED
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=err)
        if args.verbose:
            import traceback

            traceback.print_exception(exc, file=err)
        return EXIT_STAGE_FAILED
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode(), file=out)
    return EXIT_OK


def _version() -> str:
    from ceap_stage import __version__

    return __version__


def _package(args: argparse.Namespace, out: TextIO, loaded: Any = None) -> Any:
    from ceap_stage._context import validate_bucket
    from ceap_stage._errors import ContextResolutionError
    from ceap_stage._package import package

    try:
        validate_bucket(args.artifacts_bucket, "--artifacts-bucket")
    except ContextResolutionError as exc:
        raise _UsageError(str(exc)) from None
    if loaded is None:
        loaded = _load(args.workflow)
    return package(
        loaded,
        artifacts_bucket=args.artifacts_bucket,
        out_dir=args.out,
        layer_arn=args.layer_arn,
        cache_dir=args.cache_dir,
        say=lambda line: print(line, file=out, flush=True),
    )


def _cmd_package(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage._errors import LayerBuildError, PackagingError

    try:
        _package(args, out)
    except LayerBuildError as exc:
        print(f"ceap-stage package: error: {exc}", file=err)
        return EXIT_STAGE_FAILED
    except PackagingError as exc:
        raise _UsageError(str(exc)) from None
    return EXIT_OK


def _cmd_deploy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage._deploy import DeployOptions, deploy, parse_parameters, preflight
    from ceap_stage._errors import ConfigurationError, DeployError, LayerBuildError, PackagingError

    try:
        parameters = parse_parameters(args.parameter)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    loaded = _load(args.workflow)
    try:
        require_compatible(loaded, no_check=args.no_check, command="deploy", err=err)
    except _Refused as exc:
        print(exc, file=err)
        return EXIT_STAGE_FAILED
    options = DeployOptions(
        stack_name=args.stack_name,
        artifacts_bucket=args.artifacts_bucket,
        parameters=parameters,
        dry_run=args.dry_run,
        region=args.region,
        profile=args.profile,
    )
    try:
        # Region, credentials and the bucket first: not after a layer build.
        session = preflight(options)
    except ConfigurationError as exc:
        raise _UsageError(str(exc)) from None
    except DeployError as exc:
        print(f"ceap-stage deploy: error: {exc}", file=err)
        return EXIT_STAGE_FAILED
    try:
        result = _package(args, out, loaded)
    except LayerBuildError as exc:
        print(f"ceap-stage deploy: error: {exc}", file=err)
        return EXIT_STAGE_FAILED
    except PackagingError as exc:
        raise _UsageError(str(exc)) from None
    try:
        deploy(
            result,
            options,
            say=lambda line: print(line, file=out, flush=True),
            session=session,
        )
    except ConfigurationError as exc:
        raise _UsageError(str(exc)) from None
    except DeployError as exc:
        print(f"ceap-stage deploy: error: {exc}", file=err)
        return EXIT_STAGE_FAILED
    return EXIT_OK


def _cmd_init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage._errors import ConfigurationError
    from ceap_stage._scaffold import scaffold

    try:
        files = scaffold(Path(args.directory), version=_version())
    except ConfigurationError as exc:
        raise _UsageError(str(exc)) from None
    print(f"created {args.directory}:", file=out)
    for path in files:
        print(f"  {path.relative_to(args.directory).as_posix()}", file=out)
    print(f"next: cd {args.directory} && ceap-stage run workflow.py && pytest", file=out)
    return EXIT_OK


def _cmd_layer(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage import _layer

    return _layer.run(args, out, err)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _workflow_argument(command: argparse.ArgumentParser) -> None:
    """The WORKFLOW positional every workflow command takes."""
    command.add_argument("workflow", help="a .py module exposing `workflow`, or a .yaml/.json file")


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace, TextIO, TextIO], int],
    *,
    help: str,
    description: str,
    workflow: bool = False,
) -> argparse.ArgumentParser:
    """Add one subcommand that runs ``func``; ``workflow``: it takes the WORKFLOW positional."""
    command = commands.add_parser(name, help=help, description=description)
    if workflow:
        _workflow_argument(command)
    command.set_defaults(func=func)
    return command


#: The options several commands share: name -> (flags, add_argument keywords).
_SHARED_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "input": (("--input",), {"metavar": "FILE"}),
    "store": (("--store",), {"metavar": "URL"}),
    "execution-id": (("--execution-id",), {"metavar": "ID", "help": "default: a new local-... id"}),
    "verbose": (("-v", "--verbose"), {"action": "store_true", "help": "show the stage's logs"}),
    "compact": (("--compact",), {"action": "store_true", "help": "one line, no indentation"}),
    "format": (("--format",), {"choices": ("table", "jsonl", "json"), "default": "table"}),
    "no-check": (("--no-check",), {"action": "store_true"}),
}


def _option(command: argparse.ArgumentParser, name: str, **overrides: Any) -> None:
    """Add one of the shared options (see ``_SHARED_OPTIONS``), with its help or default."""
    flags, keywords = _SHARED_OPTIONS[name]
    command.add_argument(*flags, **{**keywords, **overrides})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceap-stage",
        description="Typed stages for AWS Step Functions workflows: run them locally, "
        "generate their state machine and stack, package and deploy them.",
    )
    parser.add_argument("--version", action="version", version=f"ceap-stage {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(
        commands,
        "run",
        _cmd_run,
        workflow=True,
        help="run a workflow locally, stage by stage",
        description="Run every step in order in this process, with the events the state "
        "machine would send.",
    )
    _option(
        run,
        "input",
        help="the execution input (JSON: an SQS batch as the pipe sends it); default: the "
        "module's sample_input()",
    )
    _option(
        run,
        "store",
        default=DEFAULT_STORE,
        help=f"file://DIR (a local directory) or s3://BUCKET (default: {DEFAULT_STORE})",
    )
    _option(run, "execution-id")
    run.add_argument(
        "--resume",
        metavar="EXECUTION",
        help="continue this execution: keep the outputs before the failed stage (REUSED), "
        "run the rest with the same execution id",
    )
    run.add_argument(
        "--from",
        dest="from_stage",
        metavar="STAGE",
        help="with --resume: run again from this stage on",
    )
    run.add_argument(
        "--only",
        metavar="STAGE",
        help="run this one step alone (with --execution-id: the execution whose input it "
        "reads), with the event or arguments the state machine sends",
    )
    run.add_argument(
        "--retry-delay-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply the configured retry intervals by F (0: retry at once; default 1)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="run a fanned-out step's shards in N processes (default: the machine's cores, "
        f"{os.cpu_count() or 1} here; 1: in this process)",
    )
    _option(run, "verbose", help="show the stages' JSON logs")
    _option(
        run,
        "no-check",
        help="run even if `ceap-stage check` finds incompatible stages (said loudly)",
    )

    _command(
        commands,
        "check",
        _cmd_check,
        workflow=True,
        help="check that every stage accepts what the one before writes",
        description="One line per edge: OK, INCOMPATIBLE (the first field at fault and an "
        "example value) or UNCHECKED (why). Exit 1 when an edge is incompatible.",
    )

    def store_options(command: argparse.ArgumentParser) -> None:
        _option(
            command,
            "store",
            help=f"file://DIR or s3://BUCKET (default: CEAP_STORE, else {DEFAULT_STORE})",
        )
        command.add_argument(
            "--bucket",
            metavar="B",
            help="the workflow bucket (default: the s3://BUCKET of --store, "
            "CEAP_WORKFLOW_BUCKET, or the only bucket of a local store)",
        )

    executions = _command(
        commands,
        "executions",
        _cmd_executions,
        help="list the executions in a store, newest first, with their stages",
        description="List the executions in the bucket, newest first (by their latest output), "
        "with the stages that wrote an output; delimiter listings only.",
    )
    store_options(executions)
    executions.add_argument("--limit", type=int, metavar="N", help="show the newest N")
    executions.add_argument(
        "--workflow",
        metavar="WORKFLOW",
        help="add a STATUS column: complete, or the stage after which the execution stopped",
    )
    _option(executions, "format", help="default: table")

    show = _command(
        commands,
        "show",
        _cmd_show,
        help="show an execution's stages, or the records a stage wrote",
        description="Without STAGE: a table of the execution's stages (format, records, "
        "bytes, schema label, written at, parts). With STAGE: its records, streamed (a "
        "manifest's parts in order), one JSON line each.",
    )
    show.add_argument("execution", metavar="EXECUTION", help="the execution id")
    show.add_argument("stage", metavar="STAGE", nargs="?", help="the stage whose records to print")
    store_options(show)
    show.add_argument("--head", type=int, metavar="N", help="print the first N records only")
    show.add_argument(
        "--workflow",
        metavar="WORKFLOW",
        help="list the workflow's stages in its order (those without output too), and warn "
        "about outputs written by another model than its code has now",
    )
    _option(
        show, "format", help="table (default; records print one JSON line each), jsonl, or json"
    )

    replay = _command(
        commands,
        "replay",
        _cmd_replay,
        workflow=True,
        help="copy a stage's input from a store here and run the stage on it",
        description="Copy the input of STAGE in EXECUTION from --from-store into the local "
        "store, then run the stage locally on it. Nothing is written to the source.",
    )
    replay.add_argument("execution", metavar="EXECUTION", help="the execution id")
    replay.add_argument("stage", metavar="STAGE", help="the stage to run")
    replay.add_argument(
        "--from-store", required=True, metavar="URL", help="where the execution is: s3://BUCKET"
    )
    _option(replay, "store", default=DEFAULT_STORE, help=f"file://DIR (default: {DEFAULT_STORE})")
    _option(replay, "input", help="the execution input, for a first stage (JSON)")
    replay.add_argument("--pdb", action="store_true", help="stop in the debugger at the exception")
    _option(replay, "verbose")

    event = _command(
        commands,
        "event",
        _cmd_event,
        workflow=True,
        help="print the event (or Glue arguments) a step receives, ready for invoke",
        description="Print the event a Lambda step receives (or a Glue step's job arguments), "
        "exactly as the state machine builds it, ready for `ceap-stage invoke --event FILE`.",
    )
    event.add_argument("stage", metavar="STAGE", help="the step's state name")
    _option(event, "execution-id")
    _option(
        event,
        "input",
        help="the execution input, for a first step (default: the module's sample_input())",
    )

    asl = _command(
        commands,
        "asl",
        _cmd_asl,
        workflow=True,
        help="print the state machine definition (ASL JSON)",
        description="Print the workflow's Amazon States Language definition on stdout.",
    )
    _option(asl, "compact")

    template = _command(
        commands,
        "template",
        _cmd_template,
        workflow=True,
        help="print the CloudFormation template (JSON)",
        description="Print the workflow's CloudFormation template on stdout (no artifacts are "
        "built: `package` writes the deployable one).",
    )
    _option(template, "compact")

    invoke = _command(
        commands,
        "invoke",
        _cmd_invoke,
        help="invoke one Lambda handler with an event file and a fake context",
        description="Call one stage handler as Lambda would, with the event in FILE, on the "
        "store --store names, and print the result pointer. Exit 1 when the stage fails.",
    )
    invoke.add_argument("handler", help="the handler as package.module:attribute")
    invoke.add_argument("--event", required=True, metavar="FILE", help="the event (JSON)")
    _option(
        invoke, "store", help=f"file://DIR or s3:// (default: CEAP_STORE, else {DEFAULT_STORE})"
    )
    _option(invoke, "verbose")

    for name in ("package", "deploy"):
        sub = commands.add_parser(
            name,
            help="build the workflow's code zips, layer, Glue artifacts and template"
            if name == "package"
            else "package, upload and create or update the workflow's stack",
            description="Build the code zips, the ceap-stage layer, the Glue artifacts and a "
            "complete CloudFormation template into --out, without uploading anything."
            if name == "package"
            else "Check the contracts, package, upload the artifacts and create or update the "
            "stack through a change set, printing its changes and events.",
        )
        _workflow_argument(sub)
        if name == "deploy":
            sub.add_argument("--stack-name", required=True, metavar="S", help="the stack's name")
        sub.add_argument(
            "--artifacts-bucket",
            required=True,
            metavar="B",
            help="the S3 bucket the artifacts are uploaded to (it must exist)",
        )
        sub.add_argument(
            "--out",
            type=Path,
            default=Path(".ceap/package"),
            metavar="DIR",
            help="where to write the package (default: .ceap/package)",
        )
        sub.add_argument(
            "--layer-arn", metavar="ARN", help="use this published ceap-stage layer version"
        )
        sub.add_argument(
            "--cache-dir",
            type=Path,
            default=Path(".ceap/cache"),
            metavar="DIR",
            help="built layers are kept here between runs (default: .ceap/cache)",
        )
        if name == "deploy":
            sub.add_argument(
                "--parameter",
                action="append",
                default=[],
                metavar="K=V",
                help="a stack parameter, e.g. Environment=prod (repeatable)",
            )
            sub.add_argument(
                "--dry-run",
                action="store_true",
                help="upload the artifacts, print the change set, change nothing",
            )
            _option(
                sub,
                "no-check",
                help="deploy even if `ceap-stage check` finds incompatible stages (said loudly)",
            )
            sub.add_argument("--region", help="the AWS region (default: the profile's)")
            sub.add_argument("--profile", help="the AWS profile (default: AWS_PROFILE)")
        sub.set_defaults(func=_cmd_package if name == "package" else _cmd_deploy)

    init = _command(
        commands,
        "init",
        _cmd_init,
        help="create a new project: one stage, its test and a workflow",
        description="Create DIRECTORY with a package holding one stage, its pytest test and "
        "a workflow.py that `ceap-stage run` runs as it is.",
    )
    init.add_argument(
        "directory",
        help="the project folder (created; must be new or empty); its name names the package, "
        "and a name that would shadow a module (json, test, pytest) is refused",
    )

    layer = _command(
        commands,
        "layer",
        _cmd_layer,
        help="build the ceap-stage Lambda layer zips",
        description="Build one reproducible layer zip per Python runtime and architecture, "
        "from the installed ceap-stage (or --source DIR / --wheel FILE).",
    )
    from ceap_stage import _layer

    _layer.add_arguments(layer, default_out=Path(".ceap/layer"), default_source=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ceap-stage`` command line and return its exit status.

    Args:
        argv: The arguments without the program name (default: ``sys.argv[1:]``).

    Example:
        >>> main(["asl", "examples/engagement/workflow.py", "--compact"])  # doctest: +ELLIPSIS
        {"Comment":"engagement (EXPRESS): ETLStage -> ...
        0
    """
    parser = _parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments:  # no command: the list of commands, not argparse's one-line complaint
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(arguments)
    # Like `python -m`, make modules in the working directory importable (handlers, workflows).
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    # Commands pass their settings (store, log level) to the stages they run, never through
    # the environment; they quiet the Glue logger, which is put back afterwards so that an
    # in-process caller (a test, a notebook) is left as it was.
    import logging

    from ceap_stage._errors import ConfigurationError, StorageError

    glue_logger = logging.getLogger("ceap_stage.glue")
    saved_glue = (glue_logger.level, list(glue_logger.handlers))
    try:
        status: int = args.func(args, sys.stdout, sys.stderr)
    except _UsageError as exc:
        print(f"ceap-stage {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as exc:  # the store cannot be reached (credentials, permissions...)
        print(f"ceap-stage {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_STAGE_FAILED
    except ConfigurationError as exc:  # a setting from the environment (CEAP_TRACER=bogus)
        print(f"ceap-stage {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `ceap-stage asl wf.py | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        glue_logger.setLevel(saved_glue[0])
        glue_logger.handlers[:] = saved_glue[1]
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
