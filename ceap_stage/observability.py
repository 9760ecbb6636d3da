"""Observability: the hooks the runtime calls, the parts they compose, and tracing providers.

Every invocation reports to an :class:`Observer`. The default, :class:`PowertoolsObserver`, is a
:class:`StageObserver` of three separable parts: :class:`Logs` (Powertools JSON lines),
:class:`Metrics` (CloudWatch EMF) and a :class:`TracingProvider` (:class:`XRayTracing`,
:class:`OpenTelemetryTracing` or none, chosen by ``CEAP_TRACER``). Log lines and metric
documents go to the current :class:`Sink` (stdout), which :func:`use_sink` swaps for a block.

Write your own observer by subclassing :class:`Observer`, or compose your own parts::

    from ceap_stage import stage
    from ceap_stage.observability import OpenTelemetryTracing, PowertoolsObserver

    @stage(observer=PowertoolsObserver(tracer=OpenTelemetryTracing()))
    def score(orders: list[dict]) -> list[dict]:
        return orders

See docs/observability.md.
"""

from ._observability import (
    Capture,
    InvocationStats,
    Logs,
    Metrics,
    Observer,
    Sink,
    StageObserver,
    capture,
    current_sink,
    default_observer,
    use_sink,
)
from ._powertools import EmfMetrics, PowertoolsLogs, PowertoolsObserver
from ._settings import TracerChoice
from ._tracing import (
    AttributeValue,
    NoTracing,
    OpenTelemetryTracing,
    Span,
    TracingProvider,
    XRayTracing,
    tracing_provider,
)

__all__ = [
    "AttributeValue",
    "Capture",
    "EmfMetrics",
    "InvocationStats",
    "Logs",
    "Metrics",
    "NoTracing",
    "Observer",
    "OpenTelemetryTracing",
    "PowertoolsLogs",
    "PowertoolsObserver",
    "Sink",
    "Span",
    "StageObserver",
    "TracerChoice",
    "TracingProvider",
    "XRayTracing",
    "capture",
    "current_sink",
    "default_observer",
    "tracing_provider",
    "use_sink",
]
