"""The public surface of ceap_stage.workflow: sorted, documented, light, examples that run."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

from ceap_stage import workflow

MODULES = [
    "_kinds",
    "_lambda_kind",
    "_glue_kind",
    "_config",
    "_asl",
    "_paths",
    "_template",
    "_loader",
    "_runner",
]


def test_all_is_sorted_unique_and_every_name_is_documented():
    assert workflow.__all__ == sorted(workflow.__all__)
    assert len(set(workflow.__all__)) == len(workflow.__all__)
    for name in workflow.__all__:
        value = getattr(workflow, name)
        if isinstance(value, tuple):  # the retry error lists are documented in the module
            continue
        assert value.__doc__, f"{name} has no docstring"


def test_star_import_gives_exactly_the_public_names():
    namespace: dict[str, object] = {}
    exec("from ceap_stage.workflow import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == workflow.__all__


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    mod = importlib.import_module(f"ceap_stage.workflow.{module}")
    failures, _tried = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_generating_asl_imports_nothing_heavy():
    code = (
        "import sys; from ceap_stage.workflow import build_definition, build_template; "
        "heavy = [m for m in ('boto3', 'botocore', 'pyspark', 'yaml', "
        "'ceap_stage.workflow._runner', 'aws_lambda_powertools') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
