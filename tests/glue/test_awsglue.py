"""The AWS Glue branch: ``getResolvedOptions``, ``GlueContext``, ``Job.init`` and ``Job.commit``.

``awsglue`` exists only on AWS Glue (it is not on PyPI), so these tests install a small stand-in
with the same names and behaviour (argparse-based ``getResolvedOptions`` that returns argparse
destinations, a ``GlueContext`` over the SparkContext, a ``Job`` recording its calls) and run the
helper on the real local Spark session.
"""

from __future__ import annotations

import argparse
import sys
import types
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from ceap_stage import ContextResolutionError, LocalStore
from ceap_stage.glue import glue_job, resolve_args

from ._lambda import manifest_of, put_jsonl
from .conftest import RUN, job_argv

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class GlueArgumentError(Exception):
    pass


class _GlueArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise GlueArgumentError(message)


def get_resolved_options(args: list[str], options: list[str]) -> dict[str, Any]:
    """As awsglue.utils.getResolvedOptions: every option required, unknown ones ignored."""
    parser = _GlueArgumentParser()
    parser.add_argument("--job-bookmark-option", required=False)
    parser.add_argument("--TempDir", required=False)
    for option in options:
        parser.add_argument(f"--{option}", required=True)
    parsed, _extra = parser.parse_known_args(args[1:])
    resolved = vars(parsed)
    resolved["job_bookmark_option"] = resolved["job_bookmark_option"] or "job-bookmark-disable"
    return resolved


class Job:
    calls: ClassVar[list[tuple[str, Any]]] = []

    def __init__(self, glue_context: Any) -> None:
        self.glue_context = glue_context

    def init(self, job_name: str, args: dict[str, Any]) -> None:
        Job.calls.append(("init", (job_name, args)))

    def commit(self) -> None:
        Job.calls.append(("commit", None))


class GlueContext:
    def __init__(self, sc: Any) -> None:
        from pyspark.sql import SparkSession

        self.sc = sc
        self.spark_session = SparkSession.builder.getOrCreate()


@pytest.fixture
def awsglue(monkeypatch: pytest.MonkeyPatch) -> type[Job]:
    package = types.ModuleType("awsglue")
    utils = types.ModuleType("awsglue.utils")
    utils.getResolvedOptions = get_resolved_options  # type: ignore[attr-defined]
    context = types.ModuleType("awsglue.context")
    context.GlueContext = GlueContext  # type: ignore[attr-defined]
    job = types.ModuleType("awsglue.job")
    job.Job = Job  # type: ignore[attr-defined]
    for name, module in [
        ("awsglue", package),
        ("awsglue.utils", utils),
        ("awsglue.context", context),
        ("awsglue.job", job),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    Job.calls = []
    return Job


def test_arguments_come_from_get_resolved_options(awsglue: type[Job]) -> None:
    args = resolve_args([*job_argv(), "--job-bookmark-option", "job-bookmark-enable"])

    assert args.execution_id == RUN
    assert args.previous_stage == "Ingest"
    assert args.resolved["execution_id"] == RUN
    assert args.resolved["job_bookmark_option"] == "job-bookmark-enable"


def test_its_errors_become_context_resolution_errors(awsglue: type[Job]) -> None:
    with pytest.raises(ContextResolutionError, match="--output-key"):
        resolve_args(job_argv(output_key=None))


def test_the_job_runs_on_a_glue_context_and_commits(
    awsglue: type[Job], spark: SparkSession, store: LocalStore
) -> None:
    put_jsonl(store, "Ingest", [{"n": 1}, {"n": 2}])

    with glue_job(job_argv(), store=store) as job:
        assert isinstance(job.glue_context, GlueContext)
        assert job.spark is spark
        job.write_output(job.read_input())

    assert [name for name, _ in awsglue.calls] == ["init", "commit"]
    job_name, init_args = awsglue.calls[0][1]
    assert job_name == "ceap-glue-test-job"
    assert init_args["JOB_NAME"] == "ceap-glue-test-job"
    assert init_args["job_bookmark_option"] == "job-bookmark-disable"
    assert manifest_of(store, "Aggregate").records == 2
    assert spark.range(2).count() == 2  # the session is Glue's: never stopped by the helper


def test_a_failed_job_does_not_commit(
    awsglue: type[Job], spark: SparkSession, store: LocalStore
) -> None:
    with pytest.raises(SystemExit) as info, glue_job(job_argv(), store=store) as job:
        job.read_input()

    assert info.value.code == 1
    assert [name for name, _ in awsglue.calls] == ["init"]
