"""X-Ray: subsegments and annotations in Lambda with a trace header; never imported otherwise.

The X-Ray provider goes through Powertools' ``Tracer`` (``CEAP_TRACER=xray``, the default in
Lambda).

Each case runs in a fresh interpreter (``_trace_probe.py``): patching botocore and importing
X-Ray are process-wide, and "not imported" can only be checked in a clean process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROBE = Path(__file__).with_name("_trace_probe.py")
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "score-fn"}
_CLEARED = (
    "LAMBDA_TASK_ROOT",
    "AWS_LAMBDA_FUNCTION_NAME",
    "_X_AMZN_TRACE_ID",
    "POWERTOOLS_TRACE_DISABLED",
    "AWS_XRAY_SDK_ENABLED",
    "AWS_SAM_LOCAL",
)


def probe(*args: str, **env: str) -> dict[str, Any]:
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    full_env.update(env)
    done = subprocess.run(
        [sys.executable, str(PROBE), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def flatten(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entity in entities:
        out.append(entity)
        out.extend(flatten(entity.get("subsegments", [])))
    return out


def test_in_lambda_with_a_trace_header_the_three_steps_are_annotated_subsegments() -> None:
    report = probe("capture", _X_AMZN_TRACE_ID=TRACE_HEADER, **LAMBDA)
    entities = flatten(report["entities"])
    # One subsegment per invocation, named after the stage, child of the Lambda facade segment.
    [invocation] = [e for e in entities if e["name"] == "Score"]
    assert invocation["parent_id"] == "53995c3f42cd8ad8"
    assert invocation["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert invocation["annotations"] == {"execution_id": "run-t", "stage": "Score", "records": 1}
    assert "fault" not in invocation
    steps = {
        e["name"]: e for e in entities if e["name"] in ("read_input", "process", "write_output")
    }
    assert set(steps) == {"read_input", "process", "write_output"}
    for step in steps.values():
        assert step["annotations"] == {"execution_id": "run-t", "stage": "Score"}
        assert step["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
        assert step["parent_id"] == invocation["id"]
        assert invocation["start_time"] <= step["start_time"] <= step["end_time"]
        assert step["end_time"] <= invocation["end_time"]
    # The S3 calls are traced AWS calls, nested in the step that made them.
    s3_calls = {e["aws"]["operation"]: e for e in entities if e.get("namespace") == "aws"}
    assert s3_calls["GetObject"]["parent_id"] == steps["read_input"]["id"]
    assert s3_calls["PutObject"]["parent_id"] == steps["write_output"]["id"]
    assert s3_calls["GetObject"]["aws"]["bucket_name"] == "trace-bucket"


def test_a_failing_step_is_a_fault_named_by_its_class_only() -> None:
    report = probe("capture", "fail", _X_AMZN_TRACE_ID=TRACE_HEADER, **LAMBDA)
    steps = {e["name"]: e for e in flatten(report["entities"])}
    assert steps["process"]["fault"] is True
    assert steps["process"]["annotations"]["error"] == "ValueError"
    assert steps["Score"]["fault"] is True  # the invocation's subsegment too
    assert steps["Score"]["annotations"]["error"] == "ValueError"
    assert "records" not in steps["Score"]["annotations"]
    assert "the stage failed" not in json.dumps(report["entities"])
    assert "write_output" not in steps


def test_x_ray_is_imported_when_tracing_is_on() -> None:
    assert probe("imports", _X_AMZN_TRACE_ID=TRACE_HEADER, **LAMBDA)["xray_imported"] is True


def test_outside_lambda_x_ray_is_never_imported() -> None:
    assert probe("imports", _X_AMZN_TRACE_ID=TRACE_HEADER)["xray_imported"] is False


def test_in_lambda_without_a_trace_header_x_ray_is_never_imported() -> None:
    assert probe("imports", **LAMBDA)["xray_imported"] is False


def test_powertools_trace_disabled_keeps_x_ray_out() -> None:
    report = probe(
        "imports", _X_AMZN_TRACE_ID=TRACE_HEADER, POWERTOOLS_TRACE_DISABLED="true", **LAMBDA
    )
    assert report["xray_imported"] is False


def test_sam_local_keeps_x_ray_out() -> None:
    report = probe("imports", _X_AMZN_TRACE_ID=TRACE_HEADER, AWS_SAM_LOCAL="true", **LAMBDA)
    assert report["xray_imported"] is False


def test_without_aws_xray_sdk_the_stage_runs_untraced_and_warns_once(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    from ceap_stage import LocalStore, stage
    from ceap_stage._context import output_key
    from ceap_stage.observability import XRayTracing
    from ceap_stage.testing import FakeLambdaContext

    monkeypatch.setattr(XRayTracing, "installed", staticmethod(lambda: False))
    monkeypatch.setenv("CEAP_TRACER", "xray")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE_HEADER)
    store = LocalStore(tmp_path)
    store.put("trace-bucket", output_key("run-t", "Filter"), b"[]")

    @stage(store=store)
    def score(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return orders

    ev = {
        "executionId": "run-t",
        "currentStage": "Score",
        "previousStage": "Filter",
        "workflowBucket": "trace-bucket",
    }
    for _ in range(2):
        assert score(ev, FakeLambdaContext())["status"] == "SUCCESS"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    warnings = [r for r in lines if r.get("level") == "WARNING"]
    assert len(warnings) == 1
    assert "aws_xray_sdk is not installed" in warnings[0]["message"]
    assert "pip install 'ceap-stage[tracing]'" in warnings[0]["message"]
    assert warnings[0]["execution_id"] == "run-t"
