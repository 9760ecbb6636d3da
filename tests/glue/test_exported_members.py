"""The public surface of ``ceap_stage.glue``: sorted, documented with examples, and light."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

import ceap_stage.glue
from ceap_stage.glue import _args, _output


def test_all_is_sorted_unique_and_importable() -> None:
    names = ceap_stage.glue.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(ceap_stage.glue, name) is not None


@pytest.mark.parametrize("name", ceap_stage.glue.__all__)
def test_every_public_name_has_a_docstring_with_an_example(name: str) -> None:
    doc = getattr(ceap_stage.glue, name).__doc__ or ""
    assert "Example:" in doc, f"{name} has no example"


@pytest.mark.parametrize("module", [_args, _output])
def test_the_pure_python_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


def test_importing_glue_needs_no_spark_and_no_aws_client() -> None:
    code = (
        "import sys, ceap_stage.glue; "
        "print([m for m in ('pyspark', 'py4j', 'boto3', 'botocore', 'awsglue') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
