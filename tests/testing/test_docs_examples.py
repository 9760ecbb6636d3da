"""The code in docs/testing.md and docs/observability.md runs, as a user's test files would."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ceap_stage import ExecutionContext, LocalStore, stage
from ceap_stage.testing import FakeLambdaContext, run_stage

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text()
    return [body for lang, body in _BLOCK.findall(text) if lang == language]


def files_of(page: str) -> dict[str, str]:
    """The page's Python blocks, by the ``# file: name.py`` line each starts with."""
    files: dict[str, str] = {}
    for body in blocks(page, "python"):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"# file: (\w+\.py)", first.strip())
        assert match, f"every Python block of {page} names its file: {first!r}"
        files[match.group(1)] = files.get(match.group(1), "") + rest
    return files


@pytest.mark.parametrize("page", ["testing.md", "observability.md"])
def test_the_pages_examples_pass_as_a_users_tests(pytester: pytest.Pytester, page: str) -> None:
    files = files_of(page)
    expected = sum(
        source.count("\ndef test_") + source.startswith("def test_") for source in files.values()
    )
    assert expected >= 2
    for name, source in files.items():
        pytester.makepyfile(**{name.removesuffix(".py"): source})
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=expected)


class Order(BaseModel):
    order_id: str
    amount: float


def _real_finished_record() -> dict[str, Any]:
    @stage(name="ScoreStage")
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        return orders

    run = run_stage(
        score,
        store=LocalStore(tempfile.mkdtemp()),
        previous_output=[{"order_id": "a", "amount": 12}],
        previous_stage="FilterStage",
        workflow_name="orders",
        lambda_context=FakeLambdaContext(),
    )
    return run.logs[-1]


def test_the_sample_log_line_has_the_keys_of_a_real_one() -> None:
    (sample,) = [json.loads(b) for b in blocks("observability.md", "json") if '"level"' in b]
    real = _real_finished_record()
    assert real["message"] == sample["message"] == "stage finished"
    assert set(sample) == set(real)
    assert {k: type(v) for k, v in sample.items()} == {k: type(v) for k, v in real.items()}


def test_the_sample_metric_document_has_the_metrics_of_a_real_one() -> None:
    (sample,) = [json.loads(b) for b in blocks("observability.md", "json") if '"_aws"' in b]

    @stage
    def echo(data: list[dict[str, int]]) -> list[dict[str, int]]:
        return data

    run = run_stage(echo, store=LocalStore(tempfile.mkdtemp()), previous_output=[{"a": 1}])
    real = run.metrics[0]
    assert set(sample) == set(real)
    assert (
        sample["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        == (real["_aws"]["CloudWatchMetrics"][0]["Metrics"])
    )
    assert (
        sample["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        == (real["_aws"]["CloudWatchMetrics"][0]["Dimensions"])
    )
