"""The Python examples of docs/glue.md run as they are written (on the shared Spark session)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PAGE = Path(__file__).resolve().parents[2] / "docs" / "glue.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _examples() -> dict[str, str]:
    examples: dict[str, str] = {}
    for body in _BLOCK.findall(PAGE.read_text()):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"# file: (\w+)\.py", first.strip())
        assert match, f"every Python block of glue.md names its file: {first!r}"
        examples[match.group(1)] = rest
    return examples


#: Examples that run Spark: they reuse the shared session instead of starting their own.
SPARK_EXAMPLES = {"first_job", "first_glue_step"}


@pytest.mark.parametrize("name", sorted(_examples()))
def test_the_example_runs(name: str, request: pytest.FixtureRequest) -> None:
    if name in SPARK_EXAMPLES:
        spark: SparkSession = request.getfixturevalue("spark")
        assert spark.getActiveSession() is not None
    exec(compile(_examples()[name], f"docs/glue.md:{name}.py", "exec"), {"__name__": name})


def test_the_page_has_its_examples() -> None:
    expected = {"first_job", "first_glue_step", "decorator", "arguments", "failure", "python_shell"}
    assert set(_examples()) >= expected
