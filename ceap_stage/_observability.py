"""Hooks through which the runtime reports an invocation (logs, traces, metrics).

The runtime calls an :class:`Observer` at fixed points and never formats a log line itself, so
that what is logged, traced and measured lives in one place. The default observer,
``ceap_stage._powertools.PowertoolsObserver``, writes Powertools ``Logger`` lines, CloudWatch EMF
metrics and, inside Lambda with an active trace, X-Ray subsegments.

This module is imported with ``ceap_stage`` and stays light (standard library only);
:func:`default_observer` imports the Powertools side at a handler's first invocation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

    from aws_lambda_powertools import Logger

    from ._context import ExecutionContext
    from ._settings import Settings

__all__ = [
    "Capture",
    "InvocationStats",
    "Observer",
    "capture",
    "default_observer",
]

_NULL_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


@dataclass(slots=True)
class InvocationStats:
    """Facts about one invocation: ids, keys, sizes and durations. Never payload content."""

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


class Observer:
    """The do-nothing observer; subclasses log, trace and measure.

    Pass an instance as ``@stage(observer=...)`` to replace the default
    (``PowertoolsObserver``), e.g. to silence a stage in a benchmark.

    Example:
        >>> from ceap_stage import stage
        >>> @stage(observer=Observer())
        ... def quiet(data: dict) -> dict:
        ...     return data
    """

    #: The logger handed to stages as ``ExecutionContext.logger`` (None: no logger).
    logger: Any = None

    def bind(self, ctx: ExecutionContext, lambda_context: Any) -> ExecutionContext:
        """Called first; returns the context handed to the stage (e.g. with a bound logger)."""
        return ctx

    def started(self, ctx: ExecutionContext) -> None:
        """The invocation resolved its context and is about to read its input."""

    def span(self, name: str, ctx: ExecutionContext) -> contextlib.AbstractContextManager[None]:
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


# -- capture (ceap_stage.testing) -------------------------------------------------------------


@dataclass
class Capture:
    """Log lines and EMF documents written by stages while :func:`capture` is active.

    ``lines`` holds each log line exactly as written to stdout (JSON text); :attr:`records`
    parses them. ``metrics`` holds each flushed EMF document.

    Example:
        >>> captured = Capture(lines=['{"message": "stage started"}'])
        >>> captured.records
        [{'message': 'stage started'}]
    """

    lines: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    _handlers: dict[int, tuple[logging.Logger, logging.Handler]] = field(
        default_factory=dict, repr=False
    )

    @property
    def records(self) -> list[dict[str, Any]]:
        """The captured log lines as dicts."""
        import json

        return [json.loads(line) for line in self.lines]

    def watch(self, logger: logging.Logger, formatter: logging.Formatter | None) -> None:
        """Copy every line ``logger`` writes (idempotent)."""
        if id(logger) not in self._handlers:
            from ._powertools import CaptureHandler

            handler = CaptureHandler(self.lines)
            handler.setFormatter(formatter)
            logger.addHandler(handler)
            self._handlers[id(logger)] = (logger, handler)

    def close(self) -> None:
        """Detach from every watched logger."""
        for logger, handler in self._handlers.values():
            logger.removeHandler(handler)
        self._handlers.clear()


# The active captures, innermost last (nested captures all see the lines).
_CAPTURES: ContextVar[tuple[Capture, ...]] = ContextVar("ceap_stage_captures", default=())


@contextlib.contextmanager
def capture() -> Iterator[Capture]:
    """Collect the log lines and metrics of the stages invoked in this block (and thread).

    Lines still go to stdout as well. Used by :func:`ceap_stage.testing.run_stage` and
    :func:`ceap_stage.testing.capture_logs`.

    Example:
        >>> with capture() as captured:
        ...     pass  # invoke handlers here
        >>> captured.records
        []
    """
    captured = Capture()
    token = _CAPTURES.set((*_CAPTURES.get(), captured))
    try:
        yield captured
    finally:
        _CAPTURES.reset(token)
        captured.close()


def default_observer(settings: Settings | None = None, *, logger: Logger | None = None) -> Observer:
    """The observer a handler uses unless given one: a ``PowertoolsObserver``.

    The one place a handler's observer is built from its resolved settings (service name, log
    level, metric namespace, metrics on or off, tracer). Powertools (and this module's
    Powertools side, ``ceap_stage._powertools``) is imported here, when the handler resolves
    its configuration, never when ``ceap_stage`` is imported.

    Args:
        settings: The handler's settings (default: resolved from the environment now).
        logger: A Powertools ``Logger`` of the author's own.

    Example:
        >>> from ceap_stage._settings import Settings
        >>> default_observer(Settings(metrics_namespace="Orders")).namespace
        'Orders'
    """
    from ._powertools import PowertoolsObserver

    return PowertoolsObserver(logger=logger, settings=settings)
