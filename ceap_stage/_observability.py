"""Hooks through which the runtime reports an invocation (logs, traces, metrics).

The runtime calls an :class:`Observer` at fixed points and never formats a log line itself, so
that what is logged, traced and measured lives in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._context import ExecutionContext

__all__ = ["InvocationStats", "Observer"]


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
    """The do-nothing observer; subclasses log, trace and measure."""

    def bind(self, ctx: ExecutionContext, lambda_context: Any) -> ExecutionContext:
        """Called first; returns the context handed to the stage (e.g. with a bound logger)."""
        return ctx

    def started(self, ctx: ExecutionContext) -> None:
        """The invocation resolved its context and is about to read its input."""

    @contextlib.contextmanager
    def span(self, name: str, ctx: ExecutionContext) -> Iterator[None]:
        """A traced step: ``read_input``, ``process`` or ``write_output``."""
        yield

    def finished(self, ctx: ExecutionContext, stats: InvocationStats) -> None:
        """The output is written."""

    def failed(
        self, ctx: ExecutionContext | None, error: BaseException, stats: InvocationStats
    ) -> None:
        """The invocation raises ``error`` after this returns (``ctx`` is None when the event
        itself was refused)."""

    def debug(self, ctx: ExecutionContext, message: str, **facts: Any) -> None:
        """A finer step, for DEBUG level."""
