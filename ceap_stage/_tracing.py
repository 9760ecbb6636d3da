"""Tracing behind a provider: X-Ray (through Powertools' Tracer), OpenTelemetry, or off.

A :class:`TracingProvider` makes spans; the observer asks it for one span per invocation, named
after the stage, and one child span per step (``read_input``, ``process``, ``write_output``),
with the attributes ``ceap.execution_id``, ``ceap.stage`` and ``ceap.records``. An exception
leaving a span is recorded on it by its class name only (a message may quote payload values).

Which provider: ``CEAP_TRACER`` (``xray``, ``otel``, ``off``; resolved in ``_settings``) or an
argument; :func:`tracing_provider` maps the name to a provider. This module imports neither
X-Ray nor OpenTelemetry: :class:`XRayTracing` imports Powertools' ``Tracer`` (and so
``aws_xray_sdk``) at the first invocation that carries a trace header, and
:class:`OpenTelemetryTracing` imports ``opentelemetry`` when it is built.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from ._errors import ConfigurationError
from ._settings import lambda_trace_id

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

__all__ = [
    "AttributeValue",
    "NoTracing",
    "OpenTelemetryTracing",
    "Span",
    "TracingProvider",
    "XRayTracing",
    "tracing_provider",
]

#: The value of a span attribute.
AttributeValue: TypeAlias = str | bool | int | float


class Span(Protocol):
    """What a provider's span offers the observer (an OpenTelemetry span is one as it is).

    Example:
        >>> class PrintSpan:
        ...     def set_attribute(self, key, value):
        ...         print(key, value)
        >>> span: Span = PrintSpan()
        >>> span.set_attribute("ceap.records", 3)
        ceap.records 3
    """

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (``ceap.records``...)."""


class TracingProvider(ABC):
    """Makes spans. One method; an implementation is a few lines.

    ``span`` returns a context manager: the span is the current one while the block runs (so
    spans opened inside it, and traced AWS calls, are its children); an exception leaving the
    block is recorded on the span (by class name only) and propagates.

    Example:
        >>> import contextlib
        >>> class PrintTracing(TracingProvider):
        ...     @contextlib.contextmanager
        ...     def span(self, name, attributes):
        ...         print("start", name, attributes["ceap.stage"])
        ...         yield NoTracing.SPAN
        ...         print("end", name)
        >>> with PrintTracing().span("Score", {"ceap.stage": "Score"}):
        ...     pass
        start Score Score
        end Score
    """

    @abstractmethod
    def span(
        self, name: str, attributes: Mapping[str, AttributeValue]
    ) -> contextlib.AbstractContextManager[Span]:
        """A span named ``name``, child of the current span, with ``attributes``."""

    def prepare(self) -> None:  # noqa: B027  (an optional hook: doing nothing is the default)
        """Build now what the first span would build (called before a SnapStart snapshot)."""


class _NullSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass


class NoTracing(TracingProvider):
    """No spans (``CEAP_TRACER=off``).

    Example:
        >>> with NoTracing().span("Score", {}) as span:
        ...     span.set_attribute("ceap.records", 3)
    """

    #: The span every block gets: it keeps nothing.
    SPAN: Span = _NullSpan()
    _CONTEXT: contextlib.nullcontext[Span] = contextlib.nullcontext(SPAN)

    def span(
        self, name: str, attributes: Mapping[str, AttributeValue]
    ) -> contextlib.AbstractContextManager[Span]:
        return self._CONTEXT


class _XRaySpan:
    __slots__ = ("subsegment",)

    def __init__(self, subsegment: Any) -> None:
        self.subsegment = subsegment

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.subsegment.put_annotation(xray_key(key), value)


def xray_key(key: str) -> str:
    """The X-Ray annotation key of an attribute: X-Ray keys hold no dots, and the ``ceap.``
    prefix goes (``ceap.execution_id`` is ``annotation.execution_id`` in a filter expression).

    Example:
        >>> xray_key("ceap.execution_id")
        'execution_id'
    """
    return key.removeprefix("ceap.").replace(".", "_")


class XRayTracing(TracingProvider):
    """AWS X-Ray subsegments through Powertools' ``Tracer`` (the default inside Lambda).

    Spans are made only when the invocation carries a trace header (``_X_AMZN_TRACE_ID``, set
    by Lambda when the function has active tracing); without one, nothing of X-Ray is imported.
    At the first traced invocation it builds a Powertools ``Tracer`` (``auto_patch=False``) and
    patches botocore only, so S3 calls are traced AWS calls nested in the step that made them.
    Each span is a subsegment; attributes are annotations (see :func:`xray_key`); an exception
    sets the fault flag and the annotation ``error`` (its class name).

    Needs ``aws-xray-sdk`` (``pip install 'ceap-stage[tracing]'``); without it, no spans, and
    ``on_unavailable`` is told once.

    Args:
        tracer: A Powertools ``Tracer`` of your own (default: one built at first use).
        on_unavailable: Called once with a message when ``aws-xray-sdk`` is not installed.

    Example:
        >>> with XRayTracing().span("Score", {"ceap.stage": "Score"}) as span:
        ...     pass  # outside Lambda: no trace header, so no subsegment
    """

    def __init__(
        self,
        *,
        tracer: Tracer | None = None,
        on_unavailable: Callable[[str], None] | None = None,
    ) -> None:
        self._tracer = tracer
        self._recorder: Any = None
        self._unavailable = False
        self._on_unavailable = on_unavailable
        self._lock = threading.Lock()

    @staticmethod
    def installed() -> bool:
        """Whether ``aws_xray_sdk`` can be imported (checked without importing it)."""
        import importlib.util

        return importlib.util.find_spec("aws_xray_sdk") is not None

    def span(
        self, name: str, attributes: Mapping[str, AttributeValue]
    ) -> contextlib.AbstractContextManager[Span]:
        if self._unavailable or not lambda_trace_id():
            return NoTracing._CONTEXT
        recorder = self._recorder
        if recorder is None:
            with self._lock:  # concurrent first invocations build one Tracer
                recorder = self._recorder or self._start()
        if recorder is None:
            return NoTracing._CONTEXT
        return self._subsegment(recorder, name, attributes)

    def prepare(self) -> None:
        """Build the Powertools ``Tracer`` and patch botocore now, not at the first traced call.

        Called before a SnapStart snapshot: importing the X-Ray SDK (about 0.2 s of CPU) is then
        in the snapshot. An ordinary init does not call it, because a function without active
        tracing would pay that cost for nothing (whether invocations carry a trace header is not
        known before the first one).
        """
        if self._recorder is None and not self._unavailable:
            with self._lock:
                if self._recorder is None:
                    self._start()

    def _start(self) -> Any:
        if self._tracer is None:
            if not self.installed():
                self._unavailable = True
                if self._on_unavailable is not None:
                    self._on_unavailable(
                        "tracing is off: aws_xray_sdk is not installed "
                        "(pip install 'ceap-stage[tracing]')"
                    )
                return None
            from aws_lambda_powertools import Tracer

            # disabled=False: whether to trace was decided by the settings (CEAP_TRACER,
            # POWERTOOLS_TRACE_DISABLED, AWS_SAM_LOCAL), and there is a trace header.
            self._tracer = Tracer(disabled=False, auto_patch=False)
            self._tracer.patch(("botocore",))  # S3 calls become traced AWS calls
        self._recorder = self._tracer.provider
        return self._recorder

    @staticmethod
    @contextlib.contextmanager
    def _subsegment(
        recorder: Any, name: str, attributes: Mapping[str, AttributeValue]
    ) -> Iterator[Span]:
        subsegment = recorder.begin_subsegment(name)
        if subsegment is None:  # no segment to attach to (X-Ray's context_missing)
            yield NoTracing.SPAN
            return
        span = _XRaySpan(subsegment)
        for key, value in attributes.items():
            span.set_attribute(key, value)
        try:
            yield span
        except BaseException as exc:
            # The class name only: a user's exception message may quote payload values.
            subsegment.add_fault_flag()
            subsegment.put_annotation("error", type(exc).__name__)
            raise
        finally:
            recorder.end_subsegment()


class OpenTelemetryTracing(TracingProvider):
    """OpenTelemetry spans, through whatever global ``TracerProvider`` the application set.

    That is the ADOT Lambda layer's (``AWS_LAMBDA_EXEC_WRAPPER=/opt/otel-instrument``), or one
    you configured yourself with the OpenTelemetry SDK; until one is set, spans are
    OpenTelemetry's no-op spans. The invocation's span is a child of the current span (e.g. the
    layer's span for the Lambda invocation). An exception sets the span's status to ERROR with
    its class name, the attribute ``error.type`` and an ``exception`` event with
    ``exception.type`` only (no message, no stack trace: they may quote payload values).

    Needs ``opentelemetry-api`` (``pip install 'ceap-stage[otel]'``); ``opentelemetry`` is
    imported when this provider is built, never by ``import ceap_stage``.

    Args:
        tracer_provider: A ``TracerProvider`` to use instead of the global one.

    Raises:
        ConfigurationError: ``opentelemetry-api`` is not installed.

    Example:
        >>> with OpenTelemetryTracing().span("Score", {"ceap.stage": "Score"}) as span:
        ...     span.set_attribute("ceap.records", 3)
    """

    def __init__(self, *, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.trace import Status, StatusCode
        except ImportError:
            raise ConfigurationError(
                "CEAP_TRACER=otel needs OpenTelemetry: pip install 'ceap-stage[otel]'"
            ) from None
        from . import __version__

        self._tracer = trace.get_tracer("ceap_stage", __version__, tracer_provider)
        self._error = Status
        self._code = StatusCode.ERROR

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[Span]:
        with self._tracer.start_as_current_span(
            name, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except BaseException as exc:
                kind = type(exc).__name__
                span.set_status(self._error(self._code, kind))
                span.set_attribute("error.type", kind)
                span.add_event("exception", {"exception.type": kind})
                raise


def tracing_provider(
    choice: str, *, on_unavailable: Callable[[str], None] | None = None
) -> TracingProvider | None:
    """The provider for a ``CEAP_TRACER`` value (None for ``off``).

    Raises:
        ConfigurationError: ``choice`` is none of ``xray``, ``otel``, ``off``, or ``otel``
            without OpenTelemetry installed.

    Example:
        >>> tracing_provider("off") is None, type(tracing_provider("xray")).__name__
        (True, 'XRayTracing')
    """
    if choice == "off":
        return None
    if choice == "xray":
        return XRayTracing(on_unavailable=on_unavailable)
    if choice == "otel":
        return OpenTelemetryTracing()
    raise ConfigurationError(f"tracer must be one of off, otel, xray, not {choice!r}")
