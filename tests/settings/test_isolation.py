"""Test isolation: a module-level handler writes where each test's ``CEAP_STORE`` says."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

STAGE_MODULE = """
from ceap_stage import stage


@stage
def handler(data: dict) -> dict:
    return data
"""

TESTS = """
from pathlib import Path

from ceap_stage.testing import build_event
from echo_stage import handler

KEY = "ceap-test-bucket/executions/run-{n}/Echo/output.json"


def _invoke(n, lambda_context):
    event = build_event(execution_id=f"run-{n}", current_stage="Echo", initial_data={"n": n})
    return handler(event, lambda_context)


def test_first(monkeypatch, tmp_path, lambda_context):
    monkeypatch.setenv("CEAP_STORE", tmp_path.as_uri())
    _invoke(1, lambda_context)
    assert (tmp_path / KEY.format(n=1)).exists()


def test_second(monkeypatch, tmp_path, lambda_context):
    monkeypatch.setenv("CEAP_STORE", tmp_path.as_uri())
    _invoke(2, lambda_context)
    assert (tmp_path / KEY.format(n=2)).exists()
    assert list(tmp_path.parent.glob("test_first*/" + KEY.format(n=2))) == []


def test_third_with_an_explicit_store(local_store, lambda_context):
    from ceap_stage.testing import run_stage

    run = run_stage(handler, store=local_store, initial_data={"n": 3})
    assert run.output == {"n": 3}
"""


def test_each_test_writes_where_its_ceap_store_says(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(echo_stage=STAGE_MODULE, test_isolation=TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
