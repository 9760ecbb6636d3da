"""The Python examples of docs/runtime.md and docs/storage.md run as they are written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _files(page: str) -> dict[str, str]:
    """The page's Python blocks joined by the ``# file: name.py`` line each starts with."""
    files: dict[str, str] = {}
    for body in _BLOCK.findall((DOCS / page).read_text()):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"# file: (\w+)\.py", first.strip())
        assert match, f"every Python block of {page} names its file: {first!r}"
        files[match.group(1)] = files.get(match.group(1), "") + rest
    return files


_PAGES = ("runtime.md", "storage.md", "configuration.md")
_EXAMPLES = [(page, name) for page in _PAGES for name in _files(page)]


@pytest.mark.parametrize(("page", "name"), _EXAMPLES)
def test_the_example_runs(page: str, name: str, monkeypatch: pytest.MonkeyPatch):
    for variable in ("CEAP_STORE", "CEAP_WORKFLOW_BUCKET"):
        monkeypatch.setenv(variable, "")  # restored (unset) after the test, whatever it sets
        monkeypatch.delenv(variable)
    source = _files(page)[name]
    exec(compile(source, f"docs/{page}:{name}.py", "exec"), {"__name__": name})


def test_every_page_has_examples():
    assert len([p for p, _ in _EXAMPLES if p == "runtime.md"]) >= 4
    assert len([p for p, _ in _EXAMPLES if p == "storage.md"]) >= 3
    assert len([p for p, _ in _EXAMPLES if p == "configuration.md"]) >= 1
