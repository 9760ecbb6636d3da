"""Resolve a stage function's models once, when it is declared (never per invocation).

The input model is the first parameter's annotation, the output model the return annotation;
explicit ``input_model=`` / ``output_model=`` win. The optional second parameter receives the
:class:`ExecutionContext`. Anything pydantic's ``TypeAdapter`` accepts is a model. Whatever is
unusable raises :class:`HandlerDefinitionError` here, at import time, not at 3 a.m.
"""

from __future__ import annotations

import collections.abc as cabc
import hashlib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NamedTuple

import orjson
from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from ._errors import HandlerDefinitionError

__all__ = [
    "FINGERPRINT_KEY",
    "ON_INVALID_RECORD",
    "SCHEMA_KEY",
    "UNSET",
    "OnInvalidRecord",
    "StageSpec",
    "adapter_for",
    "describe_validation_error",
    "drift",
    "model_name",
    "resolve",
    "schema_fingerprint",
    "unwrap_annotated",
    "writer_schema",
    "written_by",
]

#: The output metadata key of the output model's name.
SCHEMA_KEY: Final = "ceap-schema"
#: The output metadata key of the output model's schema fingerprint (:func:`schema_fingerprint`).
FINGERPRINT_KEY: Final = "ceap-schema-fingerprint"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: Marks an argument that was not given (``None`` is a valid output model).
UNSET: Final[Any] = _Unset()

_LIST_ORIGINS = frozenset(
    {list, tuple, set, frozenset, cabc.Sequence, cabc.MutableSequence, cabc.Collection}
)
_STREAM_ORIGINS = frozenset({cabc.Iterable, cabc.Iterator, cabc.Generator})
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def adapter_for(model: Any) -> TypeAdapter[Any]:
    """The one cached ``TypeAdapter`` for ``model``.

    Raises:
        HandlerDefinitionError: pydantic cannot build a schema for ``model``.
    """
    try:
        return _ADAPTERS[model]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: build, do not cache
        return _build_adapter(model)
    adapter = _ADAPTERS[model] = _build_adapter(model)
    return adapter


def _build_adapter(model: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(model)
    except (PydanticSchemaGenerationError, TypeError, NameError) as exc:
        raise HandlerDefinitionError(
            f"{model_name(model)} cannot be used as a model: pydantic cannot validate it "
            f"({type(exc).__name__})"
        ) from exc


def model_name(model: Any) -> str:
    """A short readable name for a model (``list[Order]``, ``Order``, ``None``)."""
    if model is type(None) or model is None:
        return "None"
    if typing.get_origin(model) is not None:
        args = ", ".join(model_name(a) for a in typing.get_args(model))
        origin = typing.get_origin(model)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(model, "__name__", repr(model))


def unwrap_annotated(model: Any) -> Any:
    """The type inside ``Annotated[...]`` layers (the model itself when there are none).

    >>> from typing import Annotated
    >>> unwrap_annotated(Annotated[list[int], "meta"])
    list[int]
    """
    while typing.get_origin(model) is typing.Annotated:
        model = typing.get_args(model)[0]
    return model


def is_list_model(model: Any) -> bool:
    """True for list-like models (``list[X]``, ``Sequence[X]``, ``tuple[X, ...]``...)."""
    model = unwrap_annotated(model)
    return model in _LIST_ORIGINS or typing.get_origin(model) in _LIST_ORIGINS


def stream_item(model: Any) -> Any:
    """For ``Iterable[X]`` / ``Iterator[X]`` models the item type ``X``, else ``UNSET``."""
    model = unwrap_annotated(model)
    if typing.get_origin(model) in _STREAM_ORIGINS:
        args = typing.get_args(model)
        return args[0] if args else Any
    return UNSET


# Core-schema types whose JSON-mode and Python-mode validation of orjson-decoded values may
# differ: bytes may be base64 in JSON (``val_json_bytes="base64"``).
_JSON_SENSITIVE_TYPES = frozenset({"bytes"})


def json_sensitive(adapter: TypeAdapter[Any]) -> bool:
    """Whether validating a value decoded from JSON differs from validating its JSON text.

    True for models with strict parts (``strict=True`` in a model's config or on a field: JSON
    mode reads a ``date`` from an ISO string, Python mode refuses a ``str``) and for ``bytes``
    fields (JSON may carry them as base64). For the rest, the usual lax models, both modes agree.

    >>> json_sensitive(TypeAdapter(list[int])), json_sensitive(TypeAdapter(dict[str, bytes]))
    (False, True)
    """
    pending: list[Any] = [adapter.core_schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            kind = node.get("type")  # not always a schema's type: a field may be named "type"
            if node.get("strict") is True or (
                isinstance(kind, str) and kind in _JSON_SENSITIVE_TYPES
            ):
                return True
            pending.extend(node.values())
        elif isinstance(node, (list, tuple)):
            pending.extend(node)
    return False


def json_validator(adapter: TypeAdapter[Any]) -> Callable[..., Any]:
    """A validator of values decoded from JSON that gives what validating their text gives.

    Input arrives as JSON text but not always as one document that pydantic can validate in
    one pass (JSON Lines, manifest parts, streamed records, unlabelled files, ``initialData``).
    For the models where it matters (:func:`json_sensitive`), the validator re-encodes the
    decoded value and validates it in JSON mode, so a stage accepts the same input whatever the
    format or store; for the others it validates the value in Python mode (cheaper, same
    result). The validator takes ``(value, text=None)``: ``text``, when given, is the value's
    JSON and saves encoding it again.

    >>> from datetime import date
    >>> from typing import Annotated
    >>> from pydantic import Strict
    >>> strict_date = TypeAdapter(Annotated[date, Strict()])
    >>> json_validator(strict_date)("2026-11-26")  # Python mode alone refuses a str here
    datetime.date(2026, 11, 26)
    """
    validate_python = adapter.validate_python
    if not json_sensitive(adapter):

        def validate_lax(value: Any, text: bytes | None = None) -> Any:
            return validate_python(value)

        return validate_lax

    validate_json = adapter.validate_json

    def validate(value: Any, text: bytes | None = None) -> Any:
        if text is None:
            try:
                text = orjson.dumps(value)
            except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: no JSON twin
                return validate_python(value)
        try:
            return validate_json(text)
        except ValidationError as exc:
            if not any(e["type"] == "json_invalid" for e in exc.errors(include_input=False)):
                raise
            # Valid JSON (orjson read it) that pydantic's parser refuses, e.g. nested deeper
            # than its recursion limit: the Python-mode validator still judges the value.
            return validate_python(value)

    return validate


def describe_validation_error(exc: ValidationError, *, limit: int = 3) -> str:
    """Summarise a pydantic error by location and reason, without the offending values.

    >>> from pydantic import TypeAdapter, ValidationError
    >>> try:
    ...     TypeAdapter(list[int]).validate_python(["secret-value"])
    ... except ValidationError as exc:
    ...     print(describe_validation_error(exc))
    ... # doctest: +NORMALIZE_WHITESPACE
    1 error: [0]: Input should be a valid integer,
        unable to parse string as an integer (int_parsing)
    """
    errors = exc.errors(include_input=False, include_url=False, include_context=True)
    shown = []
    for error in errors[:limit]:
        path = list(error["loc"])
        if len(path) > 12:  # deeply nested input: keep the message short
            path = [*path[:4], "...", *path[-4:]]
        message = error["msg"]
        if error["type"] == "extra_forbidden" and path:
            path[-1] = "<extra field>"  # the field's name comes from the payload
        elif error["type"] == "union_tag_invalid":
            # pydantic quotes the payload's tag value: name the expected tags only.
            context = error.get("ctx") or {}
            message = (
                f"Input tag found using {context.get('discriminator')} does not match any of "
                f"the expected tags: {context.get('expected_tags')}"
            )
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        shown.append(f"{loc.lstrip('.') or '<root>'}: {message} ({error['type']})")
    more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
    count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
    return f"{count}: {'; '.join(shown)}{more}"


#: What a queue batch stage does with a record that fails its model (docs/contract.md section 8):
#: fail the batch, or leave the record out and list it (see ``_batch``).
OnInvalidRecord = Literal["fail", "reject"]
#: The values ``on_invalid_record`` takes.
ON_INVALID_RECORD: Final = ("fail", "reject")


class StageSpec(NamedTuple):
    """Everything resolved about a stage function at declaration time."""

    fn: Callable[..., Any]
    input_model: Any
    output_model: Any
    input_adapter: TypeAdapter[Any]
    output_adapter: TypeAdapter[Any]
    pass_context: bool
    input_is_list: bool
    output_is_list: bool
    #: ``X`` when the input model is ``Iterable[X]``/``Iterator[X]`` (streamed), else UNSET.
    input_item: Any = UNSET
    #: ``X`` when the output model is ``Iterable[X]``/``Iterator[X]`` (streamed), else UNSET.
    output_item: Any = UNSET

    @property
    def accepts_records(self) -> bool:
        """Whether the input is a collection of records (list-like or streamed)."""
        return self.input_is_list or self.input_item is not UNSET


def resolve(
    fn: Callable[..., Any],
    *,
    input_model: Any = UNSET,
    output_model: Any = UNSET,
    owner: str | None = None,
) -> StageSpec:
    """Work out a stage function's models from its signature.

    Args:
        fn: The stage function (or a bound ``process`` method).
        input_model: Explicit input model; wins over the first parameter's annotation.
        output_model: Explicit output model; wins over the return annotation.
        owner: How to name the function in messages (default: its qualified name).

    Raises:
        HandlerDefinitionError: The signature or a model is unusable.
    """
    where: str = owner or getattr(fn, "__qualname__", None) or repr(fn)
    try:
        signature = inspect.signature(fn, eval_str=True)
    except NameError as exc:
        raise HandlerDefinitionError(
            f"{where}: an annotation names something that is not defined ({exc}); "
            "define it before the stage or pass input_model=/output_model="
        ) from exc
    except (TypeError, ValueError) as exc:
        raise HandlerDefinitionError(f"{where}: has no usable signature ({exc})") from exc

    positional = []
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            positional.append(param)
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            raise HandlerDefinitionError(
                f"{where}: keyword-only parameter {param.name!r} has no default; a stage "
                "receives only its input and, optionally, the ExecutionContext"
            )
    if not positional:
        raise HandlerDefinitionError(
            f"{where}: a stage takes its input as the first parameter, e.g. "
            "def handler(orders: list[Order], ctx: ExecutionContext) -> list[Scored]"
        )
    required_extra = [p for p in positional[2:] if p.default is p.empty]
    if required_extra:
        raise HandlerDefinitionError(
            f"{where}: takes required parameters {[p.name for p in required_extra]} beyond "
            "the input and the ExecutionContext"
        )
    data_param = positional[0]
    pass_context = len(positional) >= 2
    if pass_context:
        _check_context_annotation(positional[1], where)

    if input_model is UNSET:
        if data_param.annotation is data_param.empty:
            raise HandlerDefinitionError(
                f"{where}: parameter {data_param.name!r} has no annotation; annotate it with "
                "the input model or pass input_model="
            )
        input_model = data_param.annotation
    if output_model is UNSET:
        if signature.return_annotation is signature.empty:
            raise HandlerDefinitionError(
                f"{where}: has no return annotation; annotate it with the output model "
                "(-> None for no output) or pass output_model="
            )
        output_model = signature.return_annotation
    if output_model is None:
        output_model = type(None)

    input_item = stream_item(input_model)
    output_item = stream_item(output_model)
    return StageSpec(
        fn=fn,
        input_model=input_model,
        output_model=output_model,
        input_adapter=_adapter(_records_model(input_model, input_item), where),
        output_adapter=_adapter(_records_model(output_model, output_item), where),
        pass_context=pass_context,
        input_is_list=is_list_model(input_model),
        output_is_list=is_list_model(output_model) or output_item is not UNSET,
        input_item=input_item,
        output_item=output_item,
    )


def _records_model(model: Any, item: Any) -> Any:
    """A streamed model (``Iterable[X]``) is validated record by record as ``list[X]``."""
    return model if item is UNSET else list.__class_getitem__(item)


def _adapter(model: Any, where: str) -> TypeAdapter[Any]:
    try:
        return adapter_for(model)
    except HandlerDefinitionError as exc:
        raise HandlerDefinitionError(f"{where}: {exc.detail}") from exc.__cause__


def _check_context_annotation(param: inspect.Parameter, where: str) -> None:
    from ._context import ExecutionContext

    annotation = param.annotation
    if annotation in (param.empty, Any, object) or (
        isinstance(annotation, type) and issubclass(ExecutionContext, annotation)
    ):
        return
    raise HandlerDefinitionError(
        f"{where}: the second parameter {param.name!r} receives the ExecutionContext but is "
        f"annotated {model_name(annotation)}"
    )


class _AllWritten(GenerateJsonSchema):
    """Serialization schemas in which every field is required: a stage writes all of them."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        """In serialization mode a field is written unless it is excluded."""
        if self.mode == "serialization":
            return not field.get("serialization_exclude")
        return super().field_is_required(field, total)


def writer_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The JSON Schema of what ``adapter``'s model writes (every field present, by alias).

    >>> from pydantic import BaseModel
    >>> class M(BaseModel):
    ...     a: int = 0
    >>> writer_schema(TypeAdapter(M))["required"]
    ['a']
    """
    return adapter.json_schema(mode="serialization", by_alias=True, schema_generator=_AllWritten)


def schema_fingerprint(model: Any) -> str:
    """16 hex digits of the SHA-256 of a model's canonical written JSON Schema.

    Two models with the same fingerprint write the same shape; a changed field, type, alias or
    constraint changes it. Stored in each output's metadata under :data:`FINGERPRINT_KEY`.

    >>> schema_fingerprint(list[int]) == schema_fingerprint(list[int]) != schema_fingerprint(int)
    True
    """
    adapter: TypeAdapter[Any]
    if hasattr(model, "validate_json") and hasattr(model, "core_schema"):
        adapter = model
    else:  # a streamed model (Iterable[X]) writes what list[X] writes
        adapter = adapter_for(_records_model(model, stream_item(model)))
    canonical = orjson.dumps(writer_schema(adapter), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


def drift(stored_metadata: Mapping[str, str], model: Any) -> str | None:
    """Whether a stored output was written by another model than ``model`` (the code's now).

    Args:
        stored_metadata: The output object's metadata (``StoredObject.metadata``).
        model: The writing stage's output model as the code has it now (e.g.
            ``handler.spec.output_model``).

    Returns:
        A sentence saying so, or None when the fingerprints agree or the output carries none
        (written before fingerprints, or not by ceap-stage).

    >>> drift({"ceap-schema": "list[str]", "ceap-schema-fingerprint": "0123456789abcdef"},
    ...       list[int])  # doctest: +ELLIPSIS
    'written by model list[str] (fingerprint 0123456789abcdef); the code now has list[int] (...)'
    >>> print(drift({"ceap-schema": "list[int]", "ceap-schema-fingerprint": "0123456789abcdef"},
    ...             list[int]))  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    written by another version of model list[int] (fingerprint 0123456789abcdef): the code's
    list[int] has fingerprint ... (a field added, removed, renamed or retyped)
    """
    stored = stored_metadata.get(FINGERPRINT_KEY)
    if not stored:
        return None
    now = schema_fingerprint(model)
    if stored == now:
        return None
    label = stored_metadata.get(SCHEMA_KEY, "an unnamed model")
    name = model_name(model)
    if label == name:  # same name, so say what differs: the model's fields
        return (
            f"written by another version of model {label} (fingerprint {stored}): the code's "
            f"{name} has fingerprint {now} (a field added, removed, renamed or retyped)"
        )
    return (
        f"written by model {label} (fingerprint {stored}); the code now has {name} "
        f"(fingerprint {now})"
    )


def written_by(stored_metadata: Mapping[str, str]) -> str:
    """What a stored output says of the model that wrote it, for an input error's message.

    >>> written_by({"ceap-schema": "list[Order]", "ceap-schema-fingerprint": "0123456789abcdef"})
    '; it was written by model list[Order] (fingerprint 0123456789abcdef)'
    >>> written_by({})
    ''
    """
    fingerprint = stored_metadata.get(FINGERPRINT_KEY)
    if not fingerprint:
        return ""
    label = stored_metadata.get(SCHEMA_KEY, "an unnamed model")
    return f"; it was written by model {label} (fingerprint {fingerprint})"
