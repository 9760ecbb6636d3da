"""Cold start: tracing libraries are imported only by the provider that needs them.

Each case runs in a fresh interpreter: "not imported" can only be checked in a clean process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import last_json, run_python

CODE = """
import json, sys, tempfile
from ceap_stage import LocalStore, stage
import ceap_stage.observability
before = sorted(m for m in ('aws_xray_sdk', 'opentelemetry', 'aws_lambda_powertools')
                if m in sys.modules)

@stage(store=LocalStore(tempfile.mkdtemp()))
def ingest(data: dict) -> dict:
    return data

ingest({"executionId": "e1", "currentStage": "Ingest", "workflowBucket": "cold-bucket",
        "initialData": {"a": 1}}, None)
after = sorted(m for m in ('aws_xray_sdk', 'opentelemetry') if m in sys.modules)
sys.stdout.write("\\n" + json.dumps({"before": before, "after": after}) + "\\n")
"""
_CLEARED = (
    "CEAP_TRACER",
    "LAMBDA_TASK_ROOT",
    "AWS_LAMBDA_FUNCTION_NAME",
    "_X_AMZN_TRACE_ID",
    "POWERTOOLS_TRACE_DISABLED",
    "AWS_SAM_LOCAL",
    "CEAP_STORE",
)


def loaded(**env: str) -> dict[str, list[str]]:
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    full_env.update(env)
    report: dict[str, list[str]] = last_json(
        run_python(CODE, env=full_env, cwd=Path(__file__).parent)
    )
    return report


def test_importing_ceap_stage_and_its_observability_module_loads_no_tracer() -> None:
    assert loaded()["before"] == []


def test_tracer_off_imports_neither_x_ray_nor_opentelemetry() -> None:
    assert loaded(CEAP_TRACER="off")["after"] == []


def test_x_ray_without_a_trace_header_imports_neither() -> None:
    report = loaded(CEAP_TRACER="xray", AWS_LAMBDA_FUNCTION_NAME="f", LAMBDA_TASK_ROOT="/var")
    assert report["after"] == []


def test_otel_imports_opentelemetry_only() -> None:
    pytest.importorskip("opentelemetry")
    assert loaded(CEAP_TRACER="otel")["after"] == ["opentelemetry"]
