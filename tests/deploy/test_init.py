"""``ceap-stage init DIR``: the new project passes its own test and runs, in a fresh process; it
refuses a folder that holds something."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ceap_stage

from .conftest import CliRunner

BIN = Path(sys.executable).parent


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CEAP_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def test_a_new_project_passes_its_test_and_runs_out_of_the_box(tmp_path: Path) -> None:
    created = _run(BIN / "ceap-stage", "init", "order-flow", cwd=tmp_path)
    project = tmp_path / "order-flow"

    assert created.returncode == 0, created.stderr
    files = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore", "README.md", "order_flow/__init__.py", "order_flow/stages.py",
        "pyproject.toml", "tests/test_stages.py", "workflow.py",
    ]  # fmt: skip
    readme = (project / "README.md").read_text()
    assert "ceap-stage run workflow.py\npytest\n" in readme
    pyproject = (project / "pyproject.toml").read_text()
    assert f"ceap-stage>={ceap_stage.__version__}" in pyproject
    # ceap-stage is not on the package index: both files say to install it from a checkout or
    # a wheel first, and the README names the wheel of this version.
    assert "not on the package index yet" in pyproject
    assert "not on the package index yet" in readme
    assert "pip install /path/to/ceap-stage pytest" in readme
    assert f"ceap_stage-{ceap_stage.__version__}-py3-none-any.whl" in readme

    tested = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    ran = _run(BIN / "ceap-stage", "run", "workflow.py", cwd=project)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "KeepPaidOrders succeeded: 2 records" in ran.stdout


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")

    result = cli("init", tmp_path / "taken")

    assert result.status == 2
    assert result.err.strip() == (
        f"ceap-stage init: error: {tmp_path / 'taken'} is not empty; choose a new or empty folder"
    )
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("given", "package", "clash"),
    [
        ("test", "test", "the standard library module test"),
        ("Test", "test", "the standard library module test"),
        ("json", "json", "the standard library module json"),
        ("pytest", "pytest", "the installed module pytest"),
        ("test-stages", "test_stages", "the generated test module tests/test_stages.py"),
        ("workflow", "workflow", "the generated workflow.py"),
    ],
)
def test_init_refuses_a_name_whose_package_would_shadow_a_module(
    tmp_path: Path, cli: CliRunner, given: str, package: str, clash: str
) -> None:
    result = cli("init", tmp_path / given)

    assert result.status == 2
    assert result.err.strip() == (
        f"ceap-stage init: error: {given!r} would name the project's package {package}, which "
        f"would shadow {clash}; choose another name, e.g. {given.lower()}-flow"
    )
    assert not (tmp_path / given).exists()


def test_the_suggested_name_makes_a_project_that_passes_its_test(tmp_path: Path) -> None:
    refused = _run(BIN / "ceap-stage", "init", "json", cwd=tmp_path)
    suggested = refused.stderr.strip().rsplit("e.g. ", 1)[-1]
    assert (refused.returncode, suggested) == (2, "json-flow")

    assert _run(BIN / "ceap-stage", "init", suggested, cwd=tmp_path).returncode == 0
    project = tmp_path / suggested
    assert (project / "json_flow" / "stages.py").is_file()
    tested = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout
