"""Fixtures for ``package`` / ``deploy`` / ``init``: a layer cache shared by the session (a layer is
built once per target), small projects written into temporary folders, and the CLI run in-process
with a project folder as the working directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ceap_stage._cli import main

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cli:
    """The result of one ``ceap-stage`` call."""

    status: int
    out: str
    err: str


@pytest.fixture(scope="session")
def layer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``--cache-dir`` for every package of the session: each layer target is built once."""
    return tmp_path_factory.mktemp("layer-cache")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """Run ``ceap-stage`` in-process in a folder; forget the folder's modules afterwards."""
    saved_path = list(sys.path)
    runner = CliRunner(capsys, monkeypatch)
    yield runner
    sys.path[:] = saved_path
    for folder in runner.folders:
        prefix = str(folder.resolve()) + os.sep
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(prefix):
                del sys.modules[name]


class CliRunner:
    """Calls :func:`ceap_stage._cli.main` with a working directory; returns a :class:`Cli`."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.folders: list[Path] = []

    def __call__(self, *args: str | Path, cwd: Path = REPO) -> Cli:
        if cwd != REPO:
            self.folders.append(cwd)  # a project of the test: its modules are forgotten after
        self.monkeypatch.chdir(cwd)
        self.capsys.readouterr()
        status = main([str(a) for a in args])
        captured = self.capsys.readouterr()
        return Cli(status, captured.out, captured.err)


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root``; return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
