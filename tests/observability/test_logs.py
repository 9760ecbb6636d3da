"""Structured logs: two INFO lines per success, one ERROR line per failure, no payload."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from ceap_stage import (
    ExecutionContext,
    HandlerDefinitionError,
    InputValidationError,
    LocalStore,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage._context import output_key
from ceap_stage._observability import _ColdStart
from ceap_stage._powertools import PowertoolsObserver
from ceap_stage.testing import FakeLambdaContext

from .conftest import SENTINEL, Order, ReadOut, event

INVOCATION_KEYS = {
    "execution_id",
    "stage",
    "previous_stage",
    "workflow",
    "function_request_id",
    "cold_start",
}


def make_stage(store: LocalStore, **options: Any) -> Any:
    @stage(store=store, **options)
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        return [o for o in orders if o.amount > 5]

    return score


def test_success_writes_exactly_two_info_lines_with_the_invocation_keys(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    handler = make_stage(store)
    context = FakeLambdaContext(function_name="score-fn")

    result = handler(event(), context)

    logs, _ = read_stdout()
    assert [(r["level"], r["message"]) for r in logs] == [
        ("INFO", "stage started"),
        ("INFO", "stage finished"),
    ]
    for record in logs:
        assert record.keys() >= INVOCATION_KEYS
        assert record["execution_id"] == "run-42"
        assert record["stage"] == "Score"
        assert record["previous_stage"] == "Filter"
        assert record["workflow"] == "orders-flow"
        assert record["function_request_id"] == context.aws_request_id
        assert record["function_name"] == "score-fn"
        assert isinstance(record["cold_start"], bool)
        assert record["service"] == "ceap-stage"
    finished = logs[1]
    assert finished["input_key"] == "executions/run-42/Filter/output.json"
    seeded = store.get("obs-bucket", finished["input_key"])
    assert seeded is not None
    assert finished["input_bytes"] == len(seeded.body)
    assert finished["input_format"] == "json"
    assert finished["records"] == result["recordsProcessed"] == 2
    assert finished["output_key"] == result["output"]["key"]
    assert finished["output_bytes"] == result["output"]["bytes"]
    for timing in ("read_ms", "write_ms", "process_ms", "total_ms"):
        assert isinstance(finished[timing], float)
        assert finished[timing] >= 0
    assert finished["total_ms"] >= finished["read_ms"] + finished["write_ms"]


def test_no_log_line_or_metric_contains_payload_values(
    store: LocalStore, read_stdout: ReadOut, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = make_stage(store)
    handler(event(), FakeLambdaContext())
    out = capsys.readouterr().out
    assert out.count("\n") == 3  # two log lines and one EMF document
    assert SENTINEL not in out


def test_the_stage_gets_the_bound_logger_and_the_keys_go_after_the_invocation(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    seen: list[Any] = []

    @stage(store=store)
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        assert ctx.logger is not None
        seen.append(ctx.logger)
        ctx.logger.info("scoring", orders=len(orders))
        return orders

    score(event(), FakeLambdaContext())
    logs, _ = read_stdout()
    assert [r["message"] for r in logs] == ["stage started", "scoring", "stage finished"]
    assert logs[1]["execution_id"] == "run-42"
    assert logs[1]["orders"] == 4

    seen[0].info("after the invocation")
    logs, _ = read_stdout()
    assert logs[0]["message"] == "after the invocation"
    assert not INVOCATION_KEYS & logs[0].keys()


def test_a_first_stage_has_no_previous_stage_key(tmp_path: Any, read_stdout: ReadOut) -> None:
    @stage(store=LocalStore(tmp_path))
    def ingest(order: Order) -> Order:
        return order

    ingest(
        event("Ingest", previous=None, initialData={"order_id": "a", "note": "n", "amount": 1}),
        FakeLambdaContext(),
    )
    logs, _ = read_stdout()
    assert len(logs) == 2
    assert all("previous_stage" not in r and r["stage"] == "Ingest" for r in logs)
    assert logs[1]["input_format"] == "initialData"
    assert "input_key" not in logs[1]


def test_a_contract_failure_writes_stage_failed_without_payload_or_traceback(
    tmp_path: Any, read_stdout: ReadOut
) -> None:
    store = LocalStore(tmp_path)
    key = output_key("run-42", "Filter")
    store.put(
        "obs-bucket",
        key,
        b'[{"order_id": "a", "note": "x", "amount": "' + SENTINEL.encode() + b'"}]',
    )
    handler = make_stage(store)

    with pytest.raises(InputValidationError):
        handler(event(), FakeLambdaContext())

    logs, metrics = read_stdout()
    assert [(r["level"], r["message"]) for r in logs] == [
        ("INFO", "stage started"),
        ("ERROR", "stage failed"),
    ]
    failed = logs[1]
    assert failed["error_type"] == "InputValidationError"
    assert "amount" in failed["error_message"]
    assert failed["error_key"] == f"s3://obs-bucket/{key}"
    assert failed["retryable"] is False
    assert failed["execution_id"] == "run-42"
    assert not {"exception", "stack_trace", "exception_name"} & failed.keys()
    assert SENTINEL not in str(logs) + str(metrics)


def test_a_users_exception_is_logged_by_class_and_origin_and_propagates(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    class ScoringError(Exception):
        pass

    @stage(store=store)
    def score(orders: list[Order]) -> list[Order]:
        raise ScoringError("model unavailable")

    with pytest.raises(ScoringError):
        score(event(), FakeLambdaContext())
    logs, _ = read_stdout()
    failed = logs[-1]
    assert failed["message"] == "stage failed"
    assert failed["error_type"] == "ScoringError"
    assert failed["error_message"] == "model unavailable"
    assert failed["error_origin"].startswith("test_logs.py:")
    assert "stack_trace" not in failed


def test_a_validation_error_raised_by_the_authors_code_is_logged_without_values(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    from pydantic import BaseModel, ValidationError

    class Strict(BaseModel):
        amount: int

    @stage(store=store)
    def score(orders: list[Order]) -> list[Order]:
        Strict.model_validate({"amount": orders[0].note})  # the payload's value, not an int
        return orders

    with pytest.raises(ValidationError) as caught:
        score(event(), FakeLambdaContext())
    assert SENTINEL in str(caught.value)  # the exception itself is untouched
    logs, metrics = read_stdout()
    failed = logs[-1]
    assert failed["error_type"] == "ValidationError"
    assert failed["error_message"].startswith("Strict: 1 error: amount: Input should be")
    assert SENTINEL not in str(logs) + str(metrics)


def test_a_refused_event_is_logged_with_what_is_known(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    handler = make_stage(store)
    with pytest.raises(Exception) as caught:
        handler(event(workflowBucket="Not_A_Bucket"), FakeLambdaContext())
    assert type(caught.value).__name__ == "ContextResolutionError"
    logs, metrics = read_stdout()
    assert len(logs) == 1
    assert logs[0]["message"] == "stage failed"
    assert logs[0]["error_type"] == "ContextResolutionError"
    assert logs[0]["execution_id"] == "run-42"
    assert logs[0]["stage"] == "Score"
    assert len(metrics) == 1


def test_cold_start_is_true_only_for_the_first_invocation_of_the_process(
    store: LocalStore, read_stdout: ReadOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ColdStart, "value", True)
    first, second = make_stage(store), make_stage(store)
    first(event(), FakeLambdaContext())
    second(event(), FakeLambdaContext())
    first(event(), FakeLambdaContext())
    logs, _ = read_stdout()
    assert [r["cold_start"] for r in logs] == [True, True, False, False, False, False]


def test_powertools_log_level_debug_adds_the_finer_steps(
    store: LocalStore, read_stdout: ReadOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "obs-debug-service")
    try:
        make_stage(store)(event(), FakeLambdaContext())
        logs, _ = read_stdout()
    finally:
        logging.getLogger("obs-debug-service").setLevel(logging.INFO)
    debug = [r["message"] for r in logs if r["level"] == "DEBUG"]
    for step in ("read_input", "process", "write_output"):
        assert f"{step} started" in debug
        assert f"{step} finished" in debug
    assert [r["message"] for r in logs if r["level"] == "INFO"] == [
        "stage started",
        "stage finished",
    ]
    assert all(r["service"] == "obs-debug-service" and r["stage"] == "Score" for r in logs)


def test_powertools_log_level_warning_silences_the_info_lines(
    store: LocalStore, read_stdout: ReadOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "obs-quiet-service")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    make_stage(store)(event(), FakeLambdaContext())
    logs, metrics = read_stdout()
    assert logs == []
    assert metrics == []


def test_an_authors_logger_is_used_and_keeps_its_service(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    author = Logger(service="orders-team", logger_handler=_StdoutNow())
    handler = make_stage(store, logger=author)
    handler(event(), FakeLambdaContext())
    logs, metrics = read_stdout()
    assert [r["message"] for r in logs] == ["stage started", "stage finished"]
    assert all(r["service"] == "orders-team" and r["execution_id"] == "run-42" for r in logs)
    assert len(metrics) == 1


def test_a_class_handler_takes_a_logger_too(store: LocalStore, read_stdout: ReadOut) -> None:
    class Score(WorkflowLambdaHandler[list[Order], list[Order]]):
        def process(self, data: list[Order], ctx: ExecutionContext) -> list[Order]:
            return data

    Score(store=store, logger=Logger(service="orders-class", logger_handler=_StdoutNow()))(
        event(), FakeLambdaContext()
    )
    logs, _ = read_stdout()
    assert [r["service"] for r in logs] == ["orders-class", "orders-class"]


def test_observer_and_logger_together_are_refused() -> None:
    with pytest.raises(HandlerDefinitionError, match="not both"):

        @stage(observer=PowertoolsObserver(), logger=Logger(service="x-both"))
        def score(orders: list[Order]) -> list[Order]:
            return orders


def test_handlers_with_separate_or_shared_loggers_never_duplicate_lines(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    shared_a, shared_b = make_stage(store), make_stage(store)
    own = make_stage(store, logger=Logger(service="orders-own", logger_handler=_StdoutNow()))
    also_own = make_stage(
        store, logger=Logger(service="orders-own")
    )  # same service: shares the first logger's handler
    for handler in (shared_a, shared_b, own, also_own, shared_a):
        handler(event(), FakeLambdaContext())
        logs, metrics = read_stdout()
        assert [r["message"] for r in logs] == ["stage started", "stage finished"]
        assert len(metrics) == 1


def test_concurrent_invocations_in_threads_keep_their_own_keys(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LocalStore(tmp_path)
    for index in range(6):
        store.put("obs-bucket", output_key(f"run-{index}", "Filter"), b"[]")
    barrier = threading.Barrier(6)

    @stage(store=store)
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        barrier.wait(timeout=10)  # every invocation is inside its keys at once
        assert ctx.logger is not None
        ctx.logger.info("inside")
        return orders

    lines: list[str] = []
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
    from .conftest import stdout_records

    logs, metrics = stdout_records(capsys.readouterr().out)
    lines = [r["execution_id"] for r in logs if r["message"] == "inside"]
    assert sorted(lines) == [f"run-{i}" for i in range(6)]
    assert len(logs) == 18
    assert len(metrics) == 6


class _StdoutNow(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to the current sys.stdout (so capsys sees it)."""

    def emit(self, record: logging.LogRecord) -> None:
        import sys

        self.stream = sys.stdout
        super().emit(record)
