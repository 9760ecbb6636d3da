"""The two ways to declare a stage: the ``@stage`` decorator and ``WorkflowLambdaHandler``."""

from __future__ import annotations

import functools
import typing
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from ._context import ExecutionContext, validate_identifier
from ._errors import ContextResolutionError, HandlerDefinitionError
from ._io import DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_MAX_SINGLE_OBJECT_BYTES, DEFAULT_PART_BYTES
from ._models import ON_INVALID_RECORD, UNSET, OnInvalidRecord, StageSpec, resolve
from ._observability import Observer, default_observer
from ._runtime import OutputFormat, StageRuntime
from ._settings import Settings
from ._store import Store

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

__all__ = ["StageHandler", "WorkflowLambdaHandler", "stage"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
F = TypeVar("F", bound=Callable[..., Any])

_FORMATS = ("json", "jsonl")


def _check_options(spec: StageSpec, name: str | None, output_format: str, where: str) -> None:
    if name is not None:
        try:
            validate_identifier(name, "name")
        except ContextResolutionError as exc:
            raise HandlerDefinitionError(
                f"{where}: the stage name is unusable: {exc.detail}"
            ) from None
    if output_format not in _FORMATS:
        raise HandlerDefinitionError(
            f"{where}: output_format must be one of {_FORMATS}, not {output_format!r}"
        )
    if output_format == "jsonl" and not spec.output_is_list:
        raise HandlerDefinitionError(
            f"{where}: output_format='jsonl' writes one record per line and needs a list-like "
            "output model"
        )


def _check_on_invalid_record(value: object, where: str) -> None:
    if value not in ON_INVALID_RECORD:
        raise HandlerDefinitionError(
            f"{where}: on_invalid_record must be one of {ON_INVALID_RECORD}, not {value!r}"
        )


def _check_sizes(
    max_single_object_bytes: object, part_bytes: object, max_document_bytes: object, where: str
) -> None:
    for option, value in (
        ("max_single_object_bytes", max_single_object_bytes),
        ("part_bytes", part_bytes),
        ("max_document_bytes", max_document_bytes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HandlerDefinitionError(f"{where}: {option} must be a positive number of bytes")


class StageHandler:
    """A Lambda entry point made by :func:`stage`: call it as ``handler(event, lambda_context)``.

    The undecorated function stays reachable as ``handler.fn`` (and ``handler.__wrapped__``) for
    unit tests.
    """

    fn: Callable[..., Any]
    spec: StageSpec
    runtime: StageRuntime

    def __init__(self, spec: StageSpec, runtime: StageRuntime) -> None:
        self.fn = spec.fn
        self.spec = spec
        self.runtime = runtime
        functools.update_wrapper(self, spec.fn)

    def __call__(self, event: Any, lambda_context: Any = None) -> dict[str, Any]:
        """Run the stage for one Step Functions event and return the result pointer."""
        return self.runtime.invoke(event, lambda_context)

    def __repr__(self) -> str:
        return f"<stage {self.runtime.name or self.fn.__qualname__}>"


@overload
def stage(fn: Callable[..., Any], /) -> StageHandler: ...


@overload
def stage(
    *,
    name: str | None = None,
    input_model: Any = UNSET,
    output_model: Any = UNSET,
    store: Store | None = None,
    bucket: str | None = None,
    output_format: OutputFormat = "json",
    write_once: bool = False,
    observer: Observer | None = None,
    logger: Logger | None = None,
    max_single_object_bytes: int = DEFAULT_MAX_SINGLE_OBJECT_BYTES,
    part_bytes: int = DEFAULT_PART_BYTES,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    on_invalid_record: OnInvalidRecord = "fail",
) -> Callable[[Callable[..., Any]], StageHandler]: ...


def stage(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    input_model: Any = UNSET,
    output_model: Any = UNSET,
    store: Store | None = None,
    bucket: str | None = None,
    output_format: OutputFormat = "json",
    write_once: bool = False,
    observer: Observer | None = None,
    logger: Logger | None = None,
    max_single_object_bytes: int = DEFAULT_MAX_SINGLE_OBJECT_BYTES,
    part_bytes: int = DEFAULT_PART_BYTES,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    on_invalid_record: OnInvalidRecord = "fail",
) -> StageHandler | Callable[[Callable[..., Any]], StageHandler]:
    """Turn a typed function into a Step Functions stage (a Lambda entry point).

    The input model is the first parameter's annotation and the output model the return
    annotation, resolved once, here; a second parameter receives the :class:`ExecutionContext`.

    Args:
        fn: The stage function (when used bare, as ``@stage``).
        name: Pin the handler to this stage name: events for another stage are refused, and an
            event without ``currentStage`` uses it.
        input_model: The input model, instead of the first parameter's annotation.
        output_model: The output model, instead of the return annotation.
        store: Where outputs live (default: ``CEAP_STORE``, else S3).
        bucket: Pin the handler to this bucket (default: ``CEAP_WORKFLOW_BUCKET``).
        output_format: ``"json"`` (default) or ``"jsonl"`` for a list output as JSON Lines.
        write_once: Never overwrite: identical existing output counts as done, a different
            one raises :class:`OutputConflictError`.
        observer: Replace the default logging, tracing and metrics.
        logger: A Powertools ``Logger`` of your own for the stage's log lines (default: one for
            ``POWERTOOLS_SERVICE_NAME``); see docs/observability.md.
        max_single_object_bytes: A list output whose encoding is larger than this (default
            64 MiB) is written as JSON Lines parts + a manifest; see docs/reliability.md.
        part_bytes: The size of each part (default 8 MiB); also the most an ``Iterator[X]``
            output buffers before it is written as parts.
        max_document_bytes: When the event asks for one JSON document (``"outputFormat":
            "json"``, sent to the stage before a Kotlin CEAP stage), the most it may hold
            (default 256 MiB); a larger output is an :class:`OutputValidationError`.
        on_invalid_record: For a first stage fed a queue batch: ``"fail"`` (default; one
            invalid record fails the batch) or ``"reject"`` (invalid records are left out,
            listed in ``rejected.jsonl`` and returned to the queue); see docs/batches.md.

    Raises:
        HandlerDefinitionError: The signature, a model or an option is unusable.

    Example:
        >>> from pydantic import BaseModel
        >>> from ceap_stage import ExecutionContext, stage
        >>> class Order(BaseModel):
        ...     order_id: str
        ...     amount: float
        >>> @stage
        ... def handler(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        ...     return [o for o in orders if o.amount > 10]
        >>> handler.fn([Order(order_id="a", amount=12.5)], None)
        [Order(order_id='a', amount=12.5)]
    """

    def decorate(func: Callable[..., Any]) -> StageHandler:
        where = f"@stage {getattr(func, '__qualname__', func)!r}"
        spec = resolve(func, input_model=input_model, output_model=output_model, owner=where)
        _check_options(spec, name, output_format, where)
        _check_sizes(max_single_object_bytes, part_bytes, max_document_bytes, where)
        _check_on_invalid_record(on_invalid_record, where)
        runtime = StageRuntime(
            spec,
            name=name,
            store=store,
            bucket=bucket,
            output_format=output_format,
            write_once=write_once,
            observer=_observer_option(observer, logger, where),
            max_single_object_bytes=max_single_object_bytes,
            part_bytes=part_bytes,
            max_document_bytes=max_document_bytes,
            on_invalid_record=on_invalid_record,
        )
        return StageHandler(spec, runtime)

    if fn is None:
        return decorate
    return decorate(fn)


class WorkflowLambdaHandler(Generic[InT, OutT]):
    """Base class for a stage written as a class; instances are Lambda entry points.

    Subclass it with the input and output models as generic parameters and implement
    :meth:`process`. Class attributes ``name``, ``input_model``, ``output_model``,
    ``output_format``, ``write_once``, ``max_single_object_bytes``, ``part_bytes``,
    ``max_document_bytes`` and ``on_invalid_record`` set options; explicit models win over the
    generic parameters, which win over ``process``'s annotations. Models are resolved when the
    subclass is created; an unusable one raises :class:`HandlerDefinitionError` then.

    Example:
        >>> from pydantic import BaseModel
        >>> from ceap_stage import ExecutionContext, WorkflowLambdaHandler
        >>> class Order(BaseModel):
        ...     amount: float
        >>> class Total(BaseModel):
        ...     total: float
        >>> class SumStage(WorkflowLambdaHandler[list[Order], Total]):
        ...     def process(self, data: list[Order], ctx: ExecutionContext) -> Total:
        ...         return Total(total=sum(o.amount for o in data))
        >>> handler = SumStage()  # Lambda handler: module.handler
        >>> handler.process([Order(amount=2), Order(amount=3)], None)
        Total(total=5.0)
    """

    name: ClassVar[str | None] = None
    input_model: ClassVar[Any] = UNSET
    output_model: ClassVar[Any] = UNSET
    output_format: ClassVar[OutputFormat] = "json"
    write_once: ClassVar[bool] = False
    max_single_object_bytes: ClassVar[int] = DEFAULT_MAX_SINGLE_OBJECT_BYTES
    part_bytes: ClassVar[int] = DEFAULT_PART_BYTES
    max_document_bytes: ClassVar[int] = DEFAULT_MAX_DOCUMENT_BYTES
    on_invalid_record: ClassVar[OnInvalidRecord] = "fail"
    _spec: ClassVar[StageSpec | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls.process, "__isabstractmethod__", False):
            return  # an intermediate base class: resolved in its concrete subclasses
        where = f"{cls.__qualname__}.process"
        generic_in, generic_out = _generic_models(cls)
        input_model = cls.input_model if cls.input_model is not UNSET else generic_in
        output_model = cls.output_model if cls.output_model is not UNSET else generic_out
        spec = resolve(
            # Unbound: the first parameter is self. Resolve on a view without it.
            _without_self(cls.process),
            input_model=input_model,
            output_model=output_model,
            owner=where,
        )
        _check_options(spec, cls.name, cls.output_format, where)
        _check_sizes(cls.max_single_object_bytes, cls.part_bytes, cls.max_document_bytes, where)
        _check_on_invalid_record(cls.on_invalid_record, f"{cls.__qualname__}")
        cls._spec = spec

    def __init__(
        self,
        *,
        store: Store | None = None,
        bucket: str | None = None,
        observer: Observer | None = None,
        logger: Logger | None = None,
    ) -> None:
        spec = type(self)._spec
        if spec is None:
            raise HandlerDefinitionError(
                f"{type(self).__qualname__} does not implement process(data, ctx)"
            )
        # The class's resolved spec, calling this instance's bound method.
        bound = spec._replace(fn=self.process)
        self.runtime = StageRuntime(
            bound,
            name=self.name,
            store=store,
            bucket=bucket,
            output_format=self.output_format,
            write_once=self.write_once,
            observer=_observer_option(observer, logger, type(self).__qualname__),
            max_single_object_bytes=self.max_single_object_bytes,
            part_bytes=self.part_bytes,
            max_document_bytes=self.max_document_bytes,
            on_invalid_record=self.on_invalid_record,
        )

    @abstractmethod
    def process(self, data: InT, ctx: ExecutionContext) -> OutT:
        """Turn the validated input into the output. Raise to fail the stage."""

    def __call__(self, event: Any, lambda_context: Any = None) -> dict[str, Any]:
        """Run the stage for one Step Functions event and return the result pointer."""
        return self.runtime.invoke(event, lambda_context)


def _observer_option(
    observer: Observer | None, logger: Logger | None, where: str
) -> Observer | Callable[[Settings], Observer] | None:
    """The runtime's ``observer``: built with the settings when only a logger is given."""
    if logger is None:
        return observer
    if observer is not None:
        raise HandlerDefinitionError(f"{where}: pass observer= or logger=, not both")
    return functools.partial(default_observer, logger=logger)


def _generic_models(cls: type) -> tuple[Any, Any]:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, WorkflowLambdaHandler):
                args = typing.get_args(base)
                if len(args) == 2:
                    return (_concrete(args[0]), _concrete(args[1]))
    return UNSET, UNSET


def _concrete(arg: Any) -> Any:
    return UNSET if isinstance(arg, TypeVar) else arg


def _without_self(method: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in whose signature is ``method``'s without its first parameter."""
    import inspect

    try:
        signature = inspect.signature(method, eval_str=True)
    except Exception:
        return method  # resolve() reports the problem with a clear message
    params = list(signature.parameters.values())[1:]

    def view(*args: Any, **kwargs: Any) -> Any:  # never called
        raise NotImplementedError

    view.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    view.__qualname__ = getattr(method, "__qualname__", "process")
    return view
