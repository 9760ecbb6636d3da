"""``ceap-stage package``: what goes in the code zips, reproducibility, the Glue artefacts, the
sizes printed, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO, CliRunner, write_project
from .projects import ZIP_A, ZIP_B, two_packages

EXAMPLE = REPO / "examples" / "engagement" / "workflow.py"


def _manifest(out: Path) -> dict[str, dict[str, object]]:
    data = json.loads((out / "manifest.json").read_text())
    return {item["file"]: item for item in data["artifacts"]}


def test_each_function_gets_the_project_packages_its_handler_needs(
    tmp_path: Path, cli: CliRunner, layer_cache: Path
) -> None:
    project = two_packages(tmp_path / "project")
    out = tmp_path / "out"

    result = cli("package", "workflow.py", "--artifacts-bucket", "art-bucket", "--out", out,
                 "--cache-dir", layer_cache, cwd=project)  # fmt: skip

    assert result.status == 0, result.err
    zips = sorted((out / "lambda").glob("*.zip"))
    assert [z.name for z in zips] == ["pkg_a+pkg_common+pkg_helpers.zip", "pkg_b+pkg_common.zip"]
    # the handler's package, what it imports from the project (at any depth, inside functions
    # too); no tests, caches, virtualenvs, hidden folders, or packages nobody imports
    assert zipfile.ZipFile(zips[0]).namelist() == ZIP_A
    assert zipfile.ZipFile(zips[1]).namelist() == ZIP_B
    # Glue: the script as it is, and the installed ceap-stage as a wheel
    assert (out / "glue" / "G" / "enrich.py").read_text() == "print('the Glue job')\n"
    wheels = list((out / "glue").glob("ceap_stage-*-py3-none-any.whl"))
    assert len(wheels) == 1
    # every artifact is in the manifest under a content-addressed key, and its size is printed
    manifest = _manifest(out)
    for path in [*zips, out / "glue" / "G" / "enrich.py", wheels[0], out / "template.json"]:
        item = manifest[path.relative_to(out).as_posix()]
        size = path.stat().st_size
        assert item["bytes"] == size
        assert str(item["key"]).endswith(f"/{item['sha256']}/{path.name}")
        assert f"({size} B" in result.out
    assert any(name.startswith("layer/") for name in manifest)


def test_the_same_inputs_give_byte_identical_artifacts(
    tmp_path: Path, cli: CliRunner, layer_cache: Path
) -> None:
    project = two_packages(tmp_path / "project")
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        result = cli("package", "workflow.py", "--artifacts-bucket", "art-bucket", "--out", out,
                     "--cache-dir", layer_cache, cwd=project)  # fmt: skip
        assert result.status == 0, result.err
        # touch the sources between the two runs: mtimes must not matter
        for path in project.rglob("*.py"):
            path.touch()

    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative


def test_changing_one_stage_changes_only_its_zip(
    tmp_path: Path, cli: CliRunner, layer_cache: Path
) -> None:
    project = two_packages(tmp_path / "project")
    out = tmp_path / "out"
    args = ("package", "workflow.py", "--artifacts-bucket", "art-bucket", "--out", out,
            "--cache-dir", layer_cache)  # fmt: skip
    assert cli(*args, cwd=project).status == 0
    before = _manifest(out)
    handler = project / "pkg_b" / "handler.py"
    handler.write_text(handler.read_text().replace("> 1", "> 2"))

    assert cli(*args, cwd=project).status == 0

    after = _manifest(out)
    changed = sorted(f for f in before if before[f]["sha256"] != after[f]["sha256"])
    assert changed == ["lambda/pkg_b+pkg_common.zip", "template.json"]


def test_the_example_packages_into_one_zip_without_its_tests(
    tmp_path: Path, cli: CliRunner, layer_cache: Path
) -> None:
    out = tmp_path / "out"
    result = cli("package", EXAMPLE, "--artifacts-bucket", "art-bucket", "--out", out,
                 "--cache-dir", layer_cache)  # fmt: skip

    assert result.status == 0, result.err
    (zipped,) = (out / "lambda").glob("*.zip")
    names = zipfile.ZipFile(zipped).namelist()
    assert "examples/engagement/stages.py" in names
    assert not [n for n in names if "score_stage" in n or "test" in n or "__pycache__" in n]
    assert not [n for n in names if n.startswith("ceap_stage")]  # the layer provides it
    template = json.loads((out / "template.json").read_text())
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == 5


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"pkg_a/handler.py": "import no_such_module_anywhere\n"},
            "step A: the module of handler 'pkg_a.handler:handle' imports "
            "'no_such_module_anywhere', which is not installed here",
        ),
        (
            {"pkg_a/handler.py": "raise RuntimeError('boom at import')\n"},
            "step A: importing the module of handler 'pkg_a.handler:handle' raised "
            "RuntimeError: boom at import",
        ),
        (
            {"pkg_a/handler.py": "def handle(:\n"},
            "step A: importing the module of handler 'pkg_a.handler:handle' raised SyntaxError",
        ),
        (
            {"pkg_a/handler.py": "x = 1\n"},
            "step A: handler 'pkg_a.handler:handle': no attribute 'handle'",
        ),
        ({"jobs/enrich.py": None}, "step G: Glue script jobs/enrich.py not found at"),
    ],
    ids=[
        "dependency-not-installed",
        "module-raises",
        "syntax-error",
        "no-such-attribute",
        "glue-script-missing",
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path,
    cli: CliRunner,
    layer_cache: Path,
    files: dict[str, str | None],
    expected: str,
) -> None:
    project = two_packages(tmp_path / "project")
    for name, text in files.items():
        if text is None:
            (project / name).unlink()
        else:
            (project / name).write_text(text)
    out = tmp_path / "out"

    result = cli("package", "workflow.py", "--artifacts-bucket", "art-bucket", "--out", out,
                 "--cache-dir", layer_cache, cwd=project)  # fmt: skip

    assert result.status == 2
    assert result.err.startswith(f"ceap-stage package: error: {expected}"), result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not out.exists()


def test_a_folder_holding_something_else_is_not_overwritten(
    tmp_path: Path, cli: CliRunner, layer_cache: Path
) -> None:
    out = write_project(tmp_path / "out", {"notes.txt": "mine"})
    result = cli("package", EXAMPLE, "--artifacts-bucket", "art-bucket", "--out", out,
                 "--cache-dir", layer_cache)  # fmt: skip

    assert result.status == 2
    assert "is not empty and holds no earlier package" in result.err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("arn", ["ceap-layer", "arn:aws:lambda:eu-west-1:123:layer:ceap:1"])
def test_a_layer_arn_that_is_no_layer_version_arn_is_refused_before_building(
    tmp_path: Path, cli: CliRunner, arn: str
) -> None:
    out = tmp_path / "out"
    result = cli("package", EXAMPLE, "--artifacts-bucket", "art-bucket", "--out", out,
                 "--layer-arn", arn)  # fmt: skip
    assert result.status == 2
    assert result.err.strip() == (
        f"ceap-stage package: error: --layer-arn {arn!r} is not a layer version ARN "
        "(arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)"
    )
    assert not out.exists()


def test_a_bad_artifacts_bucket_name_is_a_usage_error(tmp_path: Path, cli: CliRunner) -> None:
    result = cli("package", EXAMPLE, "--artifacts-bucket", "Not_A_Bucket", "--out", tmp_path)
    assert result.status == 2
    assert "--artifacts-bucket" in result.err


def test_a_dependency_nothing_on_lambda_provides_is_warned_about(
    tmp_path: Path, cli: CliRunner, layer_cache: Path
) -> None:
    project = two_packages(tmp_path / "project")
    handler = project / "pkg_b" / "handler.py"
    handler.write_text(
        "import yaml  # not in the layer, not in the runtime\n" + handler.read_text()
    )
    models = project / "pkg_common" / "models.py"
    models.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import mypy_boto3_s3  # for the type checker only\n"
        "try:\n    import ujson\nexcept ImportError:  # optional\n    ujson = None\n"
        "import boto3, json, pydantic  # the runtime, the standard library, the layer\n"
        + models.read_text()
    )
    out = tmp_path / "out"
    result = cli("package", "workflow.py", "--artifacts-bucket", "art-bucket", "--out", out,
                 "--cache-dir", layer_cache, cwd=project)  # fmt: skip

    assert result.status == 0, result.err  # a warning, not an error: the user may vendor it
    warnings = [line for line in result.out.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: step B's code imports yaml, which neither its code zip, the ceap-stage layer "
        "nor the Lambda runtime provides: the function will fail to import it. Vendor it into "
        "the project (a folder beside the handler's package) or attach a layer that has it."
    ]
