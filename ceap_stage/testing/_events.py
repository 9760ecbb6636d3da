"""Build the event Step Functions sends a stage (docs/contract.md section 2)."""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from ceap_stage._context import EVENT_FIELDS

__all__ = ["DEFAULT_BUCKET", "DEFAULT_EXECUTION_ID", "build_event", "check_event_keywords"]

#: The bucket :func:`build_event` and :func:`~ceap_stage.testing.run_stage` use by default.
DEFAULT_BUCKET = "ceap-test-bucket"
#: The execution id :func:`build_event` and :func:`~ceap_stage.testing.run_stage` use by default.
DEFAULT_EXECUTION_ID = "test-execution"

_ABSENT: Any = object()
_SNAKE = re.compile(r"_([a-z0-9])")


def _camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: f"_{m.group(0).lower()}", name)


#: The event fields :func:`build_event` takes as its own parameters; the other fields of
#: :data:`~ceap_stage._context.EVENT_FIELDS` are its (and ``run_stage``'s) extra keywords.
_OWN_FIELDS: Final = (
    "executionId",
    "currentStage",
    "previousStage",
    "workflowBucket",
    "initialData",
)
#: The extra keywords, in snake_case (as documented) and as on the wire.
EXTRA_EVENT_FIELDS: Final = tuple(_snake(f) for f in EVENT_FIELDS if f not in _OWN_FIELDS)
_EXTRA_ACCEPTED: Final = frozenset(EXTRA_EVENT_FIELDS) | {_camel(f) for f in EXTRA_EVENT_FIELDS}


@functools.cache
def _own_keywords(function: Callable[..., Any]) -> tuple[str, ...]:
    """The named keyword parameters of ``function`` (the suggestions for a misspelt one)."""
    return tuple(
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    )


def check_event_keywords(
    function: str,
    given: Iterable[str],
    own: Iterable[str],
    *,
    instead: dict[str, str] | None = None,
) -> None:
    """Refuse keywords that are neither ``function``'s own parameters nor known event fields.

    A misspelt keyword would otherwise become an event field no stage reads (``previous_ouput=``
    becoming ``previousOuput``), and the stage's error would be about something else.

    Args:
        function: The function's name, for the message.
        given: The extra keywords it was called with.
        own: Its own parameters (the suggestions come from them and the event fields).
        instead: Keywords that are the event field of one of its parameters
            (``current_stage`` -> ``stage``), suggested as they are.

    Raises:
        TypeError: A keyword is unknown; the message suggests the closest known one.

    Example:
        >>> check_event_keywords("run_stage", ["retry_count"], ["previous_output"])
        >>> check_event_keywords("run_stage", ["previous_ouput"], ["previous_output"])
        Traceback (most recent call last):
        ...
        TypeError: run_stage() got an unexpected keyword argument 'previous_ouput' (did you mean previous_output?)
    """  # noqa: E501
    unknown = [name for name in given if name not in _EXTRA_ACCEPTED]
    if not unknown:
        return
    name = unknown[0]
    known = [*own, *EXTRA_EVENT_FIELDS]
    close = (instead or {}).get(name) or next(
        iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None
    )
    hint = (
        f"did you mean {close}?"
        if close
        else f"its event fields are {', '.join(EXTRA_EVENT_FIELDS)}"
    )
    raise TypeError(f"{function}() got an unexpected keyword argument {name!r} ({hint})")


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
    when given (``None`` is a valid value). The other fields a stage reads are keywords too,
    snake_case names turned into camelCase (``workflow_name=`` becomes ``workflowName``,
    ``retry_count=`` ``retryCount``); any other keyword is refused, as a misspelt one would
    otherwise become a field no stage reads. To send a field the contract does not name, add it
    to the returned dict.

    Args:
        execution_id: The execution name (``$$.Execution.Name``).
        current_stage: This stage's name.
        previous_stage: The stage whose output is the input (None for a first stage).
        workflow_bucket: The bucket for intermediate data.
        initial_data: The first stage's input (the SQS message body or Pipes batch).
        **extra: More fields: ``workflow_name``, ``retry_count``, ``redrive_count``,
            ``output_format``, and the fan-out's ``ceap_phase``, ``records_per_shard``,
            ``shard``, ``tolerated_failure_percentage``.

    Raises:
        TypeError: A keyword is not one of these (``did you mean ...?``).

    Example:
        >>> build_event(current_stage="Score", previous_stage="Filter", workflow_name="orders")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'executionId': 'test-execution', 'currentStage': 'Score', 'workflowBucket':
        'ceap-test-bucket', 'previousStage': 'Filter', 'workflowName': 'orders'}
        >>> build_event(current_stage="Ingest", initial_data={"id": 1})["initialData"]
        {'id': 1}
        >>> build_event(current_stage="Score", workflow_nme="orders")
        Traceback (most recent call last):
        ...
        TypeError: build_event() got an unexpected keyword argument 'workflow_nme' (did you mean workflow_name?)
    """  # noqa: E501
    check_event_keywords("build_event", extra, _own_keywords(build_event))
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
