"""Observability cost: an SDK stage against a hand-written handler that logs and measures alike.

- ``warm invocation``: a 1 KB stage on a ``LocalStore`` with the default observability (two
  Powertools log lines, one EMF flush) against a hand-written handler doing the same
  read-validate-write, the same two Powertools log lines (same keys) and one Powertools EMF
  flush of the same five metrics. Target: at most 1.15x.
- ``logging`` / ``metrics``: the microseconds per invocation the observer spends, measured as the
  difference between the same stage with a do-nothing observer, with logs only, and with logs
  and metrics.
- ``tracing``: what the OpenTelemetry provider adds (four spans per invocation, an SDK
  ``TracerProvider`` with no exporter) to the default stage, when the SDK is installed.
- ``import``: what the observability module adds to ``import ceap_stage`` (``-X importtime``)
  against what importing Powertools ``Logger`` and ``Metrics`` costs. Target: at most 1x
  (Powertools is imported at the first invocation, not at import; that cost, with the Logger's
  creation, is reported too).

Log lines and EMF documents go to ``/dev/null`` while timing, so terminal I/O does not dominate.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter

from bench._harness import Result, median_time
from ceap_stage import ExecutionContext, LocalStore, stage
from ceap_stage.testing import FakeLambdaContext

NUMBER = 200
REPEAT = 25
IMPORT_RUNS = 7


class Order(BaseModel):
    order_id: str
    customer: str
    amount: float
    currency: str
    note: str


def _payload() -> bytes:
    orders = [
        {
            "order_id": f"order-{i:04d}",
            "customer": f"customer-{i:04d}",
            "amount": 10.5 * i,
            "currency": "EUR",
            "note": "x" * 12,
        }
        for i in range(10)
    ]
    body = orjson.dumps(orders)
    assert 900 <= len(body) <= 1100, len(body)  # about 1 KB
    return body


EVENT = {
    "executionId": "bench-run",
    "currentStage": "Score",
    "previousStage": "Filter",
    "workflowBucket": "bench-bucket",
    "workflowName": "bench-flow",
}


def _keep(orders: list[Order]) -> list[Order]:
    return [o for o in orders if o.amount >= 0]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _sdk_stage(root: str, observer: Any = None) -> Callable[[], object]:
    store = LocalStore(root)
    options: dict[str, Any] = {} if observer is None else {"observer": observer}

    @stage(store=store, **options)
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        return _keep(orders)

    context = FakeLambdaContext()
    return lambda: score(EVENT, context)


def _hand_written(root: str) -> Callable[[], object]:
    """What a careful author writes by hand: same I/O, validation, log lines and metrics."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.metrics import EphemeralMetrics

    store = LocalStore(root)
    adapter = TypeAdapter(list[Order])
    logger = Logger(service="bench-hand-written")
    metrics = EphemeralMetrics(namespace="BenchHandWritten")
    context = FakeLambdaContext()

    def handler(event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        execution_id, stage = event["executionId"], event["currentStage"]
        previous, bucket = event["previousStage"], event["workflowBucket"]
        logger.append_keys(
            execution_id=execution_id,
            stage=stage,
            previous_stage=previous,
            workflow=event.get("workflowName"),
            cold_start=False,
            function_request_id=lambda_context.aws_request_id,
            function_name=lambda_context.function_name,
            function_memory_size=lambda_context.memory_limit_in_mb,
            function_arn=lambda_context.invoked_function_arn,
        )
        logger.info("stage started")
        t = time.perf_counter()
        input_key = f"executions/{execution_id}/{previous}/output.json"
        obj = store.get(bucket, input_key)
        assert obj is not None
        orders = adapter.validate_json(obj.body)
        read_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        result = _keep(orders)
        process_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        body = adapter.dump_json(adapter.validate_python(result))
        output_key = f"executions/{execution_id}/{stage}/output.json"
        put = store.put(bucket, output_key, body)
        write_ms = (time.perf_counter() - t) * 1000
        total_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "stage finished",
            input_key=input_key,
            input_bytes=len(obj.body),
            input_format="json",
            read_ms=round(read_ms, 3),
            records=len(result),
            output_key=output_key,
            output_bytes=put.bytes,
            output_format="json",
            write_ms=round(write_ms, 3),
            process_ms=round(process_ms, 3),
            total_ms=round(total_ms, 3),
        )
        metrics.add_dimension("workflow", event.get("workflowName") or "unknown")
        metrics.add_dimension("stage", stage)
        metrics.add_metric("StageDuration", "Milliseconds", total_ms)
        metrics.add_metric("InputBytes", "Bytes", len(obj.body))
        metrics.add_metric("OutputBytes", "Bytes", put.bytes)
        metrics.add_metric("RecordsProcessed", "Count", len(result))
        metrics.add_metric("StageFailures", "Count", 0)
        metrics.flush_metrics()
        logger.remove_keys(
            [
                "execution_id",
                "stage",
                "previous_stage",
                "workflow",
                "cold_start",
                "function_request_id",
                "function_name",
                "function_memory_size",
                "function_arn",
            ]
        )
        return {
            "status": "SUCCESS",
            "stage": stage,
            "recordsProcessed": len(result),
            "executionId": execution_id,
            "output": {"bucket": bucket, "key": output_key, "bytes": put.bytes},
        }

    return lambda: handler(EVENT, context)


def _subprocess(code: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def _timed_ms(setup: str, statement: str) -> float:
    """Milliseconds ``statement`` takes in a fresh interpreter after ``setup``."""
    code = (
        f"{setup}\nimport time\nt = time.perf_counter()\n{statement}\n"
        "print((time.perf_counter() - t) * 1000)"
    )
    return float(_subprocess(code).stdout.strip().splitlines()[-1])


def _observability_import_ms() -> float:
    """Cumulative import time of ``ceap_stage._observability`` (``-X importtime``), in ms."""
    report = _subprocess("import ceap_stage", "-X", "importtime").stderr
    for line in report.splitlines():
        if line.rstrip().endswith("ceap_stage._observability"):
            return int(line.split("|")[1]) / 1000.0
    raise AssertionError("ceap_stage._observability was not imported by ceap_stage")


def _import_results() -> list[Result]:
    check = _subprocess(
        "import sys, ceap_stage\n"
        "print(sorted(m for m in sys.modules if m.startswith(('aws_lambda_powertools', "
        "'aws_xray_sdk', 'boto3', 'botocore'))))"
    )
    loaded = check.stdout.strip()
    assert loaded == "[]", f"import ceap_stage loaded {loaded}"
    runs: dict[str, list[float]] = {"observability": [], "powertools": [], "observer": []}
    for _ in range(IMPORT_RUNS):  # interleaved, so drift hits all alike
        runs["observability"].append(_observability_import_ms())
        runs["powertools"].append(
            _timed_ms("import ceap_stage", "from aws_lambda_powertools import Logger, Metrics")
        )
        runs["observer"].append(
            _timed_ms(
                "import ceap_stage\nfrom ceap_stage._observability import default_observer",
                "default_observer()",
            )
        )
    median = {name: statistics.median(values) for name, values in runs.items()}
    return [
        Result(
            "import ceap_stage: observability's share vs Powertools Logger+Metrics",
            median["observability"],
            median["powertools"],
            "ms",
            target=1.0,
            note="import ceap_stage loads no Powertools, X-Ray or boto3 module",
        ),
        Result(
            "first invocation: building the observer vs importing Powertools",
            median["observer"],
            median["powertools"],
            "ms",
            note="imports Powertools Logger + EMF provider, creates the Logger",
        ),
    ]


def _interleaved_all(candidates: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median microseconds per call of each candidate, rounds interleaved across all of them."""
    rounds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(REPEAT):
        for name, fn in candidates.items():
            rounds[name].append(median_time(fn, number=NUMBER, repeat=1) * 1e6)
    return {name: statistics.median(values) for name, values in rounds.items()}


def run() -> list[Result]:
    """Run the benchmark and return its figures."""
    from ceap_stage.observability import Observer, OpenTelemetryTracing, PowertoolsObserver

    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:  # the otel extra is not installed: no tracing figure
        TracerProvider = None  # type: ignore[assignment,misc]

    payload = _payload()
    results: list[Result] = []
    # Memory-backed when available: disk latency would drown what is measured here.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp, _quiet():
        for name in ("sdk", "hand", "noop", "logs", "otel"):
            root = os.path.join(tmp, name)
            path = os.path.join(root, "bench-bucket", "executions", "bench-run", "Filter")
            os.makedirs(path)
            with open(os.path.join(path, "output.json"), "wb") as f:
                f.write(payload)
        sdk = _sdk_stage(os.path.join(tmp, "sdk"))
        hand = _hand_written(os.path.join(tmp, "hand"))
        noop = _sdk_stage(os.path.join(tmp, "noop"), Observer())
        logs_only = _sdk_stage(os.path.join(tmp, "logs"), PowertoolsObserver(metrics=False))
        candidates = {"sdk": sdk, "hand": hand, "noop": noop, "logs": logs_only}
        if TracerProvider is not None:
            tracing = OpenTelemetryTracing(tracer_provider=TracerProvider())
            candidates["otel"] = _sdk_stage(
                os.path.join(tmp, "otel"), PowertoolsObserver(tracer=tracing)
            )
        for warm in candidates.values():
            for _ in range(50):
                warm()
        per_call = _interleaved_all(candidates)
    results.append(
        Result(
            "warm invocation: SDK stage (1 KB, LocalStore) vs hand-written",
            per_call["sdk"],
            per_call["hand"],
            "us",
            target=1.15,
            note="both: 2 Powertools log lines + 1 EMF flush",
        )
    )
    results.append(
        Result(
            "per invocation: logging (2 lines, keys bound and removed)",
            per_call["logs"] - per_call["noop"],
            per_call["noop"],
            "us",
            note="baseline: the whole invocation with a do-nothing observer",
        )
    )
    results.append(
        Result(
            "per invocation: metrics (5 metrics, one EMF flush)",
            per_call["sdk"] - per_call["logs"],
            per_call["noop"],
            "us",
            note="baseline: the whole invocation with a do-nothing observer",
        )
    )
    if "otel" in per_call:
        results.append(
            Result(
                "per invocation: OpenTelemetry tracing (4 spans, SDK provider, no exporter)",
                per_call["otel"] - per_call["sdk"],
                per_call["noop"],
                "us",
                note="baseline: the whole invocation with a do-nothing observer",
            )
        )
    results.extend(_import_results())
    return results
