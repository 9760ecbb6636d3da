"""Inside Lambda a handler resolves its settings, store, S3 client and observer at import;
outside Lambda at its first invocation. Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import last_json, run_python

HANDLER_MODULE = """
from ceap_stage import stage


@stage
def handler(data: dict) -> dict:
    return data
"""

PROBE = """
import gc, json, os, sys
if os.environ.get("PROBE_GC_OFF"):
    gc.disable()  # the user's own choice, before the handler is imported
import ceap_stage
lean = "botocore" not in sys.modules
import lambda_handler
runtime = lambda_handler.handler.runtime
resolved = runtime._resolved
store = resolved.store if resolved else None
client = getattr(store, "_client", None)
print(json.dumps({
    # gc.get_objects() leaves out the frozen generation: a frozen client is not in it.
    "client_frozen": client is not None and not any(o is client for o in gc.get_objects()),
    "frozen_objects": gc.get_freeze_count() > 0,
    "gc_enabled": gc.isenabled(),
    "lean_import": lean,
    "resolved_at_import": resolved is not None,
    "client_at_import": store is not None and getattr(store, "_client", None) is not None,
    "observer_at_import": resolved is not None and resolved.observer is not None,
    "botocore_after_import": "botocore" in sys.modules,
    "boto3_after_import": "boto3" in sys.modules,
    "sqs_models_after_import": "ceap_stage._sqs" in sys.modules,
    "batch_code_after_import": "ceap_stage._batch" in sys.modules,
}))
"""


def _probe(tmp_path: Path, extra_env: dict[str, str]) -> dict[str, bool]:
    (tmp_path / "lambda_handler.py").write_text(HANDLER_MODULE)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_LAMBDA_", "CEAP_", "_X_AMZN", "AWS_SAM"))
    }
    env.update(extra_env)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    result: dict[str, bool] = last_json(run_python(PROBE, env=env, cwd=tmp_path))
    return result


LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "orders-filter",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def test_inside_lambda_the_client_and_observer_exist_after_import(tmp_path: Path) -> None:
    result = _probe(tmp_path, LAMBDA_ENV)
    assert result == {
        "client_frozen": True,  # made with the collector paused, then frozen (CEAP_GC_FREEZE)
        "frozen_objects": True,
        "gc_enabled": True,  # enabled again after the freeze
        "lean_import": True,
        "resolved_at_import": True,
        "client_at_import": True,
        "observer_at_import": True,
        "botocore_after_import": True,
        "boto3_after_import": False,  # the store's client comes from botocore alone
        "sqs_models_after_import": False,  # defined only when a queue batch needs them
        "batch_code_after_import": False,
    }


def test_outside_lambda_nothing_is_created_at_import(tmp_path: Path) -> None:
    result = _probe(tmp_path, {})
    assert result == {
        "client_frozen": False,
        "frozen_objects": False,  # the garbage collector is left alone outside Lambda
        "gc_enabled": True,
        "lean_import": True,
        "resolved_at_import": False,
        "client_at_import": False,
        "observer_at_import": False,
        "botocore_after_import": False,
        "boto3_after_import": False,
        "sqs_models_after_import": False,
        "batch_code_after_import": False,
    }


def test_gc_freeze_false_leaves_the_garbage_collector_alone(tmp_path: Path) -> None:
    result = _probe(tmp_path, {**LAMBDA_ENV, "CEAP_GC_FREEZE": "false"})
    assert result["client_at_import"] is True
    assert (result["client_frozen"], result["frozen_objects"]) == (False, False)
    assert result["gc_enabled"] is True


def test_a_collector_the_user_disabled_stays_disabled(tmp_path: Path) -> None:
    result = _probe(tmp_path, {**LAMBDA_ENV, "PROBE_GC_OFF": "1"})
    assert (result["client_frozen"], result["gc_enabled"]) == (True, False)


def test_sam_local_is_not_lambda(tmp_path: Path) -> None:
    result = _probe(tmp_path, {**LAMBDA_ENV, "AWS_SAM_LOCAL": "true"})
    assert result["resolved_at_import"] is False


def test_a_local_store_inside_lambda_is_resolved_at_import_too(tmp_path: Path) -> None:
    env = {**LAMBDA_ENV, "CEAP_STORE": (tmp_path / "out").as_uri()}
    result = _probe(tmp_path, env)
    assert result["resolved_at_import"] is True
    assert result["client_at_import"] is False  # a LocalStore has no client


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CEAP_TRACER", "zipkin", "CEAP_TRACER must be one of off, otel, xray, not 'zipkin'"),
        (
            "CEAP_GC_FREEZE",
            "sometimes",
            "CEAP_GC_FREEZE must be true or false (or 1/0, yes/no, on/off), not 'sometimes'",
        ),
        ("POWERTOOLS_LOG_LEVEL", "LOUD", "POWERTOOLS_LOG_LEVEL must be one of DEBUG, INFO,"),
    ],
)
def test_a_bad_setting_inside_lambda_fails_the_first_invocation_not_the_import(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    (tmp_path / "lambda_handler.py").write_text(HANDLER_MODULE)
    code = (
        "import gc, lambda_handler\n"
        "from ceap_stage import ConfigurationError\n"
        "print('frozen', gc.get_freeze_count() > 0)\n"
        "try:\n"
        "    lambda_handler.handler({}, None)\n"
        "except ConfigurationError as exc:\n"
        "    print('ConfigurationError', exc)\n"
    )
    env = {**os.environ, **LAMBDA_ENV, variable: value}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    stdout = run_python(code, env=env, cwd=tmp_path)
    assert "frozen False" in stdout  # nothing was made at import, so nothing was frozen
    assert f"ConfigurationError {message}" in stdout


def test_settings_resolved_inside_lambda_are_fixed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # In-process stand-in for a Lambda environment: the handler resolves when created and
    # keeps that resolution (the environment of a Lambda process does not change).
    from ceap_stage import LocalStore, stage
    from ceap_stage.testing import build_event

    for name, value in LAMBDA_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CEAP_GC_FREEZE", "false")  # never freeze the test process's objects
    monkeypatch.setenv("CEAP_STORE", (tmp_path / "init").as_uri())

    @stage
    def fixed(data: dict[str, int]) -> dict[str, int]:
        return data

    monkeypatch.setenv("CEAP_STORE", (tmp_path / "later").as_uri())
    fixed(build_event(execution_id="r1", current_stage="S", initial_data={"n": 1}), None)
    assert isinstance(fixed.runtime.store, LocalStore)
    assert fixed.runtime.store.root == tmp_path / "init"
    assert fixed.runtime.settings.in_lambda
