"""The ``ceap-stage`` command line.

Commands::

    ceap-stage check WORKFLOW         can every stage read what the one before writes?
    ceap-stage run WORKFLOW [--input FILE] [--store file://DIR | s3://BUCKET] [--execution-id ID]
                            [--no-check]
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
configuration error (a handler that does not import included). The module imports only the
standard library; the rest is imported by the command that needs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
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
        self.out = out
        self.total = 0

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run_started(self, result: RunResult, config: WorkflowConfiguration) -> None:
        self.total = len(config.steps)
        self._print(
            f"ceap-stage run: workflow {config.workflow_name} ({config.workflow_type.value}, "
            f"{self.total} steps), execution {result.execution_id}"
        )
        self._print(f"store: {_describe_store(result.store)}, bucket {result.bucket}")

    def stage_started(self, index: int, step: Step) -> None:
        from ceap_stage.workflow._kinds import kind_of

        label = kind_of(step).display(step)
        self._print(f"[{index + 1}/{self.total}] {step.state_name} ({label}) running ...")

    def attempt_failed(
        self, step: Step, attempt: int, error: BaseException, retry_in: float | None
    ) -> None:
        what = f"{type(error).__name__}: {error}"
        if retry_in is None:
            self._print(f"      attempt {attempt} failed with {what}")
        else:
            self._print(
                f"      attempt {attempt} failed with {what}; retrying in {_seconds(retry_in)}"
            )

    def stage_finished(self, index: int, outcome: StageOutcome) -> None:
        prefix = f"[{index + 1}/{self.total}] {outcome.stage}"
        retries = f", {outcome.attempts} attempts" if outcome.attempts > 1 else ""
        if outcome.status == "SUCCEEDED":
            if outcome.records is None:
                records = "? records"
            else:
                records = f"{outcome.records} record{'' if outcome.records == 1 else 's'}"
            rejected = f", {outcome.rejected} rejected" if outcome.rejected is not None else ""
            self._print(
                f"{prefix} succeeded: {records}{rejected}, {_human_bytes(outcome.bytes)}, "
                f"{_seconds(outcome.seconds)}{retries}"
            )
        else:
            self._print(f"{prefix} FAILED with {outcome.error_type}{retries}")

    def summary(self, result: RunResult) -> None:
        rows = [("STAGE", "STATUS", "RECORDS", "BYTES", "TIME", "OUTPUT")]
        for s in result.stages:
            done = s.status == "SUCCEEDED"
            rows.append(
                (
                    s.stage,
                    s.status if s.status != "FAILED" else f"FAILED ({s.error_type})",
                    "-" if s.records is None else str(s.records),
                    _human_bytes(s.bytes),
                    _seconds(s.seconds) if s.status != "NOT_RUN" else "-",
                    (s.output or "-") if done else "-",
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
        if result.succeeded:
            self._print(f"Execution {result.execution_id} succeeded in {_seconds(total)}.")
            self._print(f"Outputs: {result.execution_location}")
            self._print(f"Final output: {result.final_output}")
            if result.batch_item_failures is not None:
                ids = ", ".join(f["itemIdentifier"] for f in result.batch_item_failures) or "none"
                self._print(f"Returned to the queue (batchItemFailures): {ids}")
        else:
            failed = result.failed_stage
            assert failed is not None
            self._print(
                f"Execution {result.execution_id} FAILED at stage {failed.stage} with "
                f"{failed.error_type}: {failed.error_message}"
            )
            self._print(f"Outputs of the stages that succeeded: {result.execution_location}")


def _describe_store(store: Store) -> str:
    from ceap_stage._store import LocalStore

    if isinstance(store, LocalStore):
        root = store.root
        try:
            return f"local directory {root.relative_to(Path.cwd())}"
        except ValueError:
            return f"local directory {root}"
    return "S3"


def _parse_store(url: str) -> tuple[Store, str | None]:
    """The store a ``--store`` value names, and the bucket it pins (``s3://BUCKET``)."""
    from ceap_stage._store import store_from_url

    if url.startswith("s3://"):
        from ceap_stage._context import validate_bucket
        from ceap_stage._errors import ContextResolutionError

        bucket = url[len("s3://") :].strip("/") or None
        if bucket is not None:
            try:
                validate_bucket(bucket, "the --store bucket")
            except ContextResolutionError as exc:
                raise _UsageError(str(exc)) from None
        return store_from_url("s3://"), bucket
    if url.startswith("s3:") or (not url.startswith(("file:", "/", ".")) and "://" in url):
        raise _UsageError(f"--store must be file://DIR or s3://BUCKET, not {url!r}")
    return store_from_url(url), None


def _read_json(path: str, what: str) -> Any:
    import orjson

    try:
        return orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise _UsageError(f"{what}: no file at {path}") from None
    except orjson.JSONDecodeError as exc:
        raise _UsageError(f"{what}: {path} is not valid JSON ({exc.msg})") from None


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
    settings = resolve_settings(defaults=Settings(log_level="WARNING", metrics_enabled=False))
    import logging

    glue_logger = logging.getLogger("ceap_stage.glue")
    if not glue_logger.handlers:
        # The Glue helper installs its JSON handler only on a logger without handlers.
        glue_logger.addHandler(logging.NullHandler())
        glue_logger.setLevel(logging.WARNING)
    return settings


class _Refused(Exception):
    """The workflow has incompatible edges (exit status 1); the report is printed."""


def _contract_check(loaded: Any, out: TextIO) -> Any:
    """Check the workflow's edges; a handler that does not import is a usage error."""
    from ceap_stage.workflow import check_workflow

    report = check_workflow(loaded)
    if report.import_errors:
        for line in report.lines():
            print(line, file=out)
        raise _UsageError(
            "cannot check the workflow: " + "; ".join(p.message for p in report.import_errors)
        )
    return report


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
    report = _contract_check(loaded, err)
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
    report = _contract_check(loaded, out)
    for line in report.lines():
        print(line, file=out)
    counts = {v: sum(e.verdict == v for e in report.edges) for v in ("OK", "UNCHECKED")}
    print(
        f"{len(report.edges)} edges: {counts['OK']} OK, {len(report.incompatible)} incompatible, "
        f"{counts['UNCHECKED']} unchecked; {len(report.problems)} stage problem(s) "
        f"({report.seconds:.2f} s)",
        file=out,
    )
    return EXIT_OK if report.ok else EXIT_STAGE_FAILED


def _cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ceap_stage._errors import CeapStageError
    from ceap_stage.workflow._runner import LocalRunError, LocalRunner

    settings = _quiet_logs(args.verbose)
    loaded = _load(args.workflow)
    try:
        require_compatible(loaded, no_check=args.no_check, command="run", err=err)
    except _Refused as exc:
        print(exc, file=err)
        return EXIT_STAGE_FAILED
    store, bucket = _parse_store(args.store)
    if args.input is not None:
        initial = _read_json(args.input, "--input")
    elif loaded.sample_input is not None:
        initial = loaded.sample_input()
    else:
        raise _UsageError(
            f"{args.workflow} has no sample_input(); give the execution input with --input FILE"
        )
    reporter = ConsoleReporter(out)
    try:
        runner = LocalRunner(
            loaded,
            store=store,
            bucket=bucket,
            retry_delay_scale=args.retry_delay_scale,
            reporter=reporter,
            settings=settings,
        )
        result = runner.run(initial, execution_id=args.execution_id)
    except LocalRunError as exc:
        raise _UsageError(str(exc)) from None
    except (ValueError, CeapStageError) as exc:  # a bad --execution-id, bucket or store
        raise _UsageError(str(exc)) from None
    reporter.summary(result)
    if result.succeeded:
        return EXIT_OK
    failed = result.failed_stage
    assert failed is not None
    print(
        f"error: stage {failed.stage} failed with {failed.error_type}: {failed.error_message}",
        file=err,
    )
    if args.verbose and result.error is not None:
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
    try:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceap-stage",
        description="Typed stages for AWS Step Functions workflows: run them locally, "
        "generate their state machine and stack, package and deploy them.",
    )
    parser.add_argument("--version", action="version", version=f"ceap-stage {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a workflow locally, stage by stage",
        description="Run every step in order in this process, with the events the state "
        "machine would send.",
    )
    run.add_argument("workflow", help="a .py module exposing `workflow`, or a .yaml/.json file")
    run.add_argument(
        "--input",
        metavar="FILE",
        help="the execution input (JSON: an SQS batch as the pipe sends it); default: the "
        "module's sample_input()",
    )
    run.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="URL",
        help=f"file://DIR (a local directory) or s3://BUCKET (default: {DEFAULT_STORE})",
    )
    run.add_argument("--execution-id", metavar="ID", help="default: a new local-... id")
    run.add_argument(
        "--retry-delay-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply the configured retry intervals by F (0: retry at once; default 1)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="show the stages' JSON logs")
    run.add_argument(
        "--no-check",
        action="store_true",
        help="run even if `ceap-stage check` finds incompatible stages (said loudly)",
    )
    run.set_defaults(func=_cmd_run)

    check = commands.add_parser(
        "check",
        help="check that every stage accepts what the one before writes",
        description="One line per edge: OK, INCOMPATIBLE (the first field at fault and an "
        "example value) or UNCHECKED (why). Exit 1 when an edge is incompatible.",
    )
    check.add_argument("workflow", help="a .py module exposing `workflow`, or a .yaml/.json file")
    check.set_defaults(func=_cmd_check)

    asl = commands.add_parser(
        "asl",
        help="print the state machine definition (ASL JSON)",
        description="Print the workflow's Amazon States Language definition on stdout.",
    )
    asl.add_argument("workflow", help="a .py module exposing `workflow`, or a .yaml/.json file")
    asl.add_argument("--compact", action="store_true", help="one line, no indentation")
    asl.set_defaults(func=_cmd_asl)

    template = commands.add_parser(
        "template",
        help="print the CloudFormation template (JSON)",
        description="Print the workflow's CloudFormation template on stdout (no artifacts are "
        "built: `package` writes the deployable one).",
    )
    template.add_argument(
        "workflow", help="a .py module exposing `workflow`, or a .yaml/.json file"
    )
    template.add_argument("--compact", action="store_true", help="one line, no indentation")
    template.set_defaults(func=_cmd_template)

    invoke = commands.add_parser(
        "invoke",
        help="invoke one Lambda handler with an event file and a fake context",
        description="Call one stage handler as Lambda would, with the event in FILE, on the "
        "store --store names, and print the result pointer. Exit 1 when the stage fails.",
    )
    invoke.add_argument("handler", help="the handler as package.module:attribute")
    invoke.add_argument("--event", required=True, metavar="FILE", help="the event (JSON)")
    invoke.add_argument(
        "--store",
        metavar="URL",
        help=f"file://DIR or s3:// (default: CEAP_STORE, else {DEFAULT_STORE})",
    )
    invoke.add_argument("-v", "--verbose", action="store_true", help="show the stage's logs")
    invoke.set_defaults(func=_cmd_invoke)

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
        sub.add_argument("workflow", help="a .py module exposing `workflow`, or a .yaml/.json file")
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
            sub.add_argument(
                "--no-check",
                action="store_true",
                help="deploy even if `ceap-stage check` finds incompatible stages (said loudly)",
            )
            sub.add_argument("--region", help="the AWS region (default: the profile's)")
            sub.add_argument("--profile", help="the AWS profile (default: AWS_PROFILE)")
        sub.set_defaults(func=_cmd_package if name == "package" else _cmd_deploy)

    init = commands.add_parser(
        "init",
        help="create a new project: one stage, its test and a workflow",
        description="Create DIRECTORY with a package holding one stage, its pytest test and "
        "a workflow.py that `ceap-stage run` runs as it is.",
    )
    init.add_argument("directory", help="the project folder (created; must be new or empty)")
    init.set_defaults(func=_cmd_init)

    layer = commands.add_parser(
        "layer",
        help="build the ceap-stage Lambda layer zips",
        description="Build one reproducible layer zip per Python runtime and architecture, "
        "from the installed ceap-stage (or --source DIR / --wheel FILE).",
    )
    from ceap_stage import _layer

    _layer.add_arguments(layer, default_out=Path(".ceap/layer"), default_source=None)
    layer.set_defaults(func=_cmd_layer)
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
    args = _parser().parse_args(argv)
    # Like `python -m`, make modules in the working directory importable (handlers, workflows).
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    # Commands pass their settings (store, log level) to the stages they run, never through
    # the environment; they quiet the Glue logger, which is put back afterwards so that an
    # in-process caller (a test, a notebook) is left as it was.
    import logging

    glue_logger = logging.getLogger("ceap_stage.glue")
    saved_glue = (glue_logger.level, list(glue_logger.handlers))
    try:
        status: int = args.func(args, sys.stdout, sys.stderr)
    except _UsageError as exc:
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
