"""Run the npm asl-validator on many definitions in one node process (node starts slowly)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "node_modules" / "asl-validator"
SCRIPT = Path(__file__).with_name("validate_asl.js")


def require_validator() -> str:
    node = shutil.which("node")
    if node is None or not VALIDATOR.is_dir():
        pytest.skip("the npm asl-validator is not installed (npm install)")
    return node


def validate_definitions(definitions: list[dict[str, Any]], directory: Path) -> dict[str, Any]:
    """Validate each definition; return {file name: errors} for the invalid ones."""
    node = require_validator()
    paths = []
    for index, definition in enumerate(definitions):
        path = directory / f"definition-{index:04d}.json"
        path.write_text(json.dumps(definition))
        paths.append(str(path))
    proc = subprocess.run(
        [node, str(SCRIPT), *paths], capture_output=True, text=True, timeout=120, check=True
    )
    verdicts: dict[str, Any] = json.loads(proc.stdout)
    assert len(verdicts) == len(paths)
    return {name: errors for name, errors in verdicts.items() if errors is not None}
