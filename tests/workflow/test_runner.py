"""The local runner end to end: events, outputs, failures, retries, Glue on local Spark, S3."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import orjson
import pytest

from ceap_stage import LocalStore
from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    LocalRunner,
    RetryConfiguration,
    WorkflowConfiguration,
    WorkflowType,
    lambda_event,
    load_workflow,
)
from ceap_stage.workflow._inspect import Execution
from ceap_stage.workflow._runner import LocalRunError, new_execution_id

from . import handlers
from .handlers import batch

_H = "tests.workflow.handlers"


def _workflow(
    *middle: LambdaStep, retry: RetryConfiguration | None = None
) -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="runner-test",
        steps=[
            LambdaStep(state_name="Load", function_name="load", handler=f"{_H}:recording"),
            *middle,
            LambdaStep(state_name="Double", function_name="double", handler=f"{_H}:double"),
        ],
        workflow_bucket="ceap-runner-test",
        source_queue="in",
        retry_config=retry or RetryConfiguration(),
    )


class Recorder:
    """A reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def run_started(self, result: Any, config: Any) -> None:
        self.lines.append(("run", result.execution_id))

    def stage_started(self, index: int, step: Any) -> None:
        self.lines.append(("start", step.state_name))

    def attempt_failed(self, step: Any, attempt: int, error: BaseException, retry_in: Any) -> None:
        self.lines.append(
            ("attempt_failed", step.state_name, attempt, type(error).__name__, retry_in)
        )

    def stage_finished(self, index: int, outcome: Any) -> None:
        self.lines.append(("finished", outcome.stage, outcome.status))


def _read(store: LocalStore, bucket: str, key: str) -> Any:
    obj = store.get(bucket, key)
    assert obj is not None, key
    return orjson.loads(obj.body)


def test_the_runner_sends_the_state_machines_event_and_chains_outputs(tmp_path):
    config = _workflow()
    store = LocalStore(tmp_path)
    the_batch = batch(1.5, 2.0)
    result = LocalRunner(config, store=store).run(the_batch, execution_id="run-1")
    assert result.succeeded
    assert [s.status for s in result.stages] == ["SUCCEEDED", "SUCCEEDED"]
    # Exactly the event the state machine sends (the same Payload template, evaluated).
    assert [lambda_event(config, 0, execution_id="run-1", state_input=the_batch)] == handlers.EVENTS
    assert handlers.EVENTS[0]["initialData"] == the_batch
    doubled = _read(store, "ceap-runner-test", "executions/run-1/Double/output.json")
    assert doubled == [{"id": 0, "value": 3.0}, {"id": 1, "value": 4.0}]
    final = result.stages[-1]
    assert (final.records, final.attempts) == (2, 1)
    assert final.bytes == len(orjson.dumps(doubled))
    assert final.output is not None
    assert (
        Path(final.output).resolve()
        == (tmp_path / "ceap-runner-test/executions/run-1/Double/output.json").resolve()
    )
    assert result.final_output == final.output
    assert result.execution_location.rstrip("/").endswith("executions/run-1")


def test_the_runner_passes_its_store_as_settings_never_through_the_environment(
    tmp_path, monkeypatch
):
    import os

    monkeypatch.setenv("CEAP_STORE", (tmp_path / "from-env").as_uri())
    before = dict(os.environ)
    store = LocalStore(tmp_path / "runner")
    result = LocalRunner(_workflow(), store=store).run(batch(1.0), execution_id="run-env")
    assert result.succeeded
    # The plain handler resolved the runner's store; the environment still had the test's.
    assert [(store.root.as_uri(), (tmp_path / "from-env").as_uri())] == handlers.STORE_URLS
    assert dict(os.environ) == before
    assert store.get("ceap-runner-test", "executions/run-env/Load/output.json") is not None
    assert not (tmp_path / "from-env").exists()


def test_the_runner_spark_master_comes_from_its_settings(tmp_path):
    from ceap_stage._settings import Settings

    runner = LocalRunner(
        _workflow(), store=LocalStore(tmp_path), settings=Settings(spark_master="local[1]")
    )
    assert runner.settings.spark_master == "local[1]"
    assert runner.settings.store_url == LocalStore(tmp_path).root.as_uri()


def test_a_failing_stage_stops_the_run_and_writes_nothing(tmp_path):
    config = _workflow(
        LambdaStep(state_name="Broken", function_name="broken", handler=f"{_H}:broken")
    )
    store = LocalStore(tmp_path)
    reporter = Recorder()
    result = LocalRunner(config, store=store, reporter=reporter).run(
        batch(1.0), execution_id="run-fail"
    )
    assert not result.succeeded
    assert [s.status for s in result.stages] == ["SUCCEEDED", "FAILED", "NOT_RUN"]
    failed = result.failed_stage
    assert failed is not None
    assert failed.stage == "Broken"
    assert failed.error_type == "InputValidationError"
    assert failed.error_message is not None
    assert "run-fail" in failed.error_message  # contract messages name the execution
    # the object it names is shown where a local store keeps it, not as an s3:// URL
    input_file = tmp_path / "ceap-runner-test/executions/run-fail/Load/output.json"
    assert "key=executions/run-fail/Load/output.json" in failed.error_message
    assert f"file={input_file}" in failed.error_message
    assert "s3://" not in failed.error_message
    assert failed.attempts == 1  # not retryable
    assert type(result.error).__name__ == "InputValidationError"
    assert store.list_keys("ceap-runner-test", "executions/run-fail/Broken/") == []
    assert store.list_keys("ceap-runner-test", "executions/run-fail/Double/") == []
    assert handlers.ATTEMPTS[("run-fail", "Broken")] == 1
    assert ("attempt_failed", "Broken", 1, "InputValidationError", None) in reporter.lines
    assert result.final_output is None


def test_a_transient_failure_is_retried_with_the_configured_waits(tmp_path):
    retry = RetryConfiguration(
        lambda_max_attempts=2, lambda_interval_seconds=20, lambda_backoff_rate=3
    )
    config = _workflow(
        LambdaStep(state_name="Flaky", function_name="flaky", handler=f"{_H}:flaky"), retry=retry
    )
    handlers.FLAKY_FAILURES["count"] = 2
    waits: list[float] = []
    reporter = Recorder()
    runner = LocalRunner(
        config,
        store=LocalStore(tmp_path),
        retry_delay_scale=0.5,
        reporter=reporter,
        sleep=waits.append,
    )
    result = runner.run(batch(1.0), execution_id="run-flaky")
    assert result.succeeded
    assert result.stages[1].attempts == 3
    assert waits == [10.0, 30.0]  # 20 s and 60 s, scaled by 0.5
    failures = [line for line in reporter.lines if line[0] == "attempt_failed"]
    assert failures == [
        ("attempt_failed", "Flaky", 1, "TransientStorageError", 10.0),
        ("attempt_failed", "Flaky", 2, "TransientStorageError", 30.0),
    ]


def test_retries_run_out_and_the_stage_fails_with_the_transient_error(tmp_path):
    config = _workflow(
        LambdaStep(state_name="Flaky", function_name="flaky", handler=f"{_H}:flaky"),
        retry=RetryConfiguration(lambda_max_attempts=1, lambda_interval_seconds=1),
    )
    handlers.FLAKY_FAILURES["count"] = 5
    waits: list[float] = []
    store = LocalStore(tmp_path)
    result = LocalRunner(config, store=store, sleep=waits.append).run(
        batch(1.0), execution_id="run-out"
    )
    assert not result.succeeded
    failed = result.failed_stage
    assert failed is not None
    assert (failed.stage, failed.error_type, failed.attempts) == (
        "Flaky",
        "TransientStorageError",
        2,
    )
    assert waits == [1.0]
    assert store.list_keys("ceap-runner-test", "executions/run-out/Flaky/") == []


def test_a_zero_scale_retries_at_once(tmp_path):
    config = _workflow(
        LambdaStep(state_name="Flaky", function_name="flaky", handler=f"{_H}:flaky"),
    )
    waits: list[float] = []
    result = LocalRunner(
        config, store=LocalStore(tmp_path), retry_delay_scale=0, sleep=waits.append
    ).run(batch(1.0), execution_id="run-zero")
    assert result.succeeded
    assert waits == []


def test_the_express_example_runs_end_to_end(tmp_path):
    loaded = load_workflow("examples/engagement/workflow.py")
    assert loaded.sample_input is not None
    store = LocalStore(tmp_path)
    result = LocalRunner(loaded, store=store).run(loaded.sample_input(), execution_id="demo")
    assert result.succeeded, result.error
    by_stage = {s.stage: s for s in result.stages}
    assert by_stage["ETLStage"].records is not None
    assert by_stage["FilterStage"].records is not None
    assert 0 < by_stage["FilterStage"].records < by_stage["ETLStage"].records
    plan = _read(store, "ceap-workflow-dev", "executions/demo/ReactiveStage/output.json")
    profiles = store.get("ceap-workflow-dev", "executions/demo/StoreStage/output.json")
    assert profiles is not None
    lines = [orjson.loads(line) for line in profiles.body.splitlines()]
    assert len(lines) == by_stage["StoreStage"].records == by_stage["ScoreStage"].records
    assert sum(plan["customers_by_tier"].values()) == len(lines)
    assert {r["customer_id"] for r in plan["reactions"]} <= {p["customer_id"] for p in lines}


def test_check_reports_every_step_that_cannot_run_locally(tmp_path, monkeypatch):
    config = WorkflowConfiguration(
        workflow_name="unrunnable",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            LambdaStep(state_name="NoHandler", function_name="f1"),
            LambdaStep(state_name="BadHandler", function_name="f2", handler="tests.nope:x"),
            GlueStep(state_name="NoScript", job_name="j1"),
            GlueStep(state_name="MissingScript", job_name="j2", script="missing.py"),
        ],
        workflow_bucket="ceap-runner-test",
        source_queue="in",
    )
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyspark" else real_find_spec(name, *a),
    )
    runner = LocalRunner(config, store=LocalStore(tmp_path))
    with pytest.raises(LocalRunError) as caught:
        runner.run([])
    message = str(caught.value)
    assert "NoHandler names no handler" in message
    assert "BadHandler: cannot import" in message
    assert "NoScript names no script" in message
    assert "missing.py" in message
    assert "PySpark is not installed" in message
    assert "pip install 'ceap-stage[glue]'" in message
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="retry_delay_scale"):
        LocalRunner(_workflow(), retry_delay_scale=-1)
    from ceap_stage import ContextResolutionError

    with pytest.raises(ContextResolutionError):
        LocalRunner(_workflow(), store=LocalStore(tmp_path)).run([], execution_id="a/b")
    assert new_execution_id() != new_execution_id()


def test_the_runner_writes_to_s3_over_http(moto_server, moto_server_client, monkeypatch):
    from ceap_stage import S3Store
    from tests.conftest import new_bucket_name

    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    result = LocalRunner(_workflow(), store=S3Store(), bucket=bucket).run(
        batch(2.0), execution_id="run-s3"
    )
    assert result.succeeded, result.error
    assert handlers.EVENTS[0]["workflowBucket"] == bucket
    body = moto_server_client.get_object(Bucket=bucket, Key="executions/run-s3/Double/output.json")[
        "Body"
    ].read()
    assert orjson.loads(body) == [{"id": 0, "value": 4.0}]
    assert result.stages[-1].output == f"s3://{bucket}/executions/run-s3/Double/output.json"


@pytest.mark.spark
@pytest.mark.slow
def test_the_standard_example_with_a_glue_stage_gives_the_same_results(tmp_path):
    pytest.importorskip("pyspark")
    express = load_workflow("examples/engagement/workflow.py")
    standard = load_workflow("examples/engagement/workflow_standard.py")
    assert standard.sample_input is not None
    batch_input = standard.sample_input()
    store = LocalStore(tmp_path)
    lam = LocalRunner(express, store=store).run(batch_input, execution_id="lambda-run")
    glue = LocalRunner(standard, store=store).run(batch_input, execution_id="glue-run")
    assert lam.succeeded, lam.error
    assert glue.succeeded, glue.error
    assert [s.kind for s in glue.stages] == ["lambda", "lambda", "glue", "lambda", "lambda"]
    score = glue.stages[2]
    manifest = _read(store, "ceap-workflow-dev", "executions/glue-run/ScoreStage/output.json")
    assert manifest["ceap"] == "manifest/1"
    assert score.records == manifest["records"] == lam.stages[2].records
    for name in ("StoreStage", "ReactiveStage"):
        a = store.get("ceap-workflow-dev", f"executions/lambda-run/{name}/output.json")
        b = store.get("ceap-workflow-dev", f"executions/glue-run/{name}/output.json")
        assert a is not None
        assert b is not None
        assert a.body == b.body, name


_SHELL_SCRIPT = """
from pathlib import Path
from ceap_stage import InputValidationError, TransientStorageError
from ceap_stage.glue import glue_job

counter = Path(__file__).with_suffix(".attempts")
attempt = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(attempt))
with glue_job(spark=False) as job:
    records = job.read_records()
    if MODE == "transient" and attempt == 1:
        raise TransientStorageError("S3 is throttling (simulated)")
    if MODE == "invalid":
        raise InputValidationError("a record fails the schema (simulated)")
    job.write_records(records)
"""


def _glue_workflow(script: Path) -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="shell",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            LambdaStep(state_name="Load", function_name="load", handler=f"{_H}:first"),
            GlueStep(state_name="Shell", job_name="shell-job", script=str(script)),
            LambdaStep(state_name="Double", function_name="double", handler=f"{_H}:double"),
        ],
        workflow_bucket="ceap-runner-test",
        source_queue="in",
        retry_config=RetryConfiguration(glue_interval_minutes=1),
    )


@pytest.mark.parametrize("mode", ["transient", "invalid"])
def test_a_failed_glue_script_runs_once_whatever_its_error(tmp_path, monkeypatch, mode):
    # A Python-shell Glue script (no Spark), run the way the runner runs every Glue script. As in
    # AWS (no Step Functions retry of a failed job run), a failed script is not run again: the
    # transient error the job's own S3 retries did not get past fails the run too.
    from ceap_stage.workflow import _glue_kind

    monkeypatch.setattr(_glue_kind, "_ensure_spark", lambda master: None)
    script = tmp_path / "shell_job.py"
    script.write_text(f"MODE = {mode!r}\n{_SHELL_SCRIPT}")
    store = LocalStore(tmp_path / "store")
    waits: list[float] = []
    result = LocalRunner(_glue_workflow(script), store=store, sleep=waits.append).run(
        batch(1.0, 3.0), execution_id=f"run-{mode}"
    )
    shell = result.stages[1]
    expected = "TransientStorageError" if mode == "transient" else "InputValidationError"
    assert not result.succeeded
    assert (shell.status, shell.error_type, shell.attempts) == ("FAILED", expected, 1)
    assert type(result.error).__name__ == expected
    assert script.with_suffix(".attempts").read_text() == "1"
    assert waits == []
    assert store.list_keys("ceap-runner-test", f"executions/run-{mode}/Shell/") == []
    assert result.stages[2].status == "NOT_RUN"


def _glue_first(script: Path) -> Any:
    """A workflow whose first step is the Glue ``script`` (beside its file), then Double."""
    from ceap_stage.workflow import LoadedWorkflow

    config = WorkflowConfiguration(
        workflow_name="glue-first",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            GlueStep(state_name="Unpack", job_name="unpack", script=script.name),
            LambdaStep(state_name="Double", function_name="double", handler=f"{_H}:double"),
        ],
        workflow_bucket="ceap-runner-test",
        source_queue="in",
    )
    return LoadedWorkflow(config, script.parent / "wf.yaml", script.parent)


def test_a_first_glue_step_reads_the_staged_batch(tmp_path, monkeypatch):
    from ceap_stage.workflow import _glue_kind

    monkeypatch.setattr(_glue_kind, "_ensure_spark", lambda master: None)
    script = tmp_path / "unpack.py"
    script.write_text(
        "import json\n"
        "from ceap_stage.glue import glue_job\n"
        "with glue_job(spark=False) as job:\n"
        "    assert job.args.is_first_stage\n"
        "    job.write_records([json.loads(r['body']) for r in job.read_records()])\n"
    )
    loaded = _glue_first(script)
    store = LocalStore(tmp_path / "store")
    the_batch = batch(1.0, 4.0)
    result = LocalRunner(loaded, store=store).run(the_batch, execution_id="run-gf")
    assert result.succeeded, result.error
    staged = _read(store, "ceap-runner-test", "executions/run-gf/initial/output.json")
    assert staged == the_batch
    assert result.stages[0].records == 2
    final = _read(store, "ceap-runner-test", "executions/run-gf/Double/output.json")
    assert final == [{"id": 0, "value": 2.0}, {"id": 1, "value": 8.0}]


_UNPACK_SCRIPT = (
    "import json\n"
    "from ceap_stage.glue import glue_job\n"
    "with glue_job(spark=False) as job:\n"
    "    job.write_records([json.loads(r['body']) for r in job.read_records()])\n"
)


def test_a_spark_glue_step_on_s3_is_refused_before_anything_runs(
    tmp_path, moto_server, moto_server_client, monkeypatch
):
    from ceap_stage import S3Store
    from tests.conftest import new_bucket_name

    script = tmp_path / "unpack.py"
    script.write_text(_UNPACK_SCRIPT.replace("spark=False", "spark=True"))
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    runner = LocalRunner(_glue_first(script), store=S3Store(), bucket=bucket)

    with pytest.raises(LocalRunError) as refused_run:
        runner.run(batch(1.0), execution_id="run-gs3")
    with pytest.raises(LocalRunError) as refused_only:
        runner.run_only("Unpack", execution_id="run-gs3", initial_input=batch(1.0))

    for caught in (refused_run, refused_only):
        assert "Glue steps (Unpack) run locally only on a local store" in str(caught.value)
        assert f"--from-store s3://{bucket}" in str(caught.value)
    assert moto_server_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_python_shell_glue_step_runs_on_s3(
    tmp_path, moto_server, moto_server_client, monkeypatch
):
    # It reads and writes through the store, not Spark, so S3 is no obstacle.
    from ceap_stage import S3Store
    from ceap_stage.workflow import _glue_kind
    from tests.conftest import new_bucket_name

    monkeypatch.setattr(_glue_kind, "_ensure_spark", lambda master: None)
    script = tmp_path / "unpack.py"
    script.write_text(_UNPACK_SCRIPT)
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    result = LocalRunner(_glue_first(script), store=S3Store(), bucket=bucket).run(
        batch(1.0, 4.0), execution_id="run-py-s3"
    )
    assert result.succeeded, result.error
    body = moto_server_client.get_object(
        Bucket=bucket, Key="executions/run-py-s3/Double/output.json"
    )["Body"].read()
    assert orjson.loads(body) == [{"id": 0, "value": 2.0}, {"id": 1, "value": 8.0}]


def test_a_handler_module_that_fails_to_import_is_reported(tmp_path, monkeypatch):
    (tmp_path / "bad_stages.py").write_text(
        "from ceap_stage import stage\n@stage\ndef oops(data) -> dict:\n    return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = WorkflowConfiguration(
        workflow_name="bad",
        steps=[LambdaStep(state_name="Oops", function_name="oops", handler="bad_stages:oops")],
        workflow_bucket="ceap-runner-test",
        source_queue="in",
    )
    with pytest.raises(LocalRunError) as caught:
        LocalRunner(config, store=LocalStore(tmp_path / "store")).run([])
    assert "importing bad_stages:oops raised HandlerDefinitionError" in str(caught.value)


def test_a_glue_step_resumes_and_runs_alone_with_the_arguments_it_gets(tmp_path, monkeypatch):
    from ceap_stage.workflow import _glue_kind, glue_arguments
    from ceap_stage.workflow._inspect import Execution

    monkeypatch.setattr(_glue_kind, "_ensure_spark", lambda master: None)
    script = tmp_path / "shell_job.py"
    script.write_text(f"MODE = 'invalid'\n{_SHELL_SCRIPT}")
    store = LocalStore(tmp_path / "store")
    config = _glue_workflow(script)
    failed = LocalRunner(config, store=store).run(batch(1.0, 3.0), execution_id="run-g")
    assert failed.failed_stage is not None
    assert failed.failed_stage.stage == "Shell"
    load = store.path("ceap-runner-test", "executions/run-g/Load/output.json")
    before = (load.read_bytes(), load.stat().st_mtime_ns)

    script.write_text(f"MODE = 'fixed'\n{_SHELL_SCRIPT}")  # the fix
    resumed = LocalRunner(config, store=store).resume("run-g")
    assert resumed.succeeded, resumed.error
    assert [s.status for s in resumed.stages] == ["REUSED", "SUCCEEDED", "SUCCEEDED"]
    assert (load.read_bytes(), load.stat().st_mtime_ns) == before
    final = _read(store, "ceap-runner-test", "executions/run-g/Double/output.json")
    assert final == [{"id": 0, "value": 2.0}, {"id": 1, "value": 6.0}]

    import runpy

    seen: list[list[str]] = []
    real_run_path = runpy.run_path

    def recording(path: str, run_name: str) -> object:
        seen.append(list(__import__("sys").argv[1:]))
        return real_run_path(path, run_name=run_name)

    monkeypatch.setattr(runpy, "run_path", recording)
    alone = LocalRunner(config, store=store).run_only("Shell", execution_id="run-g")
    assert alone.succeeded, alone.error
    assert [s.status for s in alone.stages] == ["KEPT", "SUCCEEDED", "KEPT"]  # left as they were
    assert alone.stages[0].output is not None
    assert alone.stages[0].records == 2
    expected = ["--JOB_NAME", "shell-job"]
    for name, value in glue_arguments(config, 1, execution_id="run-g").items():
        expected += [name, value]
    assert seen == [expected]  # exactly the arguments the state machine passes
    assert Execution(store, "ceap-runner-test", "run-g").stage("Shell").count_records() == 2


def test_a_manifest_output_is_counted_with_its_parts(tmp_path):
    config = WorkflowConfiguration(
        workflow_name="runner-parts",
        steps=[
            LambdaStep(state_name="Load", function_name="load", handler=f"{_H}:small_objects"),
            LambdaStep(state_name="Double", function_name="double", handler=f"{_H}:double"),
        ],
        workflow_bucket="ceap-runner-test",
        source_queue="in",
    )
    store = LocalStore(tmp_path)
    result = LocalRunner(config, store=store).run(batch(1.0, 2.0, 3.0, 4.0), execution_id="run-m")
    assert result.succeeded
    load = result.stages[0]
    folder = tmp_path / "ceap-runner-test/executions/run-m/Load"
    manifest = orjson.loads((folder / "output.json").read_bytes())
    assert manifest["ceap"] == "manifest/1"  # the output is parts + a manifest
    parts = sum(part["bytes"] for part in manifest["parts"])
    assert load.bytes == (folder / "output.json").stat().st_size + parts


def _snapshot(store: LocalStore, bucket: str) -> list[tuple[str, bytes, int]]:
    root = store.root / bucket
    return sorted(
        (str(p.relative_to(root)), p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    )


def test_a_new_run_is_refused_an_execution_id_that_has_outputs(tmp_path):
    from ceap_stage.workflow import ExecutionExistsError

    config = _workflow()
    store = LocalStore(tmp_path)
    assert LocalRunner(config, store=store).run(batch(1.0), execution_id="run-1").succeeded
    before = _snapshot(store, "ceap-runner-test")
    handlers.ATTEMPTS.clear()
    with pytest.raises(ExecutionExistsError) as raised:
        LocalRunner(config, store=store).run(batch(5.0), execution_id="run-1")
    assert raised.value.execution_id == "run-1"
    assert raised.value.stages == ["Load", "Double"]
    assert "execution run-1 already has outputs (stages Load, Double)" in str(raised.value)
    assert isinstance(raised.value, LocalRunError)  # raised before any step runs
    assert handlers.ATTEMPTS == {}
    assert _snapshot(store, "ceap-runner-test") == before
    # A new id is free; no id at all makes a fresh one.
    assert LocalRunner(config, store=store).run(batch(5.0), execution_id="run-2").succeeded
    assert LocalRunner(config, store=store).run(batch(5.0)).succeeded


def test_a_failed_first_step_leaves_its_execution_id_free(tmp_path, monkeypatch):
    # A first Glue step reads the batch the run stages under `initial/`: that is not an output,
    # so the id the failure report suggests can be used again.
    from ceap_stage.workflow import _glue_kind

    monkeypatch.setattr(_glue_kind, "_ensure_spark", lambda master: None)
    script = tmp_path / "unpack.py"
    script.write_text("raise RuntimeError('not yet')\n")
    loaded = _glue_first(script)
    store = LocalStore(tmp_path / "store")
    failed = LocalRunner(loaded, store=store).run(batch(1.0), execution_id="run-gf")
    assert failed.failed_stage is not None
    assert failed.failed_stage.stage == "Unpack"
    assert store.head("ceap-runner-test", "executions/run-gf/initial/output.json") is not None
    script.write_text(
        "import json\n"
        "from ceap_stage.glue import glue_job\n"
        "with glue_job(spark=False) as job:\n"
        "    job.write_records([json.loads(r['body']) for r in job.read_records()])\n"
    )
    again = LocalRunner(loaded, store=store).run(batch(1.0), execution_id="run-gf")
    assert again.succeeded, again.error


def _fixable_score() -> WorkflowConfiguration:
    """Load, Score (fails while ``handlers.BUG["on"]``), Double."""
    return _workflow(LambdaStep(state_name="Score", function_name="score", handler=f"{_H}:fixable"))


def test_resume_never_reports_success_on_the_outputs_of_another_run(tmp_path):
    # The sequence of a user who re-ran a finished execution with a bug in its middle stage.
    config = _fixable_score()
    store = LocalStore(tmp_path)
    handlers.BUG["on"] = False
    assert LocalRunner(config, store=store).run(batch(1.0), execution_id="run-1").succeeded
    handlers.BUG["on"] = True  # the bug comes back
    again = LocalRunner(config, store=store).resume("run-1", from_stage="Score")
    assert not again.succeeded
    assert again.cleared == ["Score", "Double"]
    assert [s.status for s in again.stages] == ["REUSED", "FAILED", "NOT_RUN"]
    execution = Execution(store, "ceap-runner-test", "run-1")
    assert [n for n, o in execution.stages.items() if o.exists] == ["Load"]
    resumed = LocalRunner(config, store=store).resume("run-1")  # the bug is still there
    assert not resumed.succeeded
    assert resumed.failed_stage is not None
    assert resumed.failed_stage.stage == "Score"
    handlers.BUG["on"] = False
    fixed = LocalRunner(config, store=store).resume("run-1")
    assert fixed.succeeded
    assert [s.status for s in fixed.stages] == ["REUSED", "SUCCEEDED", "SUCCEEDED"]


def test_resume_removes_outputs_left_after_a_stage_without_output(tmp_path):
    config = _fixable_score()
    store = LocalStore(tmp_path)
    handlers.BUG["on"] = False
    assert LocalRunner(config, store=store).run(batch(1.0), execution_id="run-1").succeeded
    store.delete("ceap-runner-test", ["executions/run-1/Score/output.json"])
    handlers.BUG["on"] = True
    resumed = LocalRunner(config, store=store).resume("run-1")
    assert resumed.cleared == ["Double"]  # not this run's: it followed a stage with no output
    assert not resumed.succeeded
    assert store.head("ceap-runner-test", "executions/run-1/Double/output.json") is None


def test_a_failure_names_where_the_stage_code_raised(tmp_path):
    config = _workflow(
        LambdaStep(state_name="Score", function_name="score", handler=f"{_H}:fixable")
    )
    result = LocalRunner(config, store=LocalStore(tmp_path)).run(batch(1.0))
    failed = result.failed_stage
    assert failed is not None
    assert failed.error_origin is not None
    source = Path(handlers.__file__).read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "divides by zero" in text)
    assert failed.error_origin.endswith(f"handlers.py:{line}")
    # A contract error raised by ceap-stage before the stage's code ran has no such place:
    # Double is given the count Score writes instead of a list of items.
    config = _workflow(
        LambdaStep(state_name="Count", function_name="count", handler=f"{_H}:count_items")
    )
    broken = LocalRunner(config, store=LocalStore(tmp_path)).run(batch(1.0), execution_id="r-2")
    failed = broken.failed_stage
    assert failed is not None
    assert (failed.stage, failed.error_type) == ("Double", "InputValidationError")
    assert failed.error_origin is None
