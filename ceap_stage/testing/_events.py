"""Build the event Step Functions sends a stage (docs/contract.md section 2)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DEFAULT_BUCKET", "DEFAULT_EXECUTION_ID", "build_event"]

#: The bucket :func:`build_event` and :func:`~ceap_stage.testing.run_stage` use by default.
DEFAULT_BUCKET = "ceap-test-bucket"
#: The execution id :func:`build_event` and :func:`~ceap_stage.testing.run_stage` use by default.
DEFAULT_EXECUTION_ID = "test-execution"

_ABSENT: Any = object()
_SNAKE = re.compile(r"_([a-z0-9])")


def _camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def build_event(
    *,
    execution_id: str = DEFAULT_EXECUTION_ID,
    current_stage: str,
    previous_stage: str | None = None,
    workflow_bucket: str = DEFAULT_BUCKET,
    initial_data: Any = _ABSENT,
    **extra: Any,
) -> dict[str, Any]:
    """The wire event of a stage at any position, with camelCase field names.

    ``previousStage`` is present only when given (absent = a first stage), ``initialData`` only
    when given (``None`` is a valid value). Extra fields are added as given, snake_case names
    turned into camelCase (``workflow_name=`` becomes ``workflowName``, ``retry_count=``
    ``retryCount``).

    Args:
        execution_id: The execution name (``$$.Execution.Name``).
        current_stage: This stage's name.
        previous_stage: The stage whose output is the input (None for a first stage).
        workflow_bucket: The bucket for intermediate data.
        initial_data: The first stage's input (the SQS message body or Pipes batch).
        **extra: More fields: ``workflow_name``, ``retry_count``, ``redrive_count``, ...

    Example:
        >>> build_event(current_stage="Score", previous_stage="Filter", workflow_name="orders")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'executionId': 'test-execution', 'currentStage': 'Score', 'workflowBucket':
        'ceap-test-bucket', 'previousStage': 'Filter', 'workflowName': 'orders'}
        >>> build_event(current_stage="Ingest", initial_data={"id": 1})["initialData"]
        {'id': 1}
    """
    event: dict[str, Any] = {
        "executionId": execution_id,
        "currentStage": current_stage,
        "workflowBucket": workflow_bucket,
    }
    if previous_stage is not None:
        event["previousStage"] = previous_stage
    if initial_data is not _ABSENT:
        event["initialData"] = initial_data
    for name, value in extra.items():
        event[_camel(name)] = value
    return event
