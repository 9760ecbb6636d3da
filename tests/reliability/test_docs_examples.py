"""The Python examples of docs/reliability.md run as they are written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_the_example_runs(index: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    source = BLOCKS[index]
    exec(compile(source, f"docs/reliability.md[{index}]", "exec"), {"__name__": f"example{index}"})
