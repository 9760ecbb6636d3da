"""Hooks through which the runtime reports an invocation, and the parts that log, measure, trace.

The runtime calls an :class:`Observer` at fixed points and never formats a log line itself, so
that what is logged, traced and measured lives in one place. The default observer,
:class:`StageObserver`, composes three separable parts behind small interfaces:

- :class:`Logs`: the log lines (``ceap_stage._powertools.PowertoolsLogs``, a Powertools
  ``Logger``),
- :class:`Metrics`: one metric document per invocation
  (``ceap_stage._powertools.EmfMetrics``, CloudWatch EMF),
- :class:`~ceap_stage._tracing.TracingProvider`: spans (X-Ray, OpenTelemetry or off).

What an invocation needs between hooks (its flags, its open span) lives in a per-invocation
object held by a context variable, never on the observer, which every invocation of a handler
shares (the local runner runs stages in threads).

Log lines and metric documents go to the current :class:`Sink` (stdout by default);
:func:`capture` swaps in a :class:`Capture` for a block (``ceap_stage.testing``).

This module is imported with ``ceap_stage`` and stays light (standard library only);
:func:`default_observer` imports the Powertools side at a handler's first invocation.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import CeapStageError

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from ._context import ExecutionContext
    from ._settings import Settings, TracerChoice
    from ._tracing import AttributeValue, Span, TracingProvider

__all__ = [
    "Capture",
    "InvocationStats",
    "Logs",
    "Metrics",
    "Observer",
    "Sink",
    "StageObserver",
    "capture",
    "current_sink",
    "default_observer",
    "elapsed_ms",
    "use_sink",
]

_NULL_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
# The ``logging`` levels (not imported here: this module is on the import path of ceap_stage).
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_MAX_MESSAGE = 512
#: The ``workflow`` metric dimension when the event carries no ``workflowName``.
UNKNOWN = "unknown"
# Keys an invocation binds to every log line (and removes afterwards).
INVOCATION_KEYS = (
    "execution_id",
    "stage",
    "previous_stage",
    "workflow",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
)


@dataclass(slots=True)
class InvocationStats:
    """Facts about one invocation: ids, keys, sizes and durations. Never payload content.

    Example:
        >>> stats = InvocationStats(records=3)
        >>> stats.records, stats.output_key
        (3, None)
    """

    input_key: str | None = None
    input_bytes: int = 0
    input_format: str | None = None
    read_ms: float = 0.0
    records: int = 0
    output_key: str | None = None
    output_bytes: int = 0
    output_format: str | None = None
    write_ms: float = 0.0
    process_ms: float = 0.0
    total_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), for InvocationStats.

    >>> import time
    >>> elapsed_ms(time.perf_counter()) < 1000.0
    True
    """
    return round((time.perf_counter() - started) * 1000.0, 3)


class Observer:
    """The hooks the runtime calls; this base does nothing at all.

    Pass an instance as ``@stage(observer=...)`` to replace the default (a
    :class:`StageObserver` of Powertools logs, EMF metrics and the ``CEAP_TRACER`` provider),
    e.g. to silence a stage in a benchmark, or subclass it to report elsewhere. An observer is
    shared by every invocation of a handler, possibly from several threads at once: keep what
    one invocation needs between hooks in a context variable or in the ``ctx`` it is given,
    never on ``self``.

    The runtime calls, in order: :meth:`bind`, :meth:`started`, :meth:`span` around each of
    ``read_input``, ``process`` and ``write_output``, then :meth:`finished` or :meth:`failed`
    (exactly one of the two, also when ``bind`` was never reached).

    Example:
        >>> from ceap_stage import stage
        >>> @stage(observer=Observer())
        ... def quiet(data: dict) -> dict:
        ...     return data
    """

    #: The logger handed to stages as ``ExecutionContext.logger`` (None: no logger).
    logger: Any = None

    def prepare(self) -> None:
        """Load now what the first invocation would otherwise load (e.g. a tracer).

        Called before a SnapStart snapshot (where what it loads costs nothing on restore), never
        outside Lambda. Best effort: an exception here is ignored.
        """

    def bind(self, ctx: ExecutionContext, lambda_context: Any) -> ExecutionContext:
        """Called first; returns the context handed to the stage (e.g. with a bound logger)."""
        return ctx

    def started(self, ctx: ExecutionContext) -> None:
        """The invocation resolved its context and is about to read its input."""

    def span(self, name: str, ctx: ExecutionContext) -> contextlib.AbstractContextManager[object]:
        """A traced step: ``read_input``, ``process`` or ``write_output``."""
        return _NULL_SPAN

    def finished(self, ctx: ExecutionContext, stats: InvocationStats) -> None:
        """The output is written."""

    def failed(
        self, ctx: ExecutionContext | None, error: BaseException, stats: InvocationStats
    ) -> None:
        """The invocation raises ``error`` after this returns (``ctx`` is None when the event
        itself was refused)."""

    def debug(self, ctx: ExecutionContext, message: str, **facts: Any) -> None:
        """A finer step, for DEBUG level."""


# -- the parts ---------------------------------------------------------------------------------


class Logs(ABC):
    """The log part of a :class:`StageObserver`: writes lines with per-invocation keys.

    ``bind`` and ``unbind`` must keep the keys per thread (or context): invocations of one
    handler may run at once.

    Example:
        >>> class PrintLogs(Logs):
        ...     def bind(self, keys): self.keys = dict(keys)
        ...     def unbind(self): self.keys = {}
        ...     def enabled(self, level): return True
        ...     def log(self, level, message, facts):
        ...         print(message, self.keys["stage"], facts.get("records"))
        >>> logs = PrintLogs()
        >>> logs.bind({"stage": "Score"}); logs.log(20, "stage finished", {"records": 2})
        stage finished Score 2
    """

    #: Handed to stages as ``ExecutionContext.logger``.
    logger: Any = None

    @abstractmethod
    def bind(self, keys: Mapping[str, Any]) -> None:
        """Add ``keys`` to every line written until :meth:`unbind` (this thread only)."""

    @abstractmethod
    def unbind(self) -> None:
        """Remove the keys :meth:`bind` added."""

    @abstractmethod
    def enabled(self, level: int) -> bool:
        """Whether a line at ``level`` (``INFO``...) would be written."""

    @abstractmethod
    def log(self, level: int, message: str, facts: Mapping[str, Any]) -> None:
        """Write one line: ``message`` with the bound keys and ``facts``."""

    def warning(self, message: str) -> None:
        """Write a warning about ceap-stage itself (not about an invocation)."""
        self.log(WARNING, message, {})


class Metrics(ABC):
    """The metric part of a :class:`StageObserver`: one record per invocation.

    Example:
        >>> class CountFailures(Metrics):
        ...     failures = 0
        ...     def record(self, workflow, stage, stats, *, failed):
        ...         self.failures += failed
        >>> m = CountFailures(); m.record("flow", "Score", InvocationStats(), failed=True)
        >>> m.failures
        1
    """

    @abstractmethod
    def record(
        self, workflow: str | None, stage: str, stats: InvocationStats, *, failed: bool
    ) -> None:
        """Record one invocation of ``stage`` (``workflow`` None: the event named none)."""


# -- the sink: where lines and metric documents go ------------------------------------------


class Sink:
    """Where the log lines and metric documents of invocations go; this one: stdout.

    The current sink is held by a context variable: :func:`use_sink` swaps it for a block (and
    thread), which is how :func:`capture` (and ``ceap_stage.testing.capture_logs``) collects
    what stages write. Subclass it to send lines elsewhere.

    Example:
        >>> Sink().write_log('{"message": "stage started"}')
        {"message": "stage started"}
    """

    def write_log(self, line: str, *, written: bool = False) -> None:
        """One log line (JSON text). ``written``: the logger's own handler already wrote it
        (an author's ``Logger``), so a sink that writes lines leaves it alone."""
        if not written:
            out = sys.stdout
            out.write(line + "\n")
            out.flush()

    def write_metrics(self, document: Mapping[str, Any]) -> None:
        """One metric document (an EMF object), as one JSON line."""
        import orjson

        sys.stdout.write(orjson.dumps(document).decode() + "\n")


_STDOUT = Sink()
_SINK: ContextVar[Sink] = ContextVar("ceap_stage_sink", default=_STDOUT)
_S = TypeVar("_S", bound=Sink)


def current_sink() -> Sink:
    """The sink log lines and metric documents go to now (stdout unless swapped).

    Example:
        >>> type(current_sink()).__name__
        'Sink'
    """
    return _SINK.get()


@contextlib.contextmanager
def use_sink(sink: _S) -> Iterator[_S]:
    """Send the lines and metric documents of this block (and thread) to ``sink``.

    Example:
        >>> class Quiet(Sink):
        ...     def write_log(self, line, *, written=False): pass
        >>> with use_sink(Quiet()) as sink:
        ...     current_sink() is sink
        True
    """
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


@dataclass
class Capture(Sink):
    """A sink that keeps the log lines and metric documents, and passes them on.

    ``lines`` holds each log line exactly as written (JSON text); :attr:`records` parses them.
    ``metrics`` holds each metric document. Everything is passed on to ``outer`` (the sink
    that was current before: nested captures all see it, and stdout still gets it).

    Example:
        >>> captured = Capture(lines=['{"message": "stage started"}'])
        >>> captured.records
        [{'message': 'stage started'}]
    """

    lines: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    outer: Sink | None = field(default=None, repr=False)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The captured log lines as dicts."""
        import json

        return [json.loads(line) for line in self.lines]

    def write_log(self, line: str, *, written: bool = False) -> None:
        self.lines.append(line)
        if self.outer is not None:
            self.outer.write_log(line, written=written)

    def write_metrics(self, document: Mapping[str, Any]) -> None:
        self.metrics.append(dict(document))
        if self.outer is not None:
            self.outer.write_metrics(document)


@contextlib.contextmanager
def capture() -> Iterator[Capture]:
    """Collect the log lines and metrics of the stages invoked in this block (and thread).

    Lines still go to the sink that was current (stdout) as well. Used by
    :func:`ceap_stage.testing.run_stage` and :func:`ceap_stage.testing.capture_logs`.

    Example:
        >>> with capture() as captured:
        ...     pass  # invoke handlers here
        >>> captured.records
        []
    """
    with use_sink(Capture(outer=_SINK.get())) as captured:
        yield captured


# -- the composed observer -----------------------------------------------------------------


class _ColdStart:
    # Process-wide: the first invocation of any handler in this process is the cold start.
    value = True
    lock = threading.Lock()

    @classmethod
    def take(cls) -> bool:
        if not cls.value:
            return False
        with cls.lock:
            cold, cls.value = cls.value, False
            return cold


class _Invocation:
    """What one invocation carries between hooks (never stored on the shared observer)."""

    __slots__ = ("debug", "info", "root", "span", "token")

    def __init__(self) -> None:
        self.info = True
        self.debug = False
        self.root: contextlib.AbstractContextManager[Span] | None = None
        self.span: Span | None = None
        self.token: Token[_Invocation | None] | None = None


# The invocation in progress in this thread (or context); nested invocations stack.
_CURRENT: ContextVar[_Invocation | None] = ContextVar("ceap_stage_invocation", default=None)
_IDLE = _Invocation()


class StageObserver(Observer):
    """The default observer: logs, metrics and tracing as three separable parts.

    Each part is optional. Per invocation, the observer binds the invocation's keys to the
    logs, writes ``stage started`` and ``stage finished`` (or ``stage failed``) at INFO (ERROR),
    records one metric set, and opens one span named after the stage around the whole
    invocation, with a child span per step (``read_input``, ``process``, ``write_output``) and
    the attributes ``ceap.execution_id``, ``ceap.stage`` and, at the end, ``ceap.records``.

    Args:
        logs: The log part (None: no log lines).
        metrics: The metric part (None: no metrics).
        tracing: The tracing provider (None: no spans).

    Example:
        >>> from ceap_stage import stage
        >>> from ceap_stage.observability import OpenTelemetryTracing
        >>> @stage(observer=StageObserver(tracing=OpenTelemetryTracing()))
        ... def traced_only(data: dict) -> dict:
        ...     return data
    """

    def __init__(
        self,
        *,
        logs: Logs | None = None,
        metrics: Metrics | None = None,
        tracing: TracingProvider | None = None,
    ) -> None:
        self.logs = logs
        self.metrics = metrics
        self.tracing = tracing
        self.logger = logs.logger if logs is not None else None

    # -- the hooks ------------------------------------------------------------------------

    def prepare(self) -> None:
        if self.tracing is not None:
            self.tracing.prepare()

    def bind(self, ctx: ExecutionContext, lambda_context: Any) -> ExecutionContext:
        invocation = _Invocation()
        logs = self.logs
        if logs is not None:
            logs.bind(_keys(ctx, lambda_context))
            invocation.debug = logs.enabled(DEBUG)
            invocation.info = invocation.debug or logs.enabled(INFO)
        else:
            invocation.info = False
        invocation.token = _CURRENT.set(invocation)
        if self.tracing is not None:
            root = self.tracing.span(ctx.current_stage, _attributes(ctx))
            invocation.span = root.__enter__()
            invocation.root = root
        # The runtime builds the context with this observer's logger already in place.
        if ctx.logger is self.logger:
            return ctx
        import dataclasses

        return dataclasses.replace(ctx, logger=self.logger)

    def started(self, ctx: ExecutionContext) -> None:
        if self.logs is None or not (_CURRENT.get() or _IDLE).info:
            return
        if ctx.retry_count or ctx.redrive_count:
            facts = {"retry_count": ctx.retry_count, "redrive_count": ctx.redrive_count}
            self.logs.log(INFO, "stage started", facts)
        else:
            self.logs.log(INFO, "stage started", {})

    def span(self, name: str, ctx: ExecutionContext) -> contextlib.AbstractContextManager[object]:
        invocation = _CURRENT.get() or _IDLE
        if invocation.debug:
            return self._debug_span(name, ctx)
        if self.tracing is None:
            return _NULL_SPAN
        return self.tracing.span(name, _attributes(ctx))

    def finished(self, ctx: ExecutionContext, stats: InvocationStats) -> None:
        invocation = _CURRENT.get() or _IDLE
        try:
            if self.logs is not None and invocation.info:
                self.logs.log(
                    INFO,
                    "stage finished",
                    {
                        "input_key": stats.input_key,
                        "input_bytes": stats.input_bytes,
                        "input_format": stats.input_format,
                        "read_ms": stats.read_ms,
                        "records": stats.records,
                        "output_key": stats.output_key,
                        "output_bytes": stats.output_bytes,
                        "output_format": stats.output_format,
                        "write_ms": stats.write_ms,
                        "process_ms": stats.process_ms,
                        "total_ms": stats.total_ms,
                        **stats.extra,  # e.g. a fan-out's phase and shard
                    },
                )
            if self.metrics is not None:
                self.metrics.record(ctx.workflow_name, ctx.current_stage, stats, failed=False)
        finally:
            self._end(invocation, stats, None)

    def failed(
        self, ctx: ExecutionContext | None, error: BaseException, stats: InvocationStats
    ) -> None:
        # ctx None: bind() was never reached, so no invocation of this observer is current.
        invocation = (_CURRENT.get() or _IDLE) if ctx is not None else _IDLE
        stage = ctx.current_stage if ctx is not None else None
        workflow = ctx.workflow_name if ctx is not None else None
        if ctx is None and self.logs is not None:
            # The event was refused before bind(): log with what the error knows.
            keys: dict[str, Any] = {"cold_start": _ColdStart.take()}
            if isinstance(error, CeapStageError):
                if error.execution_id is not None:
                    keys["execution_id"] = error.execution_id
                if error.stage is not None:
                    keys["stage"] = stage = error.stage
            self.logs.bind(keys)
        try:
            if self.logs is not None:
                self.logs.log(ERROR, "stage failed", {**_describe(error, stats), **stats.extra})
            if self.metrics is not None:
                self.metrics.record(workflow, stage or UNKNOWN, stats, failed=True)
        finally:
            self._end(invocation, stats, error)

    def debug(self, ctx: ExecutionContext, message: str, **facts: Any) -> None:
        if self.logs is not None and self.logs.enabled(DEBUG):
            self.logs.log(DEBUG, message, facts)

    # -- helpers ----------------------------------------------------------------------------

    def _end(
        self, invocation: _Invocation, stats: InvocationStats, error: BaseException | None
    ) -> None:
        try:
            if invocation.root is not None:
                if invocation.span is not None and error is None:
                    invocation.span.set_attribute("ceap.records", stats.records)
                invocation.root.__exit__(
                    None if error is None else type(error),
                    error,
                    None if error is None else error.__traceback__,
                )
        finally:
            if self.logs is not None:
                self.logs.unbind()
            if invocation.token is not None:
                _CURRENT.reset(invocation.token)

    @contextlib.contextmanager
    def _debug_span(self, name: str, ctx: ExecutionContext) -> Iterator[object]:
        assert self.logs is not None
        self.logs.log(DEBUG, f"{name} started", {"step": name})
        with contextlib.ExitStack() as stack:
            if self.tracing is not None:
                stack.enter_context(self.tracing.span(name, _attributes(ctx)))
            yield None
        self.logs.log(DEBUG, f"{name} finished", {"step": name})


def _attributes(ctx: ExecutionContext) -> dict[str, AttributeValue]:
    return {"ceap.execution_id": ctx.execution_id, "ceap.stage": ctx.current_stage}


def _keys(ctx: ExecutionContext, lambda_context: Any) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "execution_id": ctx.execution_id,
        "stage": ctx.current_stage,
        "cold_start": _ColdStart.take(),
    }
    if ctx.previous_stage is not None:
        keys["previous_stage"] = ctx.previous_stage
    if ctx.workflow_name is not None:
        keys["workflow"] = ctx.workflow_name
    if lambda_context is not None:
        keys["function_request_id"] = getattr(lambda_context, "aws_request_id", None)
        keys["function_name"] = getattr(lambda_context, "function_name", None)
        keys["function_memory_size"] = getattr(lambda_context, "memory_limit_in_mb", None)
        keys["function_arn"] = getattr(lambda_context, "invoked_function_arn", None)
    return keys


def _describe(error: BaseException, stats: InvocationStats) -> dict[str, Any]:
    """The facts of a failure: class, message, key. No payload, no traceback."""
    facts: dict[str, Any] = {"error_type": type(error).__name__}
    if isinstance(error, CeapStageError):
        facts["error_message"] = error.detail[:_MAX_MESSAGE]
        facts["error_key"] = error.location
        facts["retryable"] = error.retryable
    else:
        import os
        import traceback

        from pydantic import ValidationError

        if isinstance(error, ValidationError):
            # Raised by the author's own code (a model built from the input): its message
            # quotes the offending values, so it is logged as locations and reasons only.
            from ._models import describe_validation_error

            message = f"{error.title}: {describe_validation_error(error)}"
        else:
            message = str(error)
        facts["error_message"] = message[:_MAX_MESSAGE]
        frames = traceback.extract_tb(error.__traceback__)
        if frames:
            last = frames[-1]
            origin = f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"
            facts["error_origin"] = origin
    facts["input_key"] = stats.input_key
    facts["total_ms"] = stats.total_ms
    return facts


def default_observer(
    settings: Settings | None = None,
    *,
    logger: Logger | None = None,
    tracer: TracerChoice | TracingProvider | None = None,
) -> Observer:
    """The observer a handler uses unless given one: Powertools logs, EMF metrics, a tracer.

    Powertools (``ceap_stage._powertools``) is imported here, at a handler's first invocation,
    never when ``ceap_stage`` is imported; X-Ray and OpenTelemetry only when a span is made.

    Args:
        settings: The resolved settings (default: :func:`ceap_stage._settings.resolve_settings`
            now): service name, log level, metric namespace, metrics on/off, ``tracer``.
        logger: A Powertools ``Logger`` of your own for the lines.
        tracer: ``"xray"``, ``"otel"``, ``"off"`` or a provider, instead of
            ``settings.tracer`` (``CEAP_TRACER``).

    Example:
        >>> from ceap_stage._settings import Settings
        >>> observer = default_observer(Settings(metrics_namespace="Orders", tracer="off"))
        >>> observer.metrics.namespace, observer.tracing
        ('Orders', None)
    """
    from ._powertools import PowertoolsObserver

    return PowertoolsObserver(settings=settings, logger=logger, tracer=tracer)
