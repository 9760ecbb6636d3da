"""The job arguments Step Functions passes a Glue stage, resolved and checked.

Step Functions starts a Glue job with ``--execution-id``, ``--input-bucket``, ``--input-key``,
``--output-bucket``, ``--output-key``, ``--current-stage`` and ``--previous-stage`` (absent or empty
for a first stage), and Glue adds ``--JOB_NAME``. On Glue they are parsed with
``awsglue.utils.getResolvedOptions``; elsewhere a compatible parser reads the same ``sys.argv``, so
a script runs unchanged on a laptop. Identifiers, buckets and keys are checked with the Lambda
side's rules (:mod:`ceap_stage._context`): a key must be the convention key of its stage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ceap_stage._context import (
    INITIAL_STAGE,
    ExecutionContext,
    output_key,
    parts_prefix,
    validate_bucket,
    validate_execution_id,
    validate_identifier,
)
from ceap_stage._errors import ContextResolutionError
from ceap_stage._settings import Settings, resolve_settings

__all__ = ["REQUIRED_ARGUMENTS", "GlueArgs", "resolve_args"]

#: The arguments every Glue stage needs (``--previous-stage`` is optional: a first stage has none).
REQUIRED_ARGUMENTS = (
    "JOB_NAME",
    "execution-id",
    "input-bucket",
    "input-key",
    "output-bucket",
    "output-key",
    "current-stage",
)
_PREVIOUS = "previous-stage"
# What a state machine may pass for "no previous stage" when it cannot omit the argument.
_NO_PREVIOUS = frozenset({"", "null", "None"})


@dataclass(frozen=True, slots=True)
class GlueArgs:
    """The resolved, validated arguments of one Glue stage run.

    Build it with :func:`resolve_args`; constructing it directly skips the checks.

    Example:
        >>> args = resolve_args(["job.py", "--JOB_NAME", "enrich", "--execution-id", "run-1",
        ...     "--input-bucket", "wfb", "--input-key", "executions/run-1/Filter/output.json",
        ...     "--output-bucket", "wfb", "--output-key", "executions/run-1/Enrich/output.json",
        ...     "--current-stage", "Enrich", "--previous-stage", "Filter"])
        >>> args.execution_id, args.previous_stage, args.parts_prefix
        ('run-1', 'Filter', 'executions/run-1/Enrich/parts/')
    """

    job_name: str
    execution_id: str
    current_stage: str
    previous_stage: str | None
    input_bucket: str
    input_key: str
    output_bucket: str
    output_key: str
    #: Further arguments the script asked for (``extra=`` of :func:`resolve_args`), by name.
    extra: Mapping[str, str] = field(default_factory=dict)
    #: Everything the parser resolved, as ``getResolvedOptions`` returns it (``Job.init`` takes it).
    resolved: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_first_stage(self) -> bool:
        """True when the job reads ``executions/{id}/initial/output.json``."""
        return self.previous_stage is None

    @property
    def input_stage(self) -> str:
        """The stage whose output this job reads (``initial`` for a first stage)."""
        return self.previous_stage or INITIAL_STAGE

    @property
    def parts_prefix(self) -> str:
        """Where this stage's part files live: ``executions/{id}/{stage}/parts/``."""
        return parts_prefix(self.execution_id, self.current_stage)

    def context(self) -> ExecutionContext:
        """The same :class:`~ceap_stage.ExecutionContext` a Lambda stage would get.

        Example:
            >>> GlueArgs("j", "run-1", "Enrich", None,
            ...          "wfb", "executions/run-1/initial/output.json",
            ...          "wfb", "executions/run-1/Enrich/output.json").context().output_key
            'executions/run-1/Enrich/output.json'
        """
        return ExecutionContext(
            execution_id=self.execution_id,
            current_stage=self.current_stage,
            previous_stage=self.previous_stage,
            workflow_bucket=self.output_bucket,
        )

    def error_facts(self, side: Literal["input", "output"] = "input") -> dict[str, str]:
        """What a contract error about the job's input (or output) object names: the execution,
        the stage, and that object's bucket and key.

        Example:
            >>> args = GlueArgs("j", "run-1", "Enrich", None,
            ...                 "wfb", "executions/run-1/initial/output.json",
            ...                 "wfb", "executions/run-1/Enrich/output.json")
            >>> args.error_facts("output")["key"]
            'executions/run-1/Enrich/output.json'
        """
        reading = side == "input"
        return {
            "execution_id": self.execution_id,
            "stage": self.current_stage,
            "bucket": self.input_bucket if reading else self.output_bucket,
            "key": self.input_key if reading else self.output_key,
        }

    def facts(self) -> dict[str, str | None]:
        """Ids and keys for log lines (never payload)."""
        return {
            "job_name": self.job_name,
            "execution_id": self.execution_id,
            "stage": self.current_stage,
            "previous_stage": self.previous_stage,
            "input_key": f"s3://{self.input_bucket}/{self.input_key}",
            "output_key": f"s3://{self.output_bucket}/{self.output_key}",
        }


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """``getResolvedOptions``'s behaviour without awsglue: unknown options are ignored."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(message)


def _parse_locally(argv: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    parser = _Parser(add_help=False, allow_abbrev=False)
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    parsed, _unknown = parser.parse_known_args(list(argv[1:]))
    return {k: v for k, v in vars(parsed).items() if v is not None}


def _parse(argv: Sequence[str], names: Sequence[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The named options' values, and everything the parser resolved (what ``Job.init`` takes)."""
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parse: Any = _parse_locally
    else:
        parse = getResolvedOptions
    try:
        resolved = dict(parse(list(argv), list(names)))
    except (SystemExit, Exception) as exc:
        # argparse's messages name options, never values.
        detail = type(exc).__name__ if isinstance(exc, SystemExit) else str(exc)
        raise ContextResolutionError(
            f"the Glue job arguments are incomplete or malformed: {detail}; a Glue stage needs "
            + ", ".join(f"--{n}" for n in names)
        ) from None
    # getResolvedOptions returns argparse destinations (``execution_id``); use the option names.
    return {name: str(resolved[name.replace("-", "_")]) for name in names}, resolved


def _flag_present(argv: Sequence[str], name: str) -> bool:
    option = f"--{name}"
    return any(a == option or a.startswith(f"{option}=") for a in argv[1:])


def resolve_args(
    argv: Sequence[str] | None = None,
    *,
    extra: Sequence[str] = (),
    bucket: str | None = None,
    settings: Settings | None = None,
) -> GlueArgs:
    """Resolve and validate the arguments of a Glue stage.

    Args:
        argv: The command line (default ``sys.argv``), program name first.
        extra: Further required arguments the script needs (names without ``--``); their values
            are in :attr:`GlueArgs.extra`.
        bucket: The bucket the job is pinned to (default: the settings' ``workflow_bucket``,
            ``CEAP_WORKFLOW_BUCKET``, if set): an input or output bucket other than it is
            refused.
        settings: The job's settings (default: resolved from the environment when needed).

    Returns:
        The validated arguments.

    Raises:
        ContextResolutionError: An argument is missing or malformed, an id breaks the identifier
            rules, a bucket is invalid or not the pinned one, or a key is not the convention key
            of its stage (``executions/{id}/{previous}/output.json`` in,
            ``executions/{id}/{current}/output.json`` out).

    Example:
        >>> args = resolve_args(["job.py", "--JOB_NAME", "enrich", "--execution-id", "run-1",
        ...     "--input-bucket", "wfb", "--input-key", "executions/run-1/initial/output.json",
        ...     "--output-bucket", "wfb", "--output-key", "executions/run-1/Enrich/output.json",
        ...     "--current-stage", "Enrich"])
        >>> args.is_first_stage, args.input_stage
        (True, 'initial')
    """
    argv = list(sys.argv if argv is None else argv)
    names = [*REQUIRED_ARGUMENTS, *(e for e in extra if e not in REQUIRED_ARGUMENTS)]
    # getResolvedOptions makes every named option required, so the optional one is named only
    # when present (the usual Glue idiom).
    if _flag_present(argv, _PREVIOUS):
        names.append(_PREVIOUS)
    raw, resolved = _parse(argv, names)

    execution_id = validate_execution_id(raw["execution-id"])
    job_name = raw["JOB_NAME"].strip()
    if not job_name:
        raise ContextResolutionError("--JOB_NAME must not be empty", execution_id=execution_id)
    try:
        current = validate_identifier(raw["current-stage"], "--current-stage")
    except ContextResolutionError as exc:
        exc.add_context(execution_id=execution_id)
        raise
    previous_raw = raw.get(_PREVIOUS, "")
    try:
        previous = (
            None
            if previous_raw in _NO_PREVIOUS
            else validate_identifier(previous_raw, "--previous-stage")
        )
        if previous == current:
            raise ContextResolutionError("--previous-stage must differ from --current-stage")
        input_bucket = validate_bucket(raw["input-bucket"], "--input-bucket")
        output_bucket = validate_bucket(raw["output-bucket"], "--output-bucket")
    except ContextResolutionError as exc:
        exc.add_context(execution_id=execution_id, stage=current)
        raise

    pinned = bucket or (settings or resolve_settings()).workflow_bucket
    if pinned is not None:
        for what, value in (("--input-bucket", input_bucket), ("--output-bucket", output_bucket)):
            if value != pinned:
                raise ContextResolutionError(
                    f"{what} names bucket {value!r} but this job is configured for {pinned!r}; "
                    "a stage never touches another bucket",
                    execution_id=execution_id,
                    stage=current,
                )

    expected_in = output_key(execution_id, previous or INITIAL_STAGE)
    expected_out = output_key(execution_id, current)
    for what, value, expected, where in (
        ("--input-key", raw["input-key"], expected_in, input_bucket),
        ("--output-key", raw["output-key"], expected_out, output_bucket),
    ):
        if value != expected:
            raise ContextResolutionError(
                f"{what} is not the convention key of its stage; expected {expected!r}",
                execution_id=execution_id,
                stage=current,
                bucket=where,
                key=value if len(value) <= 300 else value[:300] + "...",
            )

    return GlueArgs(
        job_name=job_name,
        execution_id=execution_id,
        current_stage=current,
        previous_stage=previous,
        input_bucket=input_bucket,
        input_key=expected_in,
        output_bucket=output_bucket,
        output_key=expected_out,
        extra={name: raw[name] for name in extra},
        resolved=resolved,
    )
