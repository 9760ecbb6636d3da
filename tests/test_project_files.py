"""The files a release ships: the license, the sdist's include list, and the sdist itself."""

from __future__ import annotations

import email.parser
import tarfile
import tomllib
from pathlib import Path

from hatchling.builders.sdist import SdistBuilder

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_is_the_apache_2_text_pyproject_declares():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text) > 10_000  # the whole text, not a stub


def test_the_sdist_include_list_names_only_files_that_exist():
    include = PYPROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert "LICENSE" in include
    assert [name for name in include if not (ROOT / name).exists()] == []


def test_the_sdist_builds_and_carries_the_license(tmp_path):
    (built,) = SdistBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    with tarfile.open(built) as archive:
        top = Path(built).name.removesuffix(".tar.gz")
        names = set(archive.getnames())
        license_file = archive.extractfile(f"{top}/LICENSE")
        pkg_info = archive.extractfile(f"{top}/PKG-INFO")
        assert license_file is not None
        assert pkg_info is not None
        shipped_license = license_file.read().decode()
        metadata = email.parser.Parser().parsestr(pkg_info.read().decode())
    assert shipped_license == (ROOT / "LICENSE").read_text()
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in metadata.get_all("License-File", [])
    assert {f"{top}/README.md", f"{top}/CHANGELOG.md", f"{top}/ceap_stage/__init__.py"} <= names
    assert not any("/tests/" in name or name.endswith("/Makefile") for name in names)
