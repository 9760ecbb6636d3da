"""The default observer: Powertools logs, CloudWatch EMF metrics and X-Ray traces.

Imported by :func:`ceap_stage._observability.default_observer` at a handler's first invocation,
never when ``ceap_stage`` is imported; ``aws_xray_sdk`` is imported only when a trace is active.

Cost matters: this runs on every invocation. The observer is built once per handler and keeps its
logger and metric provider; an invocation appends its keys to the logger (a context variable, so
threads keep their own), writes two INFO lines, flushes one EMF document and removes the keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._errors import CeapStageError
from ._observability import _CAPTURES, _NULL_SPAN, InvocationStats, Observer
from ._settings import Settings, lambda_trace_id, resolve_settings

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    from ._context import ExecutionContext

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE",
    "UNKNOWN",
    "CaptureHandler",
    "PowertoolsObserver",
]

#: The CloudWatch namespace of the stage metrics when ``POWERTOOLS_METRICS_NAMESPACE`` is unset.
DEFAULT_NAMESPACE = "CeapStage"
#: The ``service`` of the log lines when ``POWERTOOLS_SERVICE_NAME`` is unset.
DEFAULT_SERVICE = "ceap-stage"
#: The ``workflow`` metric dimension when the event carries no ``workflowName``.
UNKNOWN = "unknown"

_MAX_MESSAGE = 512
_TRUE = frozenset({"1", "true", "yes", "on", "y"})
# Keys this module appends to the logger for one invocation (and removes afterwards).
_INVOCATION_KEYS = (
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


class CaptureHandler(logging.Handler):
    """Appends each formatted line to a list (``ceap_stage._observability.Capture``)."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is when a line is written (not when it was created),
    so a test's capture or a redirect sees lines of a logger created earlier."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


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


class PowertoolsObserver(Observer):
    """Logs, metrics and traces with Powertools for AWS Lambda and X-Ray.

    Built once per handler from its resolved :class:`~ceap_stage._settings.Settings`
    (``@stage`` does this for you, see :func:`~ceap_stage._observability.default_observer`),
    which come from these variables:

    - ``POWERTOOLS_SERVICE_NAME`` (default ``ceap-stage``), ``POWERTOOLS_LOG_LEVEL`` (default
      ``INFO``): the Powertools ``Logger``'s service and level.
    - ``POWERTOOLS_METRICS_NAMESPACE`` (default ``CeapStage``), ``POWERTOOLS_METRICS_DISABLED``
      (and ``POWERTOOLS_DEV``, as Powertools reads them): EMF metrics.
    - ``AWS_LAMBDA_FUNCTION_NAME``, ``POWERTOOLS_TRACE_DISABLED`` and ``AWS_SAM_LOCAL``: X-Ray
      tracing is on only in Lambda (not ``sam local``) and when not disabled; it then traces the
      invocations that carry ``_X_AMZN_TRACE_ID``.

    Args:
        logger: A Powertools ``Logger`` of your own (its service, level, formatter and handler
            are kept); default: one for ``POWERTOOLS_SERVICE_NAME`` writing JSON to stdout.
        namespace: The metric namespace (default ``POWERTOOLS_METRICS_NAMESPACE``, else
            ``CeapStage``).
        metrics: Emit EMF metrics (default: unless ``POWERTOOLS_METRICS_DISABLED``).
        tracing: Trace with X-Ray (default: in Lambda, unless ``POWERTOOLS_TRACE_DISABLED``).
        settings: Where the defaults above come from (default: resolved from the environment).

    Example:
        >>> from aws_lambda_powertools import Logger
        >>> from ceap_stage import stage
        >>> @stage(observer=PowertoolsObserver(logger=Logger(service="orders")))
        ... def handler(data: dict) -> dict:
        ...     return data
    """

    def __init__(
        self,
        *,
        logger: Logger | None = None,
        namespace: str | None = None,
        metrics: bool | None = None,
        tracing: bool | None = None,
        settings: Settings | None = None,
    ) -> None:
        from aws_lambda_powertools import Logger
        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        if settings is None:
            settings = resolve_settings()
        if logger is None:
            service = settings.service_name or DEFAULT_SERVICE
            if getattr(logging.getLogger(service), "init", False):
                # Already configured by another Powertools Logger of this service: share its
                # handler (a second handler would write every line twice).
                logger = Logger(service=service, level=settings.log_level)
                # Powertools sets a logger's level only when it first configures it; apply
                # this handler's (its settings' log level, else Powertools' default).
                logger.setLevel(settings.log_level or logger.initial_log_level)
            else:
                logger = Logger(
                    service=service, level=settings.log_level, logger_handler=_StdoutHandler()
                )
        self.logger: Logger = logger
        self._pylogger: logging.Logger = logger._logger
        self._formatter = logger.registered_formatter
        # Per-invocation keys live in a context variable (thread-safe) when the formatter
        # supports it: two stages run in threads by the local runner keep their own keys.
        self._thread_safe = isinstance(self._formatter, LambdaPowertoolsFormatter)

        if metrics is None:
            metrics = settings.metrics_enabled
        self._metrics: AmazonCloudWatchEMFProvider | None = None
        self._direct_metrics = False
        self._metrics_lock = threading.Lock()
        if metrics:
            from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
                AmazonCloudWatchEMFProvider,
            )

            self.namespace = namespace or settings.metrics_namespace or DEFAULT_NAMESPACE
            # A provider of our own (not the class-level state every Powertools ``Metrics``
            # shares), so the author's metrics and ours never flush into each other's document.
            # service="": no ``service`` dimension; the dimensions are exactly workflow, stage.
            provider = AmazonCloudWatchEMFProvider(namespace=self.namespace, service="")
            self._direct_metrics = _check_metrics(provider)
            self._metrics = provider
        else:
            self.namespace = namespace or settings.metrics_namespace or DEFAULT_NAMESPACE

        if tracing is None:
            # As Powertools' Tracer: off when disabled and under ``sam local`` (no daemon there).
            tracing = settings.tracer == "xray"
        self.tracing = tracing
        self._recorder: Any = None
        self._traced = False  # this invocation is traced
        self._debug = False  # this invocation logs at DEBUG
        self._info = True  # this invocation logs at INFO

    # -- the hooks ------------------------------------------------------------------------

    def bind(self, ctx: ExecutionContext, lambda_context: Any) -> ExecutionContext:
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
        self._append_keys(keys)
        for captured in _CAPTURES.get():
            captured.watch(self._pylogger, self._formatter)
        self._debug = self._pylogger.isEnabledFor(logging.DEBUG)
        self._info = self._debug or self._pylogger.isEnabledFor(logging.INFO)
        self._traced = self.tracing and self._start_trace()
        # The runtime builds the context with this observer's logger already in place.
        return ctx if ctx.logger is self.logger else dataclasses.replace(ctx, logger=self.logger)

    def started(self, ctx: ExecutionContext) -> None:
        if not self._info:
            return
        if ctx.retry_count or ctx.redrive_count:
            self.logger.info(
                "stage started", retry_count=ctx.retry_count, redrive_count=ctx.redrive_count
            )
        else:
            self.logger.info("stage started")

    def span(self, name: str, ctx: ExecutionContext) -> contextlib.AbstractContextManager[None]:
        if not (self._traced or self._debug):
            return _NULL_SPAN
        return self._span(name, ctx)

    def finished(self, ctx: ExecutionContext, stats: InvocationStats) -> None:
        try:
            if self._info:
                self.logger.info(
                    "stage finished",
                    input_key=stats.input_key,
                    input_bytes=stats.input_bytes,
                    input_format=stats.input_format,
                    read_ms=stats.read_ms,
                    records=stats.records,
                    output_key=stats.output_key,
                    output_bytes=stats.output_bytes,
                    output_format=stats.output_format,
                    write_ms=stats.write_ms,
                    process_ms=stats.process_ms,
                    total_ms=stats.total_ms,
                )
            if self._metrics is not None:
                self._flush(ctx.workflow_name, ctx.current_stage, stats, failed=False)
        finally:
            self._end()

    def failed(
        self, ctx: ExecutionContext | None, error: BaseException, stats: InvocationStats
    ) -> None:
        stage = ctx.current_stage if ctx is not None else None
        workflow = ctx.workflow_name if ctx is not None else None
        if ctx is None:
            # The event was refused before bind(): log with what the error knows.
            keys: dict[str, Any] = {"cold_start": _ColdStart.take()}
            if isinstance(error, CeapStageError):
                if error.execution_id is not None:
                    keys["execution_id"] = error.execution_id
                if error.stage is not None:
                    keys["stage"] = stage = error.stage
            self._append_keys(keys)
            for captured in _CAPTURES.get():
                captured.watch(self._pylogger, self._formatter)
        try:
            self.logger.error("stage failed", **_describe(error, stats))
            if self._metrics is not None:
                self._flush(workflow, stage or UNKNOWN, stats, failed=True)
        finally:
            self._end()

    def debug(self, ctx: ExecutionContext, message: str, **facts: Any) -> None:
        if self._pylogger.isEnabledFor(logging.DEBUG):
            self.logger.debug(message, **facts)

    # -- helpers ----------------------------------------------------------------------------

    # The formatter's own methods: the Logger's look the formatter up through its handlers on
    # every call, which is most of what binding an invocation's keys costs.
    def _append_keys(self, keys: dict[str, Any]) -> None:
        if self._thread_safe:
            self._formatter.thread_safe_append_keys(**keys)
        else:
            self._formatter.append_keys(**keys)

    def _end(self) -> None:
        if self._thread_safe:
            self._formatter.thread_safe_remove_keys(_INVOCATION_KEYS)
        else:
            self._formatter.remove_keys(_INVOCATION_KEYS)
        self._traced = False

    def _flush(
        self, workflow: str | None, stage: str, stats: InvocationStats, *, failed: bool
    ) -> None:
        provider = self._metrics
        assert provider is not None
        # One provider per handler: threads of the local runner must not mix their metric sets.
        with self._metrics_lock:
            document = self._serialize(provider, workflow, stage, stats, failed=failed)
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        for captured in _CAPTURES.get():
            captured.metrics.append(document)

    def _serialize(
        self,
        provider: AmazonCloudWatchEMFProvider,
        workflow: str | None,
        stage: str,
        stats: InvocationStats,
        *,
        failed: bool,
    ) -> dict[str, Any]:
        values = (
            stats.total_ms,
            stats.input_bytes,
            stats.output_bytes,
            stats.records,
            1 if failed else 0,
        )
        metric_set, dimension_set = provider.metric_set, provider.dimension_set
        try:
            if self._direct_metrics:
                # Powertools validated these names and units when the observer was built
                # (_check_metrics); per invocation the values go straight into its metric set,
                # skipping add_metric's validation and debug formatting (most of its cost).
                dimension_set["workflow"] = workflow or UNKNOWN
                dimension_set["stage"] = stage
                for (name, unit), value in zip(_METRICS, values, strict=True):
                    metric_set[name] = {
                        "Unit": unit,
                        "StorageResolution": 60,
                        "Value": [float(value)],
                    }
            else:
                provider.add_dimension("workflow", workflow or UNKNOWN)
                provider.add_dimension("stage", stage)
                for (name, unit), value in zip(_METRICS, values, strict=True):
                    provider.add_metric(name, unit, value)
            return dict(provider.serialize_metric_set())
        finally:
            metric_set.clear()
            dimension_set.clear()

    def _start_trace(self) -> bool:
        if not lambda_trace_id():
            return False
        if self._recorder is None:
            try:
                from aws_xray_sdk.core import patch, xray_recorder
            except ImportError:
                self.tracing = False
                self.logger.warning(
                    "tracing is off: aws_xray_sdk is not installed (pip install "
                    "'ceap-stage[tracing]')"
                )
                return False
            patch(("botocore",))  # S3 calls become traced AWS calls
            self._recorder = xray_recorder
        return True

    @contextlib.contextmanager
    def _span(self, name: str, ctx: ExecutionContext) -> Iterator[None]:
        subsegment = None
        if self._traced:
            subsegment = self._recorder.begin_subsegment(name)
            if subsegment is not None:
                subsegment.put_annotation("execution_id", ctx.execution_id)
                subsegment.put_annotation("stage", ctx.current_stage)
        if self._debug:
            self.logger.debug(f"{name} started", step=name)
        try:
            yield
        except BaseException as exc:
            if subsegment is not None:
                # The class name only: a user's exception message may quote payload values.
                subsegment.add_fault_flag()
                subsegment.put_annotation("error", type(exc).__name__)
            raise
        finally:
            if subsegment is not None:
                self._recorder.end_subsegment()
        if self._debug:
            self.logger.debug(f"{name} finished", step=name)


_METRICS = (
    ("StageDuration", "Milliseconds"),
    ("InputBytes", "Bytes"),
    ("OutputBytes", "Bytes"),
    ("RecordsProcessed", "Count"),
    ("StageFailures", "Count"),
)


def _check_metrics(provider: AmazonCloudWatchEMFProvider) -> bool:
    """Have Powertools validate the metric names and units once; True when its metric set has
    the layout :meth:`PowertoolsObserver._serialize` fills directly."""
    for name, unit in _METRICS:
        provider.add_metric(name, unit, 0)
    expected = {"Unit", "StorageResolution", "Value"}
    direct = all(set(m) == expected for m in provider.metric_set.values())
    provider.clear_metrics()
    return direct


def _describe(error: BaseException, stats: InvocationStats) -> dict[str, Any]:
    """The facts of a failure: class, message, key. No payload, no traceback."""
    facts: dict[str, Any] = {"error_type": type(error).__name__}
    if isinstance(error, CeapStageError):
        facts["error_message"] = error.detail[:_MAX_MESSAGE]
        facts["error_key"] = error.location
        facts["retryable"] = error.retryable
    else:
        facts["error_message"] = str(error)[:_MAX_MESSAGE]
        frames = traceback.extract_tb(error.__traceback__)
        if frames:
            last = frames[-1]
            origin = f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"
            facts["error_origin"] = origin
    facts["input_key"] = stats.input_key
    facts["total_ms"] = stats.total_ms
    return facts
