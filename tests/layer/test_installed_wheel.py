"""``ceap-stage layer``: the builder ships in the package, and packs the installed ceap-stage into
a wheel without a source tree, a network or a build backend."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ceap_stage
from ceap_stage import _layer
from ceap_stage._errors import LayerBuildError, PackagingError

CLI = Path(sys.executable).with_name("ceap-stage")


def test_the_installed_wheel_is_reproducible_and_holds_the_package(tmp_path: Path) -> None:
    first = _layer.installed_wheel(tmp_path / "a")
    second = _layer.installed_wheel(tmp_path / "b", epoch=_layer.ZIP_EPOCH)

    assert first.name == f"ceap_stage-{ceap_stage.__version__}-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()
    package = Path(ceap_stage.__file__).parent
    expected = {
        f"ceap_stage/{p.relative_to(package).as_posix()}"
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        info = f"ceap_stage-{ceap_stage.__version__}.dist-info"
        assert {n for n in names if n.startswith("ceap_stage/")} == expected
        assert names[-1] == f"{info}/RECORD"
        assert "Name: ceap-stage" in zf.read(f"{info}/METADATA").decode()
        assert "Tag: py3-none-any" in zf.read(f"{info}/WHEEL").decode()
        rows = list(csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode())))
        assert {row[0] for row in rows} == set(names)
        for name, digest, size in rows[:-1]:
            data = zf.read(name)
            expected_digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
            assert digest == f"sha256={expected_digest.rstrip(b'=').decode()}"
            assert int(size) == len(data)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_the_layer_errors_belong_to_the_error_tree() -> None:
    assert issubclass(_layer.BudgetExceededError, LayerBuildError)
    assert issubclass(LayerBuildError, PackagingError)
    assert issubclass(PackagingError, ceap_stage.CeapStageError)


def test_the_layer_command_is_part_of_the_cli() -> None:
    proc = subprocess.run(
        [str(CLI), "layer", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    for option in ("--python", "--arch", "--out", "--source", "--wheel", "--constraint"):
        assert option in proc.stdout


def test_the_layer_command_reports_a_failed_build_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ceap_stage._cli import main

    missing = tmp_path / "ceap_stage-9.9.9-py3-none-any.whl"
    status = main(["layer", "--python", "3.12", "--arch", "x86_64", "--wheel", str(missing),
                   "--out", str(tmp_path / "out")])  # fmt: skip

    assert status == 1
    assert "pip failed" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []
