"""The event Step Functions sends a stage, its identifier rules, and the execution context.

This module is the single owner of docs/contract.md section 2 (the event) and of the storage layout
(section 3): every other module builds keys through :func:`output_key` and validates names through
:func:`validate_identifier`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._errors import ContextResolutionError

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

__all__ = [
    "EVENT_FIELDS",
    "INITIAL_STAGE",
    "OUTPUT_FORMATS",
    "ExecutionContext",
    "StageEvent",
    "is_queue_batch",
    "output_key",
    "parse_event",
    "parts_prefix",
    "validate_bucket",
    "validate_identifier",
]

#: Every event field a Lambda stage reads, by its wire name: section 2's, ``outputFormat``
#: (section 9) and the fan-out's (section 7, read by :mod:`ceap_stage._fanout`). Other fields are
#: ignored by a stage; the testing kit refuses them as keywords (a typo, most likely).
EVENT_FIELDS: Final = (
    "executionId",
    "currentStage",
    "previousStage",
    "workflowBucket",
    "initialData",
    "workflowName",
    "retryCount",
    "redriveCount",
    "outputFormat",
    "ceapPhase",
    "recordsPerShard",
    "shard",
    "toleratedFailurePercentage",
)
#: The pseudo-stage whose output a first stage that is a Glue job reads.
INITIAL_STAGE = "initial"
#: What the event's ``outputFormat`` may ask for (docs/contract.md section 9): ``json``, one JSON
#: document, for a next stage that reads nothing else (a Kotlin CEAP stage).
OUTPUT_FORMATS = frozenset({"json"})

_MAX_IDENTIFIER = 80
# Slash, backslash, any whitespace (Unicode too) and C0/C1 control characters.
_FORBIDDEN = re.compile(r"[/\\\s\x00-\x1f\x7f-\x9f]")
# arn:{partition}:states:{region}:{account}:execution:{stateMachine}:{name}
# arn:{partition}:states:{region}:{account}:express:{stateMachine}:{name}:{uuid}
_EXECUTION_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:states:[a-z0-9-]+:\d{12}:"
    r"(?:execution:[^:]+:(?P<standard>[^:]+)|express:[^:]+:(?P<express>[^:]+):[^:]+)"
)
_BUCKET = re.compile(r"(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


def validate_identifier(value: object, what: str) -> str:
    """Check an execution id or stage name against the identifier rules and return it.

    Rules: a string of 1 to 80 characters, without ``/``, ``\\``, whitespace or control
    characters, and neither ``.`` nor ``..``.

    >>> validate_identifier("FilterStage", "currentStage")
    'FilterStage'
    >>> validate_identifier("../etc", "currentStage")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ceap_stage._errors.ContextResolutionError: currentStage must not contain '/', ...
    """
    if not isinstance(value, str):
        raise ContextResolutionError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ContextResolutionError(f"{what} must not be empty")
    if len(value) > _MAX_IDENTIFIER:
        raise ContextResolutionError(
            f"{what} is {len(value)} characters long; at most {_MAX_IDENTIFIER} are allowed"
        )
    if _FORBIDDEN.search(value):
        raise ContextResolutionError(
            f"{what} must not contain '/', '\\', whitespace or control characters"
        )
    if value in (".", ".."):
        raise ContextResolutionError(f"{what} must not be '.' or '..'")
    return value


def validate_execution_id(value: object) -> str:
    """Validate an execution id, reducing a full execution ARN to the execution name.

    >>> validate_execution_id("arn:aws:states:eu-west-1:123456789012:execution:Flow:run-7")
    'run-7'
    """
    if isinstance(value, str) and value.startswith("arn:"):
        match = _EXECUTION_ARN.fullmatch(value)
        if match is None:
            raise ContextResolutionError(
                "executionId is an ARN but not a Step Functions execution ARN"
            )
        value = match.group("standard") or match.group("express")
    return validate_identifier(value, "executionId")


def validate_bucket(value: object, what: str = "workflowBucket") -> str:
    """Check an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)."""
    if not isinstance(value, str):
        raise ContextResolutionError(f"{what} must be a string, not {type(value).__name__}")
    if not _BUCKET.fullmatch(value) or ".." in value or _IP_ADDRESS.fullmatch(value):
        shown = value if len(value) <= 70 else f"{value[:67]}..."
        raise ContextResolutionError(
            f"{what} is not a valid S3 bucket name: {shown!r} (3-63 characters: lowercase "
            "letters, digits, '.' and '-', beginning and ending with a letter or digit; not an "
            "IP address)"
        )
    return value


def is_queue_batch(value: object) -> bool:
    """An EventBridge Pipes batch: a non-empty list of SQS records whose ``body`` is a string
    (the ``initialData`` of a first stage fed by a queue, docs/contract.md section 8).

    Example:
        >>> is_queue_batch([{"messageId": "m-1", "body": "{}"}]), is_queue_batch([{"a": 1}])
        (True, False)
    """
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(r, dict)
            and isinstance(r.get("body"), str)
            and (r.get("eventSource") == "aws:sqs" or "messageId" in r)
            for r in value
        )
    )


def output_key(execution_id: str, stage: str) -> str:
    """The key of a stage's output: ``executions/{executionId}/{stageName}/output.json``.

    >>> output_key("run-1", "FilterStage")
    'executions/run-1/FilterStage/output.json'
    """
    return f"executions/{execution_id}/{stage}/output.json"


def parts_prefix(execution_id: str, stage: str) -> str:
    """The prefix under which a stage's partitioned output parts live."""
    return f"executions/{execution_id}/{stage}/parts/"


class StageEvent(NamedTuple):
    """The validated event, in Python names (see :func:`parse_event`)."""

    execution_id: str
    current_stage: str
    previous_stage: str | None
    workflow_bucket: str
    workflow_name: str | None = None
    retry_count: int = 0
    redrive_count: int = 0
    has_initial_data: bool = False
    initial_data: Any = None
    output_format: str | None = None


def _optional_str(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ContextResolutionError(f"{name} must be a string or null, not {type(value).__name__}")


def _count(event: Mapping[str, Any], name: str) -> int:
    value = event.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContextResolutionError(f"{name} must be a non-negative integer")
    return value


def parse_event(
    event: object,
    *,
    configured_bucket: str | None = None,
    configured_stage: str | None = None,
) -> StageEvent:
    """Validate a Step Functions event against docs/contract.md section 2.

    Args:
        event: The Lambda event.
        configured_bucket: The bucket the function is pinned to (argument or
            ``CEAP_WORKFLOW_BUCKET``); an event naming another bucket is refused.
        configured_stage: The stage name the handler was declared with; an event for another
            stage is refused, and an event without ``currentStage`` uses it.

    Raises:
        ContextResolutionError: The event breaks the contract. Raised before any S3 call.

    >>> e = parse_event({"executionId": "run-1", "currentStage": "Score",
    ...                  "previousStage": "Filter", "workflowBucket": "my-bucket"})
    >>> e.execution_id, e.previous_stage
    ('run-1', 'Filter')
    """
    if not isinstance(event, Mapping):
        raise ContextResolutionError(f"the event must be a JSON object, not {type(event).__name__}")
    if "executionId" not in event:
        raise ContextResolutionError("the event has no executionId")
    execution_id = validate_execution_id(event["executionId"])

    raw_stage = event.get("currentStage")
    if raw_stage is None:
        if configured_stage is None:
            raise ContextResolutionError("the event has no currentStage", execution_id=execution_id)
        raw_stage = configured_stage
    current_stage = validate_identifier(raw_stage, "currentStage")
    if configured_stage is not None and current_stage != configured_stage:
        raise ContextResolutionError(
            f"the event is for stage {current_stage!r} but this handler is stage "
            f"{configured_stage!r}",
            execution_id=execution_id,
            stage=configured_stage,
        )

    previous = event.get("previousStage")
    previous_stage = None if previous is None else validate_identifier(previous, "previousStage")
    if previous_stage == current_stage:
        raise ContextResolutionError(
            "previousStage must differ from currentStage",
            execution_id=execution_id,
            stage=current_stage,
        )

    raw_bucket = event.get("workflowBucket")
    if raw_bucket is None:
        if configured_bucket is None:
            raise ContextResolutionError(
                "the event has no workflowBucket and the function is configured with none "
                "(set CEAP_WORKFLOW_BUCKET or pass bucket=)",
                execution_id=execution_id,
                stage=current_stage,
            )
        bucket = configured_bucket
    else:
        try:
            bucket = validate_bucket(raw_bucket)
        except ContextResolutionError as exc:
            exc.add_context(execution_id=execution_id, stage=current_stage)
            raise
        if configured_bucket is not None and bucket != configured_bucket:
            raise ContextResolutionError(
                f"the event names bucket {bucket!r} but this function is configured for "
                f"{configured_bucket!r}; a stage never touches another bucket",
                execution_id=execution_id,
                stage=current_stage,
            )

    try:
        workflow_name = _optional_str(event, "workflowName")
        retry_count = _count(event, "retryCount")
        redrive_count = _count(event, "redriveCount")
        output_format = _optional_str(event, "outputFormat")
        if output_format is not None and output_format not in OUTPUT_FORMATS:
            raise ContextResolutionError(
                f"outputFormat must be one of {sorted(OUTPUT_FORMATS)} (what the next stage "
                f"needs), not {output_format!r}"
            )
    except ContextResolutionError as exc:
        exc.add_context(execution_id=execution_id, stage=current_stage)
        raise

    return StageEvent(
        execution_id=execution_id,
        current_stage=current_stage,
        previous_stage=previous_stage,
        workflow_bucket=bucket,
        workflow_name=workflow_name,
        retry_count=retry_count,
        redrive_count=redrive_count,
        has_initial_data="initialData" in event,
        initial_data=event.get("initialData"),
        output_format=output_format,
    )


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What a stage knows about the execution it runs in.

    Passed to the stage function as its (optional) second argument.

    >>> ctx = ExecutionContext(execution_id="run-1", current_stage="Score",
    ...                        previous_stage="Filter", workflow_bucket="my-bucket")
    >>> ctx.input_key
    'executions/run-1/Filter/output.json'
    >>> ctx.output_key
    'executions/run-1/Score/output.json'
    >>> ctx.is_first_stage
    False
    """

    execution_id: str
    current_stage: str
    previous_stage: str | None
    workflow_bucket: str
    workflow_name: str | None = None
    retry_count: int = 0
    redrive_count: int = 0
    #: The Lambda context object of this invocation (None outside Lambda).
    lambda_context: Any = field(default=None, repr=False, compare=False)
    #: A Powertools logger bound to this invocation's execution id and stage.
    logger: Logger | None = field(default=None, repr=False, compare=False)

    @property
    def is_first_stage(self) -> bool:
        """True when the stage has no previous stage (its input is ``initialData``)."""
        return self.previous_stage is None

    @property
    def input_key(self) -> str | None:
        """The key of the previous stage's output, or None for a first stage."""
        if self.previous_stage is None:
            return None
        return output_key(self.execution_id, self.previous_stage)

    @property
    def output_key(self) -> str:
        """The key this stage writes its output to."""
        return output_key(self.execution_id, self.current_stage)

    @property
    def aws_request_id(self) -> str | None:
        """The Lambda request id, when running in Lambda (or with a fake context)."""
        return getattr(self.lambda_context, "aws_request_id", None)

    def remaining_time_ms(self) -> int | None:
        """Milliseconds left before Lambda stops this invocation (None outside Lambda)."""
        getter = getattr(self.lambda_context, "get_remaining_time_in_millis", None)
        return None if getter is None else int(getter())
