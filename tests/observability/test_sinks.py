"""Log lines and metric documents go to the current sink; a capture is a sink swapped in."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from ceap_stage import ExecutionContext, LocalStore, stage
from ceap_stage.observability import Capture, Sink, capture, current_sink, use_sink
from ceap_stage.testing import FakeLambdaContext, capture_logs

from .conftest import Order, ReadOut, event, stdout_records


class Keep(Sink):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.documents: list[Mapping[str, Any]] = []

    def write_log(self, line: str, *, written: bool = False) -> None:
        self.lines.append(line)

    def write_metrics(self, document: Mapping[str, Any]) -> None:
        self.documents.append(document)


def make_stage(store: LocalStore, **options: Any) -> Any:
    @stage(store=store, **options)
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        assert ctx.logger is not None
        ctx.logger.info("scoring")
        return orders

    return score


def test_a_sink_of_ones_own_gets_every_line_and_document_and_stdout_none(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    handler = make_stage(store)
    with use_sink(Keep()) as sink:
        handler(event(), FakeLambdaContext())
    assert read_stdout() == ([], [])
    logs, metrics = stdout_records("\n".join(sink.lines) + "\n")
    assert [r["message"] for r in logs] == ["stage started", "scoring", "stage finished"]
    assert metrics == []
    assert len(sink.documents) == 1
    assert sink.documents[0]["stage"] == "Score"
    assert type(current_sink()) is Sink  # swapped back after the block


def test_nested_captures_both_see_the_lines_and_stdout_gets_each_once(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    handler = make_stage(store)
    with capture() as outer:
        handler(event(), FakeLambdaContext())
        with capture_logs() as inner:
            handler(event(), FakeLambdaContext())
    assert isinstance(inner, Capture)
    assert [r["message"] for r in inner.records] == ["stage started", "scoring", "stage finished"]
    assert len(outer.records) == 6
    assert outer.records[3:] == inner.records
    assert len(outer.metrics) == 2
    assert outer.metrics[1] == inner.metrics[0]
    logs, metrics = read_stdout()
    assert len(logs) == 6
    assert len(metrics) == 2


def test_an_authors_logger_is_captured_and_written_once(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    author = Logger(service="sink-author", logger_handler=_StdoutNow())
    handler = make_stage(store, logger=author)
    with capture() as captured:
        handler(event(), FakeLambdaContext())
        author.info("outside the stage, inside the capture")
    assert [r["message"] for r in captured.records] == [
        "stage started",
        "scoring",
        "stage finished",
        "outside the stage, inside the capture",
    ]
    assert {r["service"] for r in captured.records} == {"sink-author"}
    logs, _ = read_stdout()
    assert [r["message"] for r in logs] == [r["message"] for r in captured.records]


def test_a_capture_sees_only_its_own_thread(store: LocalStore, read_stdout: ReadOut) -> None:
    handler = make_stage(store)
    ready, done = threading.Event(), threading.Event()
    seen: list[Capture] = []

    def other() -> None:
        with capture() as theirs:
            ready.set()
            done.wait(timeout=10)
        seen.append(theirs)

    thread = threading.Thread(target=other)
    thread.start()
    ready.wait(timeout=10)
    with capture() as mine:
        handler(event(), FakeLambdaContext())
    done.set()
    thread.join()
    assert len(mine.records) == 3
    assert seen[0].lines == []
    assert seen[0].metrics == []


class _StdoutNow(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to the current sys.stdout (so capsys sees it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


@pytest.fixture(autouse=True)
def _no_leftover_sink() -> None:
    assert type(current_sink()) is Sink
