"""The default parts: Powertools logs and CloudWatch EMF metrics, composed with a tracer.

Imported by :func:`ceap_stage._observability.default_observer` at a handler's first invocation,
never when ``ceap_stage`` is imported; Powertools is imported when a part is built.

Cost matters: this runs on every invocation. The parts are built once per handler and keep
their logger and metric provider; an invocation appends its keys to the logger (a context
variable, so threads keep their own), writes two INFO lines, flushes one EMF document and
removes the keys.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._observability import (
    _SINK,
    _STDOUT,
    INVOCATION_KEYS,
    UNKNOWN,
    InvocationStats,
    Logs,
    Metrics,
    StageObserver,
    _ColdStart,
)
from ._settings import DEFAULT_METRICS_NAMESPACE, DEFAULT_SERVICE, resolve_settings
from ._tracing import TracingProvider, tracing_provider

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    from ._settings import Settings, TracerChoice

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE",
    "UNKNOWN",
    "EmfMetrics",
    "PowertoolsLogs",
    "PowertoolsObserver",
    "SinkHandler",
    "_ColdStart",  # its old home: ceap_stage._snapstart and tests look it up here too
]

#: The CloudWatch namespace of the stage metrics when ``POWERTOOLS_METRICS_NAMESPACE`` is unset.
DEFAULT_NAMESPACE = DEFAULT_METRICS_NAMESPACE


class SinkHandler(logging.Handler):
    """A logging handler that gives each formatted line to the current sink.

    ``written=True`` on a logger whose own handler already writes the line (an author's
    ``Logger``): the sink then only keeps it (a capture), it does not write it again.
    """

    def __init__(self, *, written: bool = False) -> None:
        super().__init__()
        self.written = written

    def emit(self, record: logging.LogRecord) -> None:
        sink = _SINK.get()
        if self.written and sink is _STDOUT:
            return  # already written, and nothing keeps it: skip formatting it again
        sink.write_log(self.format(record), written=self.written)


class PowertoolsLogs(Logs):
    """Log lines through a Powertools ``Logger`` (JSON), to the current sink.

    Args:
        logger: A Powertools ``Logger`` of your own: its service, level, formatter and
            handler are kept, and its lines are also given to the sink (so a capture sees
            them). Default: one for ``settings.service_name`` whose lines go to the sink
            (stdout unless swapped).
        settings: The service name and log level (default: resolved now).

    Example:
        >>> from ceap_stage._settings import Settings
        >>> logs = PowertoolsLogs(settings=Settings(service_name="orders"))
        >>> logs.logger.service
        'orders'
    """

    def __init__(self, *, logger: Logger | None = None, settings: Settings | None = None) -> None:
        from aws_lambda_powertools import Logger
        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        if logger is None:
            settings = settings or resolve_settings()
            service = settings.service_name or DEFAULT_SERVICE
            level = settings.log_level
            if getattr(logging.getLogger(service), "init", False):
                # Already configured by another Powertools Logger of this service: share its
                # handler (a second handler would write every line twice).
                logger = Logger(service=service)
                # Powertools sets a logger's level only when it first configures it; apply
                # this handler's reading of the level (its first invocation's).
                logger.setLevel(level or logger.initial_log_level)
            else:
                logger = Logger(service=service, level=level, logger_handler=SinkHandler())
        else:
            pylogger = logger._logger
            if not any(isinstance(h, SinkHandler) for h in pylogger.handlers):
                copy = SinkHandler(written=True)
                copy.setFormatter(logger.registered_formatter)
                pylogger.addHandler(copy)
        self.logger: Logger = logger
        self._pylogger: logging.Logger = logger._logger
        self._formatter = logger.registered_formatter
        # Per-invocation keys live in a context variable (thread-safe) when the formatter
        # supports it: two stages run in threads by the local runner keep their own keys.
        self._thread_safe = isinstance(self._formatter, LambdaPowertoolsFormatter)
        self._write = {
            logging.DEBUG: logger.debug,
            logging.INFO: logger.info,
            logging.WARNING: logger.warning,
            logging.ERROR: logger.error,
        }

    # The formatter's own methods: the Logger's look the formatter up through its handlers on
    # every call, which is most of what binding an invocation's keys costs.
    def bind(self, keys: Mapping[str, Any]) -> None:
        if self._thread_safe:
            self._formatter.thread_safe_append_keys(**keys)
        else:
            self._formatter.append_keys(**keys)

    def unbind(self) -> None:
        if self._thread_safe:
            self._formatter.thread_safe_remove_keys(INVOCATION_KEYS)
        else:
            self._formatter.remove_keys(INVOCATION_KEYS)

    def enabled(self, level: int) -> bool:
        return self._pylogger.isEnabledFor(level)

    def log(self, level: int, message: str, facts: Mapping[str, Any]) -> None:
        # stacklevel 3: the line's ``location`` is the observer hook that wrote it.
        self._write.get(level, self.logger.info)(message, stacklevel=3, **facts)


_METRICS = (
    ("StageDuration", "Milliseconds"),
    ("InputBytes", "Bytes"),
    ("OutputBytes", "Bytes"),
    ("RecordsProcessed", "Count"),
    ("StageFailures", "Count"),
)


class EmfMetrics(Metrics):
    """Five metrics per invocation as one CloudWatch EMF document, to the current sink.

    ``StageDuration``, ``InputBytes``, ``OutputBytes``, ``RecordsProcessed`` and
    ``StageFailures``, with the dimensions ``workflow`` and ``stage``. Built on a Powertools
    EMF provider of its own (not the class-level state every Powertools ``Metrics`` shares), so
    the author's metrics and these never flush into each other's document.

    Args:
        namespace: The CloudWatch namespace (default ``CeapStage``).

    Example:
        >>> from ceap_stage._observability import capture
        >>> with capture() as captured:
        ...     EmfMetrics("Orders").record("flow", "Score", InvocationStats(records=2),
        ...                                 failed=False)  # doctest: +ELLIPSIS
        {...}
        >>> captured.metrics[0]["RecordsProcessed"], captured.metrics[0]["stage"]
        ([2.0], 'Score')
    """

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
            AmazonCloudWatchEMFProvider,
        )

        self.namespace = namespace
        # service="": no ``service`` dimension; the dimensions are exactly workflow, stage.
        self._provider = AmazonCloudWatchEMFProvider(namespace=namespace, service="")
        self._direct = _check_metrics(self._provider)
        # One provider per handler: threads of the local runner must not mix their metric sets.
        self._lock = threading.Lock()

    def record(
        self, workflow: str | None, stage: str, stats: InvocationStats, *, failed: bool
    ) -> None:
        with self._lock:
            document = self._serialize(workflow, stage, stats, failed=failed)
        _SINK.get().write_metrics(document)

    def _serialize(
        self, workflow: str | None, stage: str, stats: InvocationStats, *, failed: bool
    ) -> dict[str, Any]:
        provider = self._provider
        values = (
            stats.total_ms,
            stats.input_bytes,
            stats.output_bytes,
            stats.records,
            1 if failed else 0,
        )
        metric_set, dimension_set = provider.metric_set, provider.dimension_set
        try:
            if self._direct:
                # Powertools validated these names and units when the part was built
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


def _check_metrics(provider: AmazonCloudWatchEMFProvider) -> bool:
    """Have Powertools validate the metric names and units once; True when its metric set has
    the layout :meth:`EmfMetrics._serialize` fills directly."""
    for name, unit in _METRICS:
        provider.add_metric(name, unit, 0)
    expected = {"Unit", "StorageResolution", "Value"}
    direct = all(set(m) == expected for m in provider.metric_set.values())
    provider.clear_metrics()
    return direct


class PowertoolsObserver(StageObserver):
    """The default observer: Powertools logs, EMF metrics and the chosen tracing provider.

    Built once per handler, at its first invocation (``@stage`` does this for you), from the
    resolved settings (``ceap_stage._settings``):

    - ``POWERTOOLS_SERVICE_NAME`` (default ``ceap-stage``), ``POWERTOOLS_LOG_LEVEL`` (default
      ``INFO``): the Powertools ``Logger``'s service and level.
    - ``POWERTOOLS_METRICS_NAMESPACE`` (default ``CeapStage``), ``POWERTOOLS_METRICS_DISABLED``
      (and ``POWERTOOLS_DEV``, as Powertools reads them): EMF metrics.
    - ``CEAP_TRACER`` (``xray``, ``otel``, ``off``; default ``xray`` in Lambda unless
      ``POWERTOOLS_TRACE_DISABLED`` or ``AWS_SAM_LOCAL``, ``off`` elsewhere): the tracing
      provider. X-Ray traces the invocations that carry ``_X_AMZN_TRACE_ID``.

    Args:
        settings: The resolved settings (default: resolved now).
        logger: A Powertools ``Logger`` of your own (its service, level, formatter and
            handler are kept).
        namespace: The metric namespace, instead of ``settings.metrics_namespace``.
        metrics: Emit EMF metrics, instead of ``settings.metrics_enabled``.
        tracing: ``False``: no tracing; ``True``: X-Ray (kept for compatibility; prefer
            ``tracer``).
        tracer: ``"xray"``, ``"otel"``, ``"off"`` or a :class:`TracingProvider`, instead of
            ``settings.tracer``.

    Example:
        >>> from aws_lambda_powertools import Logger
        >>> from ceap_stage import stage
        >>> @stage(observer=PowertoolsObserver(logger=Logger(service="orders"), tracer="off"))
        ... def handler(data: dict) -> dict:
        ...     return data
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        logger: Logger | None = None,
        namespace: str | None = None,
        metrics: bool | None = None,
        tracing: bool | None = None,
        tracer: TracerChoice | TracingProvider | None = None,
    ) -> None:
        settings = settings or resolve_settings()
        logs = PowertoolsLogs(logger=logger, settings=settings)
        self.namespace = namespace or settings.metrics_namespace or DEFAULT_NAMESPACE
        enabled = settings.metrics_enabled if metrics is None else metrics
        emf = EmfMetrics(self.namespace) if enabled else None
        if tracer is None:
            tracer = settings.tracer if tracing is None else ("xray" if tracing else "off")
        provider = (
            tracer
            if isinstance(tracer, TracingProvider)
            else tracing_provider(tracer, on_unavailable=logs.warning)
        )
        super().__init__(logs=logs, metrics=emf, tracing=provider)
