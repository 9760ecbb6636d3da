"""A local run of a Glue (Spark) step on an S3 store is refused before anything runs.

Local Spark has no ``s3://`` filesystem (Hadoop's S3 connector is not in PySpark's wheel): the
refusal says so in one line, with the ``replay --from-store`` workaround, for ``run``,
``--resume``, ``--from`` and ``--only`` alike; steps that can run on S3 still do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceap_stage._cli import main
from ceap_stage._store import store_from_url
from tests.conftest import create_bucket, s3_client
from tests.workflow import handlers

_SPARK_SCRIPT = """\
from ceap_stage.glue import glue_job

with glue_job() as job:
    job.write_output(job.read_input("id LONG, value DOUBLE"))
"""


def _workflow(tmp_path: Path, bucket: str) -> Path:
    (tmp_path / "agg.py").write_text(_SPARK_SCRIPT)
    steps = [
        {"stateName": "Load", "functionName": "load", "handler": "tests.workflow.handlers:first"},
        {"stateName": "Agg", "jobName": "agg", "script": "agg.py"},
        {"stateName": "Double", "functionName": "d", "handler": "tests.workflow.handlers:double"},
    ]
    path = tmp_path / "wf.json"
    config = {
        "workflowName": "glue-s3",
        "workflowType": "STANDARD",
        "workflowBucket": bucket,
        "sourceQueue": "in",
        "steps": steps,
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def on_s3(tmp_path: Path, moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.delenv("CEAP_STORE", raising=False)
    client = s3_client(moto_server)
    bucket = create_bucket(client)
    batch = tmp_path / "input.json"
    batch.write_text(json.dumps(handlers.batch(1.0, 2.5)))

    def listing() -> list[tuple[str, str]]:
        found = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted((o["Key"], o["ETag"]) for o in found)

    wf = _workflow(tmp_path, bucket)
    return {"wf": str(wf), "bucket": bucket, "input": str(batch), "list": listing}


def test_a_run_with_a_glue_step_on_s3_is_refused_in_one_line(on_s3, capsys):
    status = main(
        ["run", on_s3["wf"], "--input", on_s3["input"], "--store", f"s3://{on_s3['bucket']}"]
    )

    captured = capsys.readouterr()
    assert status == 2
    error = captured.err.strip()
    assert len(error.splitlines()) == 1
    assert "Glue steps (Agg) run locally only on a local store (--store file://DIR)" in error
    assert "local Spark has no s3 filesystem" in error
    assert (
        # the workflow as given to run, relative to the working directory (its folder here)
        f"earlier stages ran, use ceap-stage replay {Path(on_s3['wf']).name} EXECUTION Agg "
        "--from-store "
        f"s3://{on_s3['bucket']}"
    ) in error
    assert "Traceback" not in captured.err
    assert "[1/3]" not in captured.out  # nothing ran
    assert on_s3["list"]() == []  # nothing written


@pytest.mark.parametrize(
    "continuing",
    [
        ["--resume", "run-1"],
        ["--resume", "run-1", "--from", "Agg"],
        ["--resume", "run-1", "--from", "Load", "--input", "{input}"],
        ["--only", "Agg", "--execution-id", "run-1"],
    ],
)
def test_continuing_with_a_glue_step_on_s3_is_refused(on_s3, capsys, continuing):
    load = json.dumps([{"id": 0, "value": 1.0}]).encode()
    key = "executions/run-1/Load/output.json"
    store_from_url("s3://").put(on_s3["bucket"], key, load, content_type="application/json")
    before = on_s3["list"]()
    args = [a.format(input=on_s3["input"]) for a in continuing]

    status = main(["run", on_s3["wf"], *args, "--store", f"s3://{on_s3['bucket']}"])

    captured = capsys.readouterr()
    assert status == 2
    assert "Glue steps (Agg) run locally only on a local store" in captured.err
    assert "--from-store s3://" in captured.err
    assert on_s3["list"]() == before  # nothing cleared, nothing written


def test_a_lambda_step_of_a_glue_workflow_runs_alone_on_s3(on_s3, capsys):
    handlers.EVENTS.clear()
    args = ["--only", "Load", "--execution-id", "run-2", "--input", on_s3["input"]]

    status = main(["run", on_s3["wf"], *args, "--store", f"s3://{on_s3['bucket']}"])

    assert status == 0, capsys.readouterr().err
    assert [key for key, _ in on_s3["list"]()] == ["executions/run-2/Load/output.json"]
