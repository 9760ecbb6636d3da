"""The example Glue script (examples/glue/engagement_enrichment.py), run as the local runner
runs it: ``runpy.run_path(script, run_name="__main__")`` with Glue's ``sys.argv`` and
``CEAP_STORE=file:///root``, between two real Lambda stages."""

from __future__ import annotations

import runpy
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel

from ceap_stage import InputNotFoundError, LocalStore, stage

from ._lambda import lambda_event, manifest_of, output_of
from .conftest import BUCKET, RUN, job_argv

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

SCRIPT = Path(__file__).parents[2] / "examples" / "glue" / "engagement_enrichment.py"
T0 = datetime(2026, 1, 15, 9, 0)


class EngagementEvent(BaseModel):
    """FilterStage's output record (as in the engagement example)."""

    event_id: str
    session_id: str
    customer_id: str
    channel: str
    event_type: str
    product_id: str | None
    occurred_at: datetime
    value_cents: int
    is_bot: bool


def event(n: int, customer: str, kind: str, channel: str = "web", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"e-{n:03d}",
        "session_id": f"s-{customer}-{extra.pop('session', 1)}",
        "customer_id": customer,
        "channel": channel,
        "event_type": kind,
        "product_id": None,
        "occurred_at": (T0 + timedelta(minutes=n)).isoformat() + "Z",
        "value_cents": 0,
        "is_bot": False,
    }
    record.update(extra)
    return record


EVENTS = [
    event(1, "cust-b", "view", "ios"),
    event(2, "cust-b", "click", "ios"),
    event(3, "cust-b", "purchase", "web", value_cents=12_500, session=2),
    event(3, "cust-b", "purchase", "web", value_cents=12_500, session=2),  # duplicate delivery
    event(4, "cust-a", "view", "email"),
    event(5, "cust-a", "view", "EMAIL"),
    event(6, "cust-a", "click", "web"),
    event(7, "bot-1", "view", "web", is_bot=True),
    *(event(10 + i, "cust-c", "purchase", "android", value_cents=1_000) for i in range(10)),
]


def run_pipeline(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> Any:
    """FilterStage (Lambda) -> EnrichStage (the example, via runpy) -> ReportStage (Lambda)."""
    namespace = runpy.run_path(str(SCRIPT), run_name="engagement_enrichment")
    model = namespace["CustomerEngagement"]

    @stage(store=store)
    def filter_stage(events: list[EngagementEvent]) -> list[EngagementEvent]:
        return events

    rows_model: Any = list[model]  # type: ignore[valid-type]

    @stage(store=store, input_model=rows_model, output_model=rows_model)
    def report_stage(rows: Any) -> Any:
        return rows

    filter_stage(lambda_event("FilterStage", None, initialData=EVENTS))
    monkeypatch.setenv("CEAP_STORE", store.root.as_uri())
    monkeypatch.setattr("sys.argv", [str(SCRIPT), *job_argv("EnrichStage", "FilterStage")[1:]])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    report_stage(lambda_event("ReportStage", "EnrichStage"))
    return output_of(store, "ReportStage")


def test_example_enriches_and_aggregates_per_customer(
    spark: SparkSession, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = run_pipeline(store, monkeypatch)

    assert [r["customer_id"] for r in report] == ["cust-a", "cust-b", "cust-c"]  # no bot
    a, b, c = report
    assert a == {
        "customer_id": "cust-a",
        "events": 3,
        "sessions": 1,
        "purchases": 0,
        "revenue_cents": 0,
        "score": 1 * 0.8 + 1 * 0.8 + 3 * 1.0,
        "first_seen": "2026-01-15T09:04:00Z",
        "last_seen": "2026-01-15T09:06:00Z",
        "channels": ["email", "web"],
        "favourite_channel": "email",
        "tier": "bronze",
    }
    assert (b["events"], b["sessions"], b["purchases"]) == (3, 2, 1)  # duplicate dropped
    assert b["revenue_cents"] == 12_500
    assert b["score"] == pytest.approx(1 * 1.2 + 3 * 1.2 + 20 * 1.0)
    assert b["favourite_channel"] == "ios"  # 2 ios vs 1 web
    assert b["tier"] == "bronze"
    assert (c["purchases"], c["revenue_cents"]) == (10, 10_000)
    assert c["score"] == pytest.approx(10 * 20 * 1.2)
    assert c["tier"] == "gold"
    assert manifest_of(store, "EnrichStage").records == 3


def test_example_without_input_exits_1(
    spark: SparkSession, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEAP_STORE", store.root.as_uri())
    monkeypatch.setattr("sys.argv", [str(SCRIPT), *job_argv("EnrichStage", "FilterStage")[1:]])

    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(SCRIPT), run_name="__main__")

    assert info.value.code == 1
    assert isinstance(info.value.__cause__, InputNotFoundError)


def test_example_runs_as_a_plain_python_script(tmp_path: Path) -> None:
    """``python engagement_enrichment.py ...`` with CEAP_STORE: the job creates its own local
    Spark session (a fresh JVM) and stops it; exit status 0, a manifest, JSON log lines."""
    import os
    import subprocess
    import sys

    import orjson

    from ceap_stage._formats import JSON

    store = LocalStore(tmp_path / "cli-store")
    store.put(
        BUCKET,
        f"executions/{RUN}/FilterStage/output.json",
        orjson.dumps(EVENTS),
        content_type=JSON,
    )
    env = {
        **os.environ,
        "CEAP_STORE": store.root.as_uri(),
        "CEAP_SPARK_MASTER": "local[1]",
    }

    done = subprocess.run(
        [sys.executable, str(SCRIPT), *job_argv("EnrichStage", "FilterStage")[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    logs = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["message"] for line in logs] == ["glue stage started", "glue stage finished"]
    assert logs[-1]["records"] == 3
    assert manifest_of(store, "EnrichStage").records == 3
