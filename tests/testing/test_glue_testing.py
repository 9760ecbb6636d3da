"""The Spark fixture and run_glue_stage, as a project's own test suite uses them (pytester)."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

pytest_plugins = ["pytester"]

requires_spark = pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed"
)

SCRIPT = """
from ceap_stage.glue import glue_job

with glue_job() as job:
    events = job.read_input(schema="customer_id STRING, events LONG")
    job.write_output(events.where("events > 1"), order_by="customer_id")
"""

TESTS = """
import pytest
from pathlib import Path

from ceap_stage import InputNotFoundError
from ceap_stage.glue import glue_stage
from ceap_stage.testing import run_glue_stage

EVENTS = [
    {"customer_id": "c2", "events": 5},
    {"customer_id": "c1", "events": 3},
    {"customer_id": "c3", "events": 1},
]


@glue_stage(schema="customer_id STRING, events LONG", order_by="customer_id")
def busy(df):
    return df.where("events > 1")


def test_a_glue_stage_function(spark, local_store):
    run = run_glue_stage(busy, store=local_store, previous_output=EVENTS, stage="Busy")
    assert run.output == [
        {"customer_id": "c1", "events": 3},
        {"customer_id": "c2", "events": 5},
    ]
    assert run.records == 2
    assert run.output_format == "manifest"
    assert "--previous-stage" in run.argv
    assert spark.sparkContext.master == "local[1]"


def test_a_glue_script(spark, local_store):
    script = Path(__file__).with_name("busy_job.py")
    run = run_glue_stage(script, store=local_store, previous_output=EVENTS, previous_format="jsonl")
    assert [r["customer_id"] for r in run.output] == ["c1", "c2"]


def test_a_first_glue_stage_reads_the_initial_input(spark, local_store):
    run = run_glue_stage(busy, store=local_store, initial_data=EVENTS)
    assert run.records == 2
    assert "--previous-stage" not in run.argv


def test_a_failing_job_raises_the_contract_error(spark, local_store):
    with pytest.raises(InputNotFoundError) as caught:
        run_glue_stage(busy, store=local_store, previous_stage="Missing",
                       stage="Busy", execution_id="run-bad")
    assert "executions/run-bad/Missing/output.json" in str(caught.value)
    assert local_store.get("ceap-test-bucket", "executions/run-bad/Busy/output.json") is None
"""


@requires_spark
def test_spark_fixture_and_run_glue_stage_in_a_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(busy_job=SCRIPT, test_glue_project=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_spark_fixture_skips_when_pyspark_is_missing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import sys\nsys.modules['pyspark'] = None  # not installed\n")
    pytester.makepyfile(
        test_needs_spark=textwrap.dedent(
            """
            def test_uses_spark(spark):
                raise AssertionError("must not run")
            """
        )
    )
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    skipped = " ".join(result.stdout.str().split())  # -rs wraps long reasons
    assert "the spark fixture needs PySpark, which is not installed" in skipped
    assert "pip install 'ceap-stage[glue]'" in skipped
    assert "Java 17" in skipped
    assert "pip install pyspark" not in skipped  # PySpark 4 is not supported
