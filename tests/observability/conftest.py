"""Observability test fixtures: a clean Powertools/Lambda environment and a seeded store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from ceap_stage import LocalStore
from ceap_stage._context import output_key

#: A value placed in every payload; it must appear in no log line and no metric.
SENTINEL = "SENTINEL-7f3a-payload-value"

_OBSERVABILITY_ENV = (
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_METRICS_DISABLED",
    "POWERTOOLS_TRACE_DISABLED",
    "POWERTOOLS_DEV",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_FUNCTION_NAME",
    "LAMBDA_TASK_ROOT",
    "_X_AMZN_TRACE_ID",
)


@pytest.fixture(autouse=True)
def _clean_observability_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _OBSERVABILITY_ENV:
        monkeypatch.delenv(name, raising=False)


class Order(BaseModel):
    order_id: str
    note: str
    amount: float


def event(stage: str = "Score", previous: str | None = "Filter", **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "executionId": "run-42",
        "currentStage": stage,
        "workflowBucket": "obs-bucket",
        "workflowName": "orders-flow",
    }
    if previous is not None:
        ev["previousStage"] = previous
    ev.update(extra)
    return ev


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """A LocalStore holding the Filter stage's output of run-42 (sentinel in every record)."""
    store = LocalStore(tmp_path)
    orders = [{"order_id": f"o{i}", "note": SENTINEL, "amount": 5.0 * i} for i in range(4)]
    store.put("obs-bucket", output_key("run-42", "Filter"), orjson.dumps(orders))
    return store


def stdout_records(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split captured stdout into (log records, EMF documents); every line must be JSON."""
    logs: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        (metrics if "_aws" in doc else logs).append(doc)
    return logs, metrics


ReadOut = Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


@pytest.fixture
def read_stdout(capsys: pytest.CaptureFixture[str]) -> ReadOut:
    """Parse what was written to stdout since the last call."""

    def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return stdout_records(capsys.readouterr().out)

    return read
