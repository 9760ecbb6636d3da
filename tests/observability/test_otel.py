"""OpenTelemetry: one span per invocation, named after the stage, a child span per step.

Spans are exported by a real OpenTelemetry SDK ``TracerProvider`` (set once as the process's
global provider, as ADOT's Lambda layer or an application does) to an ``InMemorySpanExporter``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ceap_stage import ConfigurationError, ExecutionContext, LocalStore, stage
from ceap_stage._context import output_key
from ceap_stage.observability import OpenTelemetryTracing, PowertoolsObserver, StageObserver
from ceap_stage.testing import FakeLambdaContext

from .conftest import SENTINEL, Order, event

STEPS = ("read_input", "process", "write_output")
_EXPORTER = InMemorySpanExporter()


def _global_provider() -> None:
    # The global provider can be set once per process: set ours unless a test already did.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    _global_provider()
    monkeypatch.setenv("CEAP_TRACER", "otel")
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def make_stage(store: LocalStore, fail: bool = False, **options: Any) -> Any:
    @stage(store=store, **options)
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        if fail:
            raise ValueError(f"bad order {SENTINEL}")
        return [o for o in orders if o.amount > 5]

    return score


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {s.name: s for s in finished}
    assert len(named) == len(finished), [s.name for s in finished]
    return named


def test_one_span_per_invocation_with_a_child_per_step(
    store: LocalStore, spans: InMemorySpanExporter
) -> None:
    handler = make_stage(store)
    outer_tracer = trace.get_tracer("lambda-layer")
    # As ADOT's layer does: a span for the Lambda invocation is current around the handler.
    with outer_tracer.start_as_current_span("lambda-invocation") as outer:
        result = handler(event(), FakeLambdaContext())

    named = by_name(spans.get_finished_spans())
    assert set(named) == {"lambda-invocation", "Score", *STEPS}
    root = named["Score"]
    assert root.parent is not None
    assert root.parent.span_id == outer.get_span_context().span_id
    assert root.context.trace_id == outer.get_span_context().trace_id
    assert dict(root.attributes or {}) == {
        "ceap.execution_id": "run-42",
        "ceap.stage": "Score",
        "ceap.records": result["recordsProcessed"],
    }
    assert root.status.status_code is StatusCode.UNSET
    for step in STEPS:
        span = named[step]
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
        assert dict(span.attributes or {}) == {"ceap.execution_id": "run-42", "ceap.stage": "Score"}
        assert root.start_time is not None
        assert span.start_time is not None
        assert span.end_time is not None
        assert root.end_time is not None
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time
    starts = [named[step].start_time or 0 for step in STEPS]
    assert starts == sorted(starts)


def test_a_failing_step_marks_its_span_and_the_invocations_span_by_class_only(
    store: LocalStore, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(ValueError, match="bad order"):
        make_stage(store, fail=True)(event(), FakeLambdaContext())

    named = by_name(spans.get_finished_spans())
    assert set(named) == {"Score", "read_input", "process"}  # write_output never ran
    for name in ("process", "Score"):
        span = named[name]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError"
        assert (span.attributes or {})["error.type"] == "ValueError"
        [exception] = [e for e in span.events if e.name == "exception"]
        assert dict(exception.attributes or {}) == {"exception.type": "ValueError"}
    assert "ceap.records" not in (named["Score"].attributes or {})
    assert named["read_input"].status.status_code is StatusCode.UNSET
    everything = repr([(s.attributes, s.events, s.status) for s in named.values()])
    assert SENTINEL not in everything  # the message is never recorded


def test_a_refused_event_opens_no_span(store: LocalStore, spans: InMemorySpanExporter) -> None:
    with pytest.raises(Exception) as caught:
        make_stage(store)(event(workflowBucket="Not_A_Bucket"), FakeLambdaContext())
    assert type(caught.value).__name__ == "ContextResolutionError"
    assert spans.get_finished_spans() == ()


def test_the_tracer_argument_beats_ceap_tracer(
    store: LocalStore, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEAP_TRACER", "off")
    make_stage(store)(event(), FakeLambdaContext())
    assert spans.get_finished_spans() == ()

    make_stage(store, observer=PowertoolsObserver(tracer="otel"))(event(), FakeLambdaContext())
    assert {s.name for s in spans.get_finished_spans()} == {"Score", *STEPS}


def test_a_provider_of_its_own_tracer_provider_and_no_logs_or_metrics(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    exporter = InMemorySpanExporter()
    own = TracerProvider()
    own.add_span_processor(SimpleSpanProcessor(exporter))
    observer = StageObserver(tracing=OpenTelemetryTracing(tracer_provider=own))
    make_stage(store, observer=observer)(event(), FakeLambdaContext())
    assert {s.name for s in exporter.get_finished_spans()} == {"Score", *STEPS}
    assert capsys.readouterr().out == ""  # no log part, no metric part: nothing written


def test_concurrent_invocations_keep_their_own_spans(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    store = LocalStore(tmp_path)
    for index in range(6):
        store.put("obs-bucket", output_key(f"run-{index}", "Filter"), b"[]")
    barrier = threading.Barrier(6)

    @stage(store=store)
    def score(orders: list[Order]) -> list[Order]:
        barrier.wait(timeout=10)  # every invocation is inside its spans at once
        return orders

    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            score(event(executionId=f"run-{index}"), FakeLambdaContext())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    finished = spans.get_finished_spans()
    roots = {s.context.span_id: s for s in finished if s.name == "Score"}
    assert len(roots) == 6
    assert all(s.parent is None for s in roots.values())
    for step in (s for s in finished if s.name in STEPS):
        assert step.parent is not None
        root = roots[step.parent.span_id]
        assert (step.attributes or {})["ceap.execution_id"] == (root.attributes or {})[
            "ceap.execution_id"
        ]
    assert sorted(str((s.attributes or {})["ceap.execution_id"]) for s in roots.values()) == [
        f"run-{i}" for i in range(6)
    ]
    assert len(finished) == 6 * 4


def test_otel_without_opentelemetry_installed_is_a_configuration_error(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEAP_TRACER", "otel")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails as if absent
    handler = make_stage(store)
    with pytest.raises(ConfigurationError) as caught:
        handler(event(), FakeLambdaContext())
    assert "pip install 'ceap-stage[otel]'" in str(caught.value)
    assert "CEAP_TRACER=otel" in str(caught.value)
    assert store.get("obs-bucket", output_key("run-42", "Score")) is None
