"""Run a stage in one call: seed its input, invoke it, read back the typed output and the logs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic_core import to_jsonable_python

from ceap_stage._formats import encode_jsonl
from ceap_stage._handler import StageHandler, WorkflowLambdaHandler
from ceap_stage._io import OutputRef, StageIO
from ceap_stage._observability import Capture, capture
from ceap_stage._runtime import StageRuntime
from ceap_stage._settings import resolve_settings
from ceap_stage._store import Store

from ._events import (
    _ABSENT,
    DEFAULT_BUCKET,
    DEFAULT_EXECUTION_ID,
    _own_keywords,
    build_event,
    check_event_keywords,
)
from ._lambda import FakeLambdaContext

__all__ = ["StageRun", "capture_logs", "run_stage"]

#: The name :func:`run_stage` gives the previous stage when only its output is given.
DEFAULT_PREVIOUS_STAGE = "PreviousStage"
#: The stage name :func:`run_stage` uses when the handler is not pinned to one.
DEFAULT_STAGE = "TestStage"


@dataclass(frozen=True)
class StageRun:
    """What one :func:`run_stage` call produced.

    Attributes:
        output: The stage's output as read back from the store, validated with the handler's
            output model (so ``list[Model]`` gives model instances).
        result: The pointer the handler returned to Step Functions (docs/contract.md section 4).
        logs: The JSON log records the invocation wrote, as dicts.
        metrics: The EMF documents it flushed.
        event: The event it was invoked with.

    Example:
        >>> run = StageRun(output=[1], result={"status": "SUCCESS"},
        ...                logs=[{"message": "stage started"}, {"message": "stage finished"}])
        >>> run.messages()
        ['stage started', 'stage finished']
    """

    output: Any
    result: dict[str, Any]
    logs: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    event: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> list[str]:
        """The ``message`` of every log record, in order."""
        return [str(record.get("message")) for record in self.logs]


@contextlib.contextmanager
def capture_logs() -> Iterator[Capture]:
    """Collect the log records and EMF documents of the stages invoked in the block.

    Useful when a stage is expected to fail (where :func:`run_stage` raises and returns nothing).
    Lines are still written to stdout too.

    Example:
        >>> from ceap_stage import stage, LocalStore, InputNotFoundError
        >>> import tempfile
        >>> @stage
        ... def handler(data: dict) -> dict:
        ...     return data
        >>> with capture_logs() as captured:
        ...     try:
        ...         run_stage(handler, store=LocalStore(tempfile.mkdtemp()),
        ...                   previous_stage="Missing")
        ...     except InputNotFoundError:
        ...         pass  # doctest: +ELLIPSIS
        {...}
        >>> [r["message"] for r in captured.records]
        ['stage started', 'stage failed']
        >>> captured.records[-1]["error_type"]
        'InputNotFoundError'
    """
    with capture() as captured:
        yield captured


def _encode(value: Any, fmt: Literal["json", "jsonl"]) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    plain = to_jsonable_python(value, by_alias=True)
    if fmt == "jsonl":
        if not isinstance(plain, list):
            raise TypeError("previous_format='jsonl' needs a list of records")
        return encode_jsonl(plain)
    return orjson.dumps(plain)


def run_stage(
    handler: StageHandler | WorkflowLambdaHandler[Any, Any],
    *,
    store: Store,
    previous_output: Any = _ABSENT,
    initial_data: Any = _ABSENT,
    execution_id: str = DEFAULT_EXECUTION_ID,
    stage: str | None = None,
    previous_stage: str | None = None,
    bucket: str | None = None,
    previous_format: Literal["json", "jsonl"] = "json",
    lambda_context: Any = None,
    **event_fields: Any,
) -> StageRun:
    """Run ``handler`` once against ``store`` and return its typed output, pointer and logs.

    Give the previous stage's output (written to the store where the contract says, then read
    by the stage), or ``initial_data`` for a first stage. The handler runs exactly as in Lambda
    (event parsing, validation, write, pointer), on ``store`` instead of the store it would
    otherwise use; the handler object itself is not changed.

    Args:
        handler: A ``@stage`` function or a ``WorkflowLambdaHandler`` instance.
        store: Where the input is seeded and the output written (e.g. the ``local_store`` or
            ``s3_store`` fixture).
        previous_output: The previous stage's output: models, dicts, lists (written as JSON),
            or ``bytes``/``str`` written as they are.
        initial_data: The ``initialData`` of a first stage.
        execution_id: The execution id.
        stage: This stage's name (default: the handler's ``name``, else ``TestStage``).
        previous_stage: The previous stage's name (default ``PreviousStage`` when
            ``previous_output`` is given). Without ``previous_output`` nothing is seeded.
        bucket: The workflow bucket (default: the store's ``bucket`` attribute, as the
            ``s3_store`` fixture has, else ``CEAP_WORKFLOW_BUCKET``, else ``ceap-test-bucket``).
        previous_format: Write ``previous_output`` as ``"json"`` or as ``"jsonl"`` (JSON Lines).
        lambda_context: The Lambda context (default: a new :class:`FakeLambdaContext`).
        **event_fields: The event's other fields (those a stage reads, docs/contract.md
            sections 2, 7 and 9): ``workflow_name="orders"``, ``retry_count=1``,
            ``redrive_count``, ``output_format``, ``ceap_phase``, ``records_per_shard``,
            ``shard``, ``tolerated_failure_percentage``.

    Returns:
        A :class:`StageRun`.

    Raises:
        TypeError: A keyword is neither a parameter nor one of those event fields (a typo:
            ``previous_ouput=`` gives ``did you mean previous_output?``); nothing is written.
        CeapStageError: What the handler raised (the contract's errors), or the stage's own
            exception, unchanged.

    Example:
        >>> import tempfile
        >>> from pydantic import BaseModel
        >>> from ceap_stage import LocalStore, stage
        >>> class Order(BaseModel):
        ...     amount: float
        >>> @stage
        ... def big(orders: list[Order]) -> list[Order]:
        ...     return [o for o in orders if o.amount > 10]
        >>> run = run_stage(big, store=LocalStore(tempfile.mkdtemp()),
        ...                 previous_output=[{"amount": 5}, {"amount": 50}])  # doctest: +ELLIPSIS
        {...}
        >>> run.output
        [Order(amount=50.0)]
        >>> run.result["recordsProcessed"], run.messages()
        (1, ['stage started', 'stage finished'])
    """
    check_event_keywords(
        "run_stage",
        event_fields,
        _own_keywords(run_stage),
        instead={"current_stage": "stage", "workflow_bucket": "bucket"},
    )
    if previous_output is not _ABSENT and initial_data is not _ABSENT:
        raise TypeError("give previous_output (a later stage) or initial_data (a first stage)")
    if previous_format not in ("json", "jsonl"):
        raise ValueError(f"previous_format must be 'json' or 'jsonl', not {previous_format!r}")
    runtime = getattr(handler, "runtime", None)
    if not isinstance(runtime, StageRuntime):
        name = getattr(handler, "__qualname__", type(handler).__name__)
        if isinstance(handler, type) and issubclass(handler, WorkflowLambdaHandler):
            hint = f" (pass an instance: {name}())"
        elif callable(handler):
            hint = " (decorate it with @stage)"
        else:
            hint = ""
        raise TypeError(
            "run_stage() runs a @stage function or a WorkflowLambdaHandler instance, not "
            f"{name!r}{hint}"
        )
    stage_name = stage or runtime.name or DEFAULT_STAGE
    bucket = (
        bucket
        or getattr(store, "bucket", None)
        or resolve_settings().workflow_bucket
        or DEFAULT_BUCKET
    )
    if previous_output is not _ABSENT:
        previous_stage = previous_stage or DEFAULT_PREVIOUS_STAGE
        StageIO(store).write_bytes(
            OutputRef(bucket, execution_id, previous_stage),
            _encode(previous_output, previous_format),
            previous_format,
            metadata={},
        )
    event = build_event(
        execution_id=execution_id,
        current_stage=stage_name,
        previous_stage=previous_stage,
        workflow_bucket=bucket,
        initial_data=initial_data,
        **event_fields,
    )
    context = FakeLambdaContext() if lambda_context is None else lambda_context
    with capture() as captured:
        result = runtime.using_store(store).invoke(event, context)
    out = result["output"]
    value = StageIO(store).read(OutputRef(out["bucket"], execution_id, stage_name)).value
    return StageRun(
        output=runtime.spec.output_adapter.validate_python(value),
        result=result,
        logs=captured.records,
        metrics=list(captured.metrics),
        event=event,
    )
