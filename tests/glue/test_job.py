"""The job wrapper and the ``@glue_stage`` decorator on a real local Spark session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ceap_stage import InputValidationError, LocalStore
from ceap_stage.glue import GlueJob, glue_job, glue_stage

from ._lambda import lambda_event, manifest_of, output_of, put_jsonl, report_stage
from .conftest import RUN, job_argv

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

pytestmark = pytest.mark.spark

EVENTS = [{"customer_id": f"c-{i % 3}", "kind": "view", "seq": i} for i in range(9)]


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"timestamp"')]


def test_job_reuses_the_active_session_and_leaves_it_running(
    spark: SparkSession, store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    put_jsonl(store, "Ingest", EVENTS)

    with glue_job(job_argv(), store=store) as job:
        assert job.spark is spark
        assert job.glue_context is None  # no awsglue here
        df = job.read_input(schema="customer_id STRING, seq LONG")
        job.write_output(df.where("seq % 2 = 0"), order_by="seq")

    assert spark.range(3).count() == 3  # not stopped
    assert manifest_of(store, "Aggregate").records == 5
    started, finished = log_lines(capsys.readouterr().out)
    assert (started["message"], finished["message"]) == (
        "glue stage started",
        "glue stage finished",
    )
    assert started["runtime"] == "spark"
    assert finished["execution_id"] == RUN
    assert finished["stage"] == "Aggregate"
    assert finished["previous_stage"] == "Ingest"
    assert finished["records"] == 5
    assert finished["output_key"].endswith(f"executions/{RUN}/Aggregate/output.json")


def test_a_lazy_schema_mismatch_in_user_code_exits_with_input_validation(
    spark: SparkSession, store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    put_jsonl(store, "Ingest", [{"customer_id": "c", "seq": "secret-not-a-number"}])

    def run() -> None:
        with glue_job(job_argv(), store=store) as job:
            df = job.read_input(schema="customer_id STRING, seq LONG", validate=False)
            df.collect()  # the user's own action meets the malformed record

    with pytest.raises(SystemExit) as info:
        run()

    assert info.value.code == 1
    assert isinstance(info.value.__cause__, InputValidationError)
    # What a failed job run's ErrorMessage names, and the state machine matches on.
    assert str(info.value).startswith("InputValidationError: ")
    out = capsys.readouterr().out
    failed = log_lines(out)[-1]
    assert failed["error"] == "InputValidationError"
    assert failed["level"] == "ERROR"
    assert "secret-not-a-number" not in out
    assert spark.range(1).count() == 1


def test_glue_stage_decorator_runs_a_whole_stage(spark: SparkSession, store: LocalStore) -> None:
    put_jsonl(store, "Ingest", EVENTS)

    @glue_stage(schema="customer_id STRING, seq LONG", order_by="customer_id", store=store)
    def aggregate(events: DataFrame, job: GlueJob) -> DataFrame:
        assert job.args.current_stage == "Aggregate"
        return events.groupBy("customer_id").count()

    out = aggregate(job_argv())
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert out.records == 3
    assert output_of(store, "Report") == [
        {"customer_id": "c-0", "count": 3},
        {"customer_id": "c-1", "count": 3},
        {"customer_id": "c-2", "count": 3},
    ]
    assert aggregate.__name__ == "aggregate"


def test_glue_stage_bare_reads_sys_argv_and_ceap_store(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = LocalStore(tmp_path / "from-env")
    monkeypatch.setenv("CEAP_STORE", local.root.as_uri())
    monkeypatch.setattr("sys.argv", job_argv())
    put_jsonl(local, "Ingest", EVENTS)

    @glue_stage
    def passthrough(events: DataFrame) -> DataFrame:
        return events

    passthrough()

    assert manifest_of(local, "Aggregate").records == len(EVENTS)


def test_glue_stage_failure_exits_1(spark: SparkSession, store: LocalStore) -> None:
    @glue_stage(store=store)
    def never(events: DataFrame) -> DataFrame:
        raise AssertionError("not reached: the input does not exist")

    with pytest.raises(SystemExit) as info:
        never(job_argv())

    assert info.value.code == 1
    assert type(info.value.__cause__).__name__ == "InputNotFoundError"
