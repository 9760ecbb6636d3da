"""docs/contract.md is the wire contract every "section N" reference in the project points to."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "contract.md"
#: Where references to the contract live.
_SEARCHED = ("ceap_stage", "docs", "examples", "tests", "bench", "layer")
_REFERENCE = re.compile(r"contract(?:\.md)?(?:\]\([^)]*\))? sections? (\d+)(?:-(\d+))?", re.I)


def _sections() -> dict[int, str]:
    found = re.findall(r"^## (\d+)\. (.+)$", CONTRACT.read_text(), flags=re.M)
    return {int(number): title for number, title in found}


def _project_texts() -> list[tuple[Path, str]]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    for top in _SEARCHED:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md", ".yaml")]
    return [(p, p.read_text()) for p in files if p.is_file() and p != CONTRACT]


def test_the_sections_are_numbered_one_to_nine_in_order():
    sections = _sections()
    assert list(sections) == list(range(1, 10))
    assert sections[2].startswith("Event")
    assert sections[3] == "Storage layout"
    assert sections[5].startswith("Failure")
    # Sections not implemented yet say so in their title.
    # Sections 7 (fan-out), 8 (queue batches) and 9 (Kotlin stages) have landed.
    assert [n for n, title in sections.items() if "(planned)" in title] == []


def test_every_section_reference_names_a_section_that_exists():
    sections = _sections()
    references = 0
    for path, text in _project_texts():
        for match in _REFERENCE.finditer(text):
            first, last = int(match[1]), int(match[2] or match[1])
            references += 1
            assert first in sections, f"{path}: {match[0]!r}"
            assert last in sections, f"{path}: {match[0]!r}"
    assert references >= 15  # the code, tests and docs do cite it


def test_no_reference_points_to_a_document_the_project_does_not_have():
    stale = [
        str(path.relative_to(ROOT))
        for path, text in _project_texts()
        if re.search(r"CONTRACT\s+section", text)
    ]
    assert stale == []


def test_the_page_is_in_the_site_navigation():
    assert re.search(r"^  - .+: contract\.md$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)


def test_the_public_api_example_runs(tmp_path):
    text = CONTRACT.read_text()
    section = text[text.index("## 6.") : text.index("## 7.")]
    (source,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict[str, object] = {"__name__": "contract_example"}
    exec(compile(source, "docs/contract.md:6", "exec"), namespace)
    from ceap_stage import LocalStore, WorkflowLambdaHandler
    from ceap_stage._handler import StageHandler
    from ceap_stage.testing import run_stage

    handler, score_handler = namespace["handler"], namespace["score_handler"]
    assert isinstance(handler, StageHandler)
    assert isinstance(score_handler, WorkflowLambdaHandler)
    for stage in (handler, score_handler):
        run = run_stage(
            stage,
            previous_output=[{"order_id": "o-1", "amount": 50.0}],
            store=LocalStore(tmp_path),
        )
        assert [item.model_dump() for item in run.output] == [{"order_id": "o-1", "score": 0.5}]
        assert run.result["status"] == "SUCCESS"
