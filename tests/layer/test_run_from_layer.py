"""A stage runs from the built layer alone: in a fresh interpreter whose ``sys.path`` holds only
the unpacked layer and a stand-in for the runtime's own AWS SDK, and under the real AWS Lambda
Runtime Interface Client (``awslambdaric``) talking to a Runtime API server on 127.0.0.1.

Both children run ``python -I -S``: no site-packages, no ``PYTHONPATH``, no current folder; the
only third-party code they can import is what the test puts on ``sys.path``, in Lambda's order
(``/var/task``, ``/opt/python``, the runtime's folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import FAKE_REGION

from ._runtime_api import TRACE_ROOT, RuntimeApi
from .conftest import host_target

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.layer

# The function's code, as deployed to /var/task next to the layer. When it runs, it records where
# every loaded module came from, so that the test can tell the layer was used.
STAGE_MODULE = """
import json, os, sys

from pydantic import BaseModel

from ceap_stage import ExecutionContext, stage


class Order(BaseModel):
    order_id: str
    amount: float


class Scored(BaseModel):
    order_id: str
    score: float


def _probe():
    path = os.environ.get("LAYER_PROBE")
    if path:
        files = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
        with open(path, "w") as fh:
            json.dump(files, fh)
    path = os.environ.get("LAYER_HOOKS_PROBE")
    if path:  # the SnapStart hooks still registered (the runtime pops before-snapshot hooks)
        import snapshot_restore_py as hooks
        names = lambda registry: [f"{f.__module__}.{f.__name__}" for f, _, _ in registry]
        with open(path, "w") as fh:
            json.dump({"before": names(hooks.get_before_snapshot()),
                       "after": names(hooks.get_after_restore())}, fh)


@stage
def handler(orders: list[Order], ctx: ExecutionContext) -> list[Scored]:
    _probe()
    return [Scored(order_id=o.order_id, score=o.amount * 1.5) for o in orders if o.amount >= 10]
"""

# Runs the stage directly: import, invoke each event, report results and where modules came from.
INVOKE_SCRIPT = """
import json, sys
stdlib = list(sys.path)
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path"]

class LambdaContext:
    function_name = "score"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:score"
    memory_limit_in_mb = 512
    aws_request_id = "req-direct"
    log_group_name = "/aws/lambda/score"
    log_stream_name = "2024/05/01/[$LATEST]0"
    def get_remaining_time_in_millis(self):
        return 60000

import score_stage
results = []
for event in spec["events"]:
    try:
        results.append({"result": score_stage.handler(event, LambdaContext())})
    except Exception as exc:
        results.append({"errorType": type(exc).__name__, "errorMessage": str(exc)})
files = {name: getattr(m, "__file__", None) for name, m in sys.modules.items()}
print(json.dumps({"stdlib": stdlib, "results": results, "files": files}))
"""

# Lambda's bootstrap: lay out sys.path as the runtime does, then hand over to awslambdaric.
RIC_BOOTSTRAP = """
import json, os, sys
sys.path[:0] = json.loads(sys.argv[1])
from awslambdaric.__main__ import main
main([sys.argv[0], os.environ["_HANDLER"]])
"""

ORDERS = [
    {"order_id": "o-1", "amount": 12.0},
    {"order_id": "o-2", "amount": 3.5},
    {"order_id": "o-3", "amount": 40.0},
]


def expected_scores(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"order_id": o["order_id"], "score": o["amount"] * 1.5} for o in orders if o["amount"] >= 10
    ]


@dataclass(frozen=True)
class Deployment:
    """A function as Lambda lays it out: its code, the unpacked layer, the runtime's folders."""

    task: Path  # /var/task
    layer: Path  # /opt/python
    sdk: Path  # boto3 & co, from the runtime
    ric: Path  # awslambdaric & co, from the runtime


@dataclass(frozen=True)
class Workflow:
    """A bucket on the moto server holding the previous stage's output for one execution."""

    endpoint: str
    client: S3Client
    bucket: str
    execution: str

    def event(self, previous: str = "Filter") -> dict[str, Any]:
        """The Step Functions event for the Score stage."""
        return {
            "executionId": self.execution,
            "currentStage": "Score",
            "previousStage": previous,
            "workflowBucket": self.bucket,
        }

    def child_env(self, **extra: str) -> dict[str, str]:
        """The environment of a child process: fake credentials, S3 endpoint = moto."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CEAP_"))}
        env.update(AWS_ENDPOINT_URL=self.endpoint, AWS_DEFAULT_REGION=FAKE_REGION, **extra)
        return env

    def assert_pointer_and_output(self, pointer: dict[str, Any]) -> None:
        """The result pointer names the output object, which holds the stage's output."""
        key = f"executions/{self.execution}/Score/output.json"
        expected = expected_scores(ORDERS)
        assert pointer["status"] == "SUCCESS"
        assert pointer["stage"] == "Score"
        assert pointer["executionId"] == self.execution
        assert pointer["recordsProcessed"] == len(expected)
        assert pointer["output"]["bucket"] == self.bucket
        assert pointer["output"]["key"] == key
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        assert pointer["output"]["bytes"] == len(body)
        assert pointer["output"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert json.loads(body) == expected


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, layer_python: Path, aws_sdk_dir: Path, ric_dir: Path
) -> Deployment:
    task = tmp_path_factory.mktemp("task")
    (task / "score_stage.py").write_text(STAGE_MODULE)
    return Deployment(task, layer_python, aws_sdk_dir, ric_dir)


@pytest.fixture
def workflow(moto_server: str, moto_server_client: S3Client, moto_bucket: str) -> Workflow:
    execution = "run-layer-1"
    moto_server_client.put_object(
        Bucket=moto_bucket,
        Key=f"executions/{execution}/Filter/output.json",
        Body=json.dumps(ORDERS).encode(),
        ContentType="application/json",
    )
    return Workflow(moto_server, moto_server_client, moto_bucket, execution)


def assert_loaded_from(
    files: dict[str, str | None], allowed: list[Path], stdlib: list[str]
) -> None:
    """Every module with a file (but the script itself) came from the stdlib or ``allowed``."""
    roots = [str(path) + os.sep for path in allowed] + [p.rstrip(os.sep) + os.sep for p in stdlib]
    strays = {
        name: file
        for name, file in files.items()
        if file is not None
        and name not in ("__main__", "__mp_main__")
        and not any(file.startswith(root) for root in roots)
    }
    assert not strays, f"modules imported from outside the layer/runtime folders: {strays}"


def test_stage_runs_from_the_layer_in_a_fresh_interpreter(
    tmp_path: Path, deployment: Deployment, workflow: Workflow
) -> None:
    # GIVEN the function's code, the unpacked layer and the runtime's SDK folder, nothing else
    path = [deployment.task, deployment.layer, deployment.sdk]
    spec = {
        "path": [str(p) for p in path],
        "events": [workflow.event(), workflow.event(previous="Missing")],
    }
    script = tmp_path / "invoke.py"
    script.write_text(INVOKE_SCRIPT)

    # WHEN a fresh interpreter imports the stage and invokes it against moto over HTTP
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(script), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=workflow.child_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    # THEN it wrote the output and returned the pointer, and failed the contract's way
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert not [p for p in report["stdlib"] if "-packages" in p], report["stdlib"]
    ok, missing = report["results"]
    assert "result" in ok, ok
    workflow.assert_pointer_and_output(ok["result"])
    assert missing["errorType"] == "InputNotFoundError"
    assert workflow.execution in missing["errorMessage"]
    assert "Missing/output.json" in missing["errorMessage"]

    # AND ceap_stage and its compiled dependencies came from the layer, the SDK from the runtime
    files = report["files"]
    for module in ("ceap_stage", "pydantic", "pydantic_core._pydantic_core", "orjson"):
        assert files[module].startswith(f"{deployment.layer}{os.sep}"), (module, files[module])
    assert files["botocore"].startswith(f"{deployment.sdk}{os.sep}"), files["botocore"]
    assert "boto3" not in files  # the store's client comes from botocore alone
    assert_loaded_from(files, path, report["stdlib"])


def ric_env(
    workflow: Workflow, deployment: Deployment, api: RuntimeApi, **extra: str
) -> dict[str, str]:
    """The environment Lambda gives the runtime interface client of the ``score`` function."""
    return workflow.child_env(
        AWS_LAMBDA_RUNTIME_API=api.address,
        _HANDLER="score_stage.handler",
        LAMBDA_TASK_ROOT=str(deployment.task),
        AWS_EXECUTION_ENV=f"AWS_Lambda_python{host_target()[0]}",
        AWS_LAMBDA_FUNCTION_NAME="score",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/score",
        AWS_LAMBDA_LOG_STREAM_NAME="2024/05/01/[$LATEST]0",
        **extra,
    )


def test_stage_runs_under_the_lambda_runtime_interface_client(
    tmp_path: Path, deployment: Deployment, workflow: Workflow
) -> None:
    # GIVEN the Runtime API with a good and a failing invocation queued
    probe = tmp_path / "probe.json"
    bootstrap = tmp_path / "bootstrap.py"
    bootstrap.write_text(RIC_BOOTSTRAP)
    path = [deployment.task, deployment.layer, deployment.sdk, deployment.ric]
    log = tmp_path / "function.log"
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for the X-Ray daemon
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(0.2)
    with daemon, RuntimeApi(sampled=True) as api, log.open("w") as log_file:
        ok_id = api.invoke(workflow.event())
        failing_id = api.invoke(workflow.event(previous="Missing"))

        # WHEN awslambdaric runs the handler from the layer, as Lambda's bootstrap does
        env = ric_env(
            workflow,
            deployment,
            api,
            AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
            LAYER_PROBE=str(probe),
        )
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", str(bootstrap), json.dumps([str(p) for p in path])],
            env=env,
            cwd=deployment.task,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            first = api.next_posted(timeout=60)
            second = api.next_posted(timeout=60)
        finally:
            child.kill()
            child.wait(timeout=10)
        segments = []
        with contextlib.suppress(TimeoutError):
            while True:
                segments.append(daemon.recv(65536).decode())
    output = log.read_text()

    # THEN the good invocation returned the result pointer...
    assert (first.kind, first.request_id) == ("response", ok_id), output
    workflow.assert_pointer_and_output(first.json())

    # ...and the failing one posted the contract's error class as errorType
    assert (second.kind, second.request_id) == ("error", failing_id), output
    error = second.json()
    assert error["errorType"] == "InputNotFoundError", error
    assert error["requestId"] == failing_id
    assert workflow.execution in error["errorMessage"]
    assert "Missing/output.json" in error["errorMessage"]

    # AND the handler's dependencies resolved to the layer copy, not the repo's or the venv's
    files = json.loads(probe.read_text())
    for module in ("ceap_stage", "pydantic_core._pydantic_core", "orjson", "aws_xray_sdk", "wrapt"):
        assert files[module].startswith(f"{deployment.layer}{os.sep}"), (module, files[module])
    assert files["awslambdaric"].startswith(f"{deployment.ric}{os.sep}")
    assert files["botocore"].startswith(f"{deployment.sdk}{os.sep}")

    # AND the tracing extra works from the layer: X-Ray subsegments reached the daemon address
    traced = [json.loads(datagram.split("\n", 1)[1]) for datagram in segments]
    assert {"read_input", "process", "write_output"} <= {seg["name"] for seg in traced}, traced
    s3_calls = {seg["aws"]["operation"] for seg in traced if seg.get("namespace") == "aws"}
    assert {"GetObject", "PutObject"} <= s3_calls, traced
    assert {seg["trace_id"] for seg in traced} == {TRACE_ROOT}


def test_snapstart_hooks_run_under_the_lambda_runtime_interface_client(
    tmp_path: Path, deployment: Deployment, workflow: Workflow
) -> None:
    # GIVEN a SnapStart initialisation: the runtime's snapshot_restore_py is on the path
    hooks_probe = tmp_path / "hooks.json"
    probe = tmp_path / "probe.json"
    bootstrap = tmp_path / "bootstrap.py"
    bootstrap.write_text(RIC_BOOTSTRAP)
    path = [deployment.task, deployment.layer, deployment.sdk, deployment.ric]
    log = tmp_path / "function.log"
    with RuntimeApi() as api, log.open("w") as log_file:
        ok_id = api.invoke(workflow.event())

        # WHEN awslambdaric initialises the function for a snapshot, "restores" it, invokes it
        env = ric_env(
            workflow,
            deployment,
            api,
            AWS_LAMBDA_INITIALIZATION_TYPE="snap-start",
            POWERTOOLS_TRACE_DISABLED="true",
            LAYER_PROBE=str(probe),
            LAYER_HOOKS_PROBE=str(hooks_probe),
        )
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", str(bootstrap), json.dumps([str(p) for p in path])],
            env=env,
            cwd=deployment.task,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            first = api.next_posted(timeout=60)
        finally:
            child.kill()
            child.wait(timeout=10)
        restored = api.restored.is_set()
    output = log.read_text()

    # THEN the before-snapshot hook ran (and was popped) before the restore, the after-restore
    # hook stays registered, and the invocation after the restore wrote the output
    assert restored, output
    assert (first.kind, first.request_id) == ("response", ok_id), output
    workflow.assert_pointer_and_output(first.json())
    hooks = json.loads(hooks_probe.read_text())
    assert hooks == {"before": [], "after": ["ceap_stage._snapstart.renew"]}, hooks
    files = json.loads(probe.read_text())
    assert files["ceap_stage._snapstart"].startswith(f"{deployment.layer}{os.sep}")
    assert files["snapshot_restore_py"].startswith(f"{deployment.ric}{os.sep}")
