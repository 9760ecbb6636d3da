"""EMF metrics: one document per invocation (also on failure), checked against the EMF structure."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aws_lambda_powertools import Metrics

from ceap_stage import ExecutionContext, InputNotFoundError, LocalStore, stage
from ceap_stage.testing import FakeLambdaContext

from .conftest import SENTINEL, Order, ReadOut, event

METRICS = {
    "StageDuration": "Milliseconds",
    "InputBytes": "Bytes",
    "OutputBytes": "Bytes",
    "RecordsProcessed": "Count",
    "StageFailures": "Count",
}
# CloudWatch's valid units (EMF specification, MetricDatum.Unit).
CLOUDWATCH_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def check_emf(document: dict[str, Any]) -> dict[str, Any]:
    """Assert the EMF specification's structure and return the one metric directive."""
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert abs(meta["Timestamp"] - time.time() * 1000) < 60_000  # epoch milliseconds
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert len(directives) == 1
    directive: dict[str, Any] = directives[0]
    assert isinstance(directive["Namespace"], str)
    assert 1 <= len(directive["Namespace"]) <= 255
    for dimension_set in directive["Dimensions"]:
        assert len(dimension_set) <= 30
        for name in dimension_set:
            assert isinstance(document[name], str)  # every dimension is a root string member
    for metric in directive["Metrics"]:
        assert metric["Unit"] in CLOUDWATCH_UNITS
        values = document[metric["Name"]]  # every metric is a root member
        assert isinstance(values, list)
        assert all(isinstance(v, (int, float)) for v in values)
    return directive


def make_stage(store: LocalStore) -> Any:
    @stage(store=store)
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        return [o for o in orders if o.amount > 5]

    return score


def test_a_success_flushes_one_emf_document_with_the_five_metrics(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    result = make_stage(store)(event(), FakeLambdaContext())
    logs, metrics = read_stdout()
    assert len(metrics) == 1
    document = metrics[0]
    directive = check_emf(document)
    assert directive["Namespace"] == "CeapStage"
    assert directive["Dimensions"] == [["workflow", "stage"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == METRICS
    assert document["workflow"] == "orders-flow"
    assert document["stage"] == "Score"
    assert document["InputBytes"] == [float(logs[1]["input_bytes"])]
    assert document["OutputBytes"] == [float(result["output"]["bytes"])]
    assert document["RecordsProcessed"] == [2.0]
    assert document["StageFailures"] == [0.0]
    assert document["StageDuration"] == [logs[1]["total_ms"]]
    assert SENTINEL not in str(document)


def test_a_failure_flushes_stage_failures(tmp_path: Any, read_stdout: ReadOut) -> None:
    handler = make_stage(LocalStore(tmp_path))
    with pytest.raises(InputNotFoundError):
        handler(event(), FakeLambdaContext())
    _, metrics = read_stdout()
    assert len(metrics) == 1
    check_emf(metrics[0])
    assert metrics[0]["StageFailures"] == [1.0]
    assert metrics[0]["OutputBytes"] == [0.0]
    assert metrics[0]["stage"] == "Score"


def test_every_invocation_flushes_its_own_document(store: LocalStore, read_stdout: ReadOut) -> None:
    handler = make_stage(store)
    for _ in range(3):
        handler(event(), FakeLambdaContext())
    _, metrics = read_stdout()
    assert len(metrics) == 3
    assert all(m["RecordsProcessed"] == [2.0] for m in metrics)  # never accumulated


def test_an_unnamed_workflow_is_the_unknown_dimension(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    ev = event()
    del ev["workflowName"]
    make_stage(store)(ev, FakeLambdaContext())
    _, metrics = read_stdout()
    assert metrics[0]["workflow"] == "unknown"


def test_the_namespace_comes_from_powertools_metrics_namespace(
    store: LocalStore, read_stdout: ReadOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "OrdersPipeline")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders-svc")  # adds no dimension
    make_stage(store)(event(), FakeLambdaContext())
    _, metrics = read_stdout()
    directive = check_emf(metrics[0])
    assert directive["Namespace"] == "OrdersPipeline"
    assert directive["Dimensions"] == [["workflow", "stage"]]


@pytest.mark.parametrize("variable", ["POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"])
def test_metrics_can_be_disabled(
    store: LocalStore, read_stdout: ReadOut, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "true")
    make_stage(store)(event(), FakeLambdaContext())
    logs, metrics = read_stdout()
    assert metrics == []
    assert len(logs) == 2


def test_the_authors_own_powertools_metrics_stay_separate(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    author_metrics = Metrics(namespace="AuthorNamespace", service="orders")

    @stage(store=store)
    def score(orders: list[Order]) -> list[Order]:
        author_metrics.add_metric(name="OrdersScored", unit="Count", value=len(orders))
        return orders

    score(event(), FakeLambdaContext())
    _, ours = read_stdout()
    assert "OrdersScored" not in ours[0]
    author_metrics.flush_metrics()
    _, theirs = read_stdout()
    assert theirs[0]["OrdersScored"] == [4.0]
    assert "StageDuration" not in theirs[0]


def test_the_validated_fallback_path_writes_the_same_document(
    store: LocalStore, read_stdout: ReadOut
) -> None:
    from ceap_stage._powertools import EmfMetrics, PowertoolsObserver

    direct, checked = PowertoolsObserver(), PowertoolsObserver()
    assert isinstance(direct.metrics, EmfMetrics)
    assert isinstance(checked.metrics, EmfMetrics)
    assert direct.metrics._direct is True  # Powertools' metric set has the expected layout
    checked.metrics._direct = False  # what a future Powertools with another layout gets
    documents = []
    for observer in (direct, checked):

        @stage(store=store, observer=observer)
        def score(orders: list[Order]) -> list[Order]:
            return orders

        score(event(), FakeLambdaContext())
        _, metrics = read_stdout()
        check_emf(metrics[0])
        documents.append(
            {k: v for k, v in metrics[0].items() if k not in ("_aws", "StageDuration")}
        )
        documents.append(metrics[0]["_aws"]["CloudWatchMetrics"])
    assert documents[0] == documents[2]
    assert documents[1] == documents[3]
