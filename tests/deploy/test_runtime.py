"""The exact function zip and layer zip ``package`` writes serve an invocation: unpacked as Lambda
lays them out (``/var/task``, ``/opt/python``), with only the runtime's boto3 beside them, under
the real Runtime Interface Client (``awslambdaric``) talking to a Runtime API on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.layer._runtime_api import RuntimeApi
from tests.layer.conftest import (
    AWS_SDK_DISTRIBUTIONS,
    RIC_DISTRIBUTIONS,
    host_target,
    link_distributions,
)
from tests.layer.test_run_from_layer import RIC_BOOTSTRAP, STAGE_MODULE, Workflow

from .conftest import CliRunner, write_project

pytestmark = pytest.mark.layer


def test_the_packaged_zips_serve_an_invocation_under_awslambdaric(
    tmp_path: Path,
    cli: CliRunner,
    layer_cache: Path,
    moto_server_client: Any,
    moto_bucket: str,
) -> None:
    python, arch = host_target()
    project = write_project(
        tmp_path / "project",
        {
            "scoring/__init__.py": "",
            "scoring/score_stage.py": STAGE_MODULE,
            "workflow.yaml": (
                "workflowName: scoring\nworkflowBucket: scoring-dev\nsourceQueue: in\nsteps:\n"
                "  - stateName: Score\n    functionName: score\n"
                "    handler: scoring.score_stage:handler\n"
                f"    runtime: python{python}\n    architecture: {arch}\n"
            ),
        },
    )
    out = tmp_path / "out"
    result = cli("package", "workflow.yaml", "--artifacts-bucket", "art-bucket", "--out", out,
                 "--cache-dir", layer_cache, cwd=project)  # fmt: skip
    assert result.status == 0, result.err
    template = json.loads((out / "template.json").read_text())
    function = template["Resources"]["ScoreFunction"]["Properties"]
    assert function["Runtime"] == f"python{python}"
    assert function["Architectures"] == [arch]

    # unpack the two zips as Lambda does; the runtime's boto3 and awslambdaric beside them
    task, opt = tmp_path / "var-task", tmp_path / "opt"
    (code,) = (out / "lambda").glob("*.zip")
    (layer,) = (out / "layer").glob(f"*-python{python}-{arch}.zip")
    zipfile.ZipFile(code).extractall(task)
    zipfile.ZipFile(layer).extractall(opt)
    sdk = link_distributions(AWS_SDK_DISTRIBUTIONS, tmp_path / "sdk")
    ric = link_distributions(RIC_DISTRIBUTIONS, tmp_path / "ric")
    endpoint = moto_server_client.meta.endpoint_url
    workflow = Workflow(endpoint, moto_server_client, moto_bucket, "run-package-1")
    workflow.client.put_object(
        Bucket=moto_bucket,
        Key=f"executions/{workflow.execution}/Filter/output.json",
        Body=json.dumps([{"order_id": "o-1", "amount": 12.0}, {"order_id": "o-2", "amount": 3.5},
                         {"order_id": "o-3", "amount": 40.0}]).encode(),
    )  # fmt: skip
    bootstrap = tmp_path / "bootstrap.py"
    bootstrap.write_text(RIC_BOOTSTRAP)
    path = [task, opt / "python", sdk, ric]
    log = tmp_path / "function.log"

    with RuntimeApi() as api, log.open("w") as log_file:
        request = api.invoke(workflow.event())
        env = workflow.child_env(
            AWS_LAMBDA_RUNTIME_API=api.address,
            _HANDLER=function["Handler"],  # the template's handler, as Lambda reads it
            LAMBDA_TASK_ROOT=str(task),
            AWS_LAMBDA_FUNCTION_NAME="score",
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
            CEAP_TRACER="off",
        )
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", str(bootstrap), json.dumps([str(p) for p in path])],
            env=env, cwd=task, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            posted = api.next_posted(timeout=60)
        finally:
            child.kill()
            child.wait(timeout=10)

    assert (posted.kind, posted.request_id) == ("response", request), log.read_text()
    workflow.assert_pointer_and_output(posted.json())
