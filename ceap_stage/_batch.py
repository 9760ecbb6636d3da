"""Queue batches (contract section 8): the SQS records an EventBridge Pipe sends a first stage.

A record's ``body`` is decoded as JSON when it is JSON; a ``str`` item model receives a body that
is plain text as text; an item model that is ``SqsRecord`` (or a subclass; the models live in
``_sqs``) receives the records themselves. Each record is validated on its own, so that an error
names its ``messageId``; with ``on_invalid_record="reject"`` a record that fails is left out and
listed (:class:`RejectedRecord`) instead of failing the batch.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from ._context import is_queue_batch
from ._errors import InputValidationError
from ._models import (
    ON_INVALID_RECORD,
    UNSET,
    OnInvalidRecord,
    StageSpec,
    describe_validation_error,
    model_name,
    unwrap_annotated,
)

__all__ = [
    "ON_INVALID_RECORD",
    "OnInvalidRecord",
    "QueueBatch",
    "RejectedRecord",
    "decode_batch",
    "is_queue_batch",
    "item_model",
]


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record left out of a batch: its ``messageId``, index and error (never its payload)."""

    message_id: str
    index: int
    error: str

    def as_json(self) -> dict[str, Any]:
        """The line written to ``rejected.jsonl``."""
        return {"messageId": self.message_id, "index": self.index, "error": self.error}


@dataclass(frozen=True, slots=True)
class QueueBatch:
    """What decoding a queue batch gave: the valid records' values and the rejected ones."""

    values: list[Any]
    rejected: list[RejectedRecord]
    reject: bool

    @property
    def batch_item_failures(self) -> list[dict[str, str]]:
        """``[{"itemIdentifier": messageId}, ...]``: what a Pipe returns to the queue."""
        return [{"itemIdentifier": r.message_id} for r in self.rejected]


def item_model(spec: StageSpec) -> Any:
    """The model one record is validated with: a list model's item, a stream's item, or the
    model itself (a single-record model)."""
    if spec.input_item is not UNSET:
        return spec.input_item
    if spec.input_is_list:
        args = typing.get_args(unwrap_annotated(spec.input_model))
        return args[0] if args else Any
    return spec.input_model


def _takes_records(item: Any) -> bool:
    from ._sqs import SqsRecord  # defined on first use (see that module)

    item = unwrap_annotated(item)
    return isinstance(item, type) and issubclass(item, SqsRecord)


def _takes_text(item: Any) -> bool:
    """A ``str`` item model (or a union with ``str``) receives plain-text bodies as text."""
    item = unwrap_annotated(item)
    if item is str:
        return True
    if typing.get_origin(item) in (typing.Union, types.UnionType):
        return any(unwrap_annotated(arg) is str for arg in typing.get_args(item))
    return False


def _body_value(record: dict[str, Any], text: bool) -> Any:
    """A record's body decoded as JSON; for a text model a body that is not a JSON string is
    kept as the text itself."""
    body: str = record["body"]
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if text:
            return body
        raise ValueError(f"its body is not JSON ({exc.msg})") from None
    if text and not isinstance(value, str):
        return body
    return value


def decode_batch(
    records: list[dict[str, Any]],
    spec: StageSpec,
    validate: Callable[[Any], Any],
    *,
    reject: bool,
) -> QueueBatch:
    """Decode and validate each record of a queue batch with the item model.

    Args:
        records: The SQS records (:func:`is_queue_batch` holds).
        spec: The stage's models.
        validate: Validates one decoded record with the item model.
        reject: Leave out (and list) a record that fails, instead of raising.

    Raises:
        InputValidationError: A record fails and ``reject`` is False; the message names its
            index and ``messageId``.
    """
    item = item_model(spec)
    whole, text = _takes_records(item), _takes_text(item)
    label = model_name(item)
    values: list[Any] = []
    rejected: list[RejectedRecord] = []
    for index, record in enumerate(records):
        message_id = str(record.get("messageId", ""))
        try:
            values.append(validate(record if whole else _body_value(record, text)))
            continue
        except ValidationError as exc:
            error = f"fails the model {label}: {describe_validation_error(exc)}"
        except ValueError as exc:
            error = str(exc)
        if not reject:
            raise InputValidationError(
                f"SQS record {index} (messageId {message_id}) {error}"
            ) from None
        rejected.append(RejectedRecord(message_id, index, error))
    return QueueBatch(values, rejected, reject)


def __getattr__(name: str) -> object:
    # The record models moved to ._sqs (imported on first use); their old import path works.
    if name in ("SqsRecord", "SqsMessageAttribute"):
        from . import _sqs

        return getattr(_sqs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
