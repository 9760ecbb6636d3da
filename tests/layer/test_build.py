"""The layer build: what goes in the zip, reproducibility, the size budget and other platforms.

The host target (this machine's Python and CPU) is built once per session by the ``host_layer``
fixture, by running ``layer/build.py`` as ``make layer`` does; a few tests build again.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import stat
import struct
import zipfile
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest

from .conftest import BuiltLayer, build_one, host_target, run_build

pytestmark = pytest.mark.layer

# The importable names of what the Lambda runtime provides (the layer must not shadow them).
RUNTIME_IMPORT_NAMES = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3"}
ELF_MACHINES = {"x86_64": 62, "arm64": 183}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def zip_entries(path: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as zf:
        return zf.infolist()


def dist_infos(names: list[str]) -> dict[str, str]:
    """Canonical distribution name -> its dist-info folder name, from the zip's entry names."""
    found = {}
    for name in names:
        parts = PurePosixPath(name).parts
        if len(parts) >= 2 and parts[1].endswith(".dist-info"):
            found[canonical(parts[1].removesuffix(".dist-info").rsplit("-", 1)[0])] = parts[1]
    return found


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF file"
    assert data[4] == 2, "not a 64-bit ELF file"
    machine: int = struct.unpack_from("<H", data, 18)[0]
    return machine


# ----------------------------------------------------------------------------------------------
# The host zip
# ----------------------------------------------------------------------------------------------


def test_zip_has_python_at_its_root_with_fixed_metadata(host_layer: BuiltLayer) -> None:
    entries = zip_entries(host_layer.path)
    names = [info.filename for info in entries]
    assert names[0] == "python/"
    assert all(name.startswith("python/") for name in names)
    assert names == sorted(names)
    for info in entries:
        assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
        assert info.create_system == 3, info.filename
        mode = info.external_attr >> 16
        if info.is_dir():
            assert mode == stat.S_IFDIR | 0o755, info.filename
        else:
            assert mode == stat.S_IFREG | 0o644, info.filename
            assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename


def test_zip_holds_the_stage_runtime_and_not_what_lambda_provides(
    host_layer: BuiltLayer, build_script: ModuleType
) -> None:
    names = [info.filename for info in zip_entries(host_layer.path)]
    tops = {PurePosixPath(name).parts[1] for name in names if name != "python/"}
    dists = dist_infos(names)

    # ceap-stage, its dependencies and the tracing extra's are there...
    for needed in (
        "ceap-stage",
        "pydantic",
        "pydantic-core",
        "orjson",
        "aws-lambda-powertools",
        "typing-extensions",
        "aws-xray-sdk",
        "wrapt",
    ):
        assert needed in dists, (needed, sorted(dists))
    assert {"ceap_stage", "pydantic_core", "aws_xray_sdk"} <= tops
    # ...what the runtime provides is not, neither as package nor as distribution...
    assert not tops & RUNTIME_IMPORT_NAMES
    assert "six.py" not in tops
    assert not set(dists) & build_script.RUNTIME_PROVIDED
    assert {canonical(n) for n in build_script.RUNTIME_PROVIDED} == build_script.RUNTIME_PROVIDED
    # ...nor scripts, bytecode, test suites or this machine's wheel path.
    assert "bin" not in tops
    for name in names:
        parts = PurePosixPath(name).parts
        assert not {"__pycache__", "tests", "test"} & set(parts), name
        assert not name.endswith((".pyc", ".pyo")), name
        assert parts[-1] != "direct_url.json", name


def test_every_record_matches_the_files_shipped(host_layer: BuiltLayer) -> None:
    with zipfile.ZipFile(host_layer.path) as zf:
        files = {n.removeprefix("python/") for n in zf.namelist() if not n.endswith("/")}
        recorded: set[str] = set()
        for name in zf.namelist():
            if name.endswith(".dist-info/RECORD"):
                rows = list(csv.reader(io.StringIO(zf.read(name).decode())))
                recorded |= {row[0] for row in rows if row}
                for row in rows:
                    if row and row[1]:  # RECORD lists itself without a hash
                        algo, _, digest = row[1].partition("=")
                        data = zf.read(f"python/{row[0]}")
                        assert algo == "sha256"
                        expected = hashlib.sha256(data).digest()
                        assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == digest
    assert recorded == files, (sorted(recorded - files), sorted(files - recorded))


def test_native_extensions_are_built_for_the_target(host_layer: BuiltLayer) -> None:
    python, arch = host_target()
    tag = f"cpython-{python.replace('.', '')}-"
    with zipfile.ZipFile(host_layer.path) as zf:
        extensions = [n for n in zf.namelist() if n.endswith(".so")]
        assert any("pydantic_core" in n for n in extensions), extensions
        for name in extensions:
            assert tag in name or ".abi3." in name, name
            assert elf_machine(zf.read(name)) == ELF_MACHINES[arch], name


def test_build_prints_each_zips_size_and_checksum(host_layer: BuiltLayer) -> None:
    data = host_layer.path.read_bytes()
    unzipped = sum(info.file_size for info in zip_entries(host_layer.path))
    line = next(row for row in host_layer.stdout.splitlines() if host_layer.path.name in row)
    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in line
    assert f"({len(data)} B)" in line
    assert f"({unzipped} B)" in line


def test_zip_is_within_the_size_budget(host_layer: BuiltLayer, build_script: ModuleType) -> None:
    layer = build_script.measure(host_layer.path)
    assert layer.zipped <= 6_000_000
    assert layer.unzipped <= 20_000_000
    build_script.check_budget(layer)  # the build's own check agrees


def test_rebuild_is_byte_identical(
    host_layer: BuiltLayer, project_snapshot: Path, tmp_path: Path
) -> None:
    python, arch = host_target()
    again = build_one(tmp_path, python, arch, "--source", project_snapshot)
    assert again.path.name == host_layer.path.name
    assert again.path.read_bytes() == host_layer.path.read_bytes()


def test_build_fails_over_budget_and_leaves_no_zip(
    host_layer: BuiltLayer, snapshot_wheel: Path, tmp_path: Path
) -> None:
    python, arch = host_target()
    stale = tmp_path / host_layer.path.name
    stale.write_bytes(b"an earlier build")

    proc = run_build(
        "--python", python, "--arch", arch, "--wheel", snapshot_wheel, "--out", tmp_path,
        "--max-unzipped", "5000000",
    )  # fmt: skip

    assert proc.returncode == 1
    assert "over the size budget" in proc.stderr
    assert "unzipped" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cross_build_for_arm64_and_another_python(
    snapshot_wheel: Path, tmp_path: Path, build_script: ModuleType
) -> None:
    # A target this machine cannot run: every native extension must still be the target's.
    python, arch = "3.13", "arm64"
    if (python, arch) == host_target():
        python = "3.12"
    built = build_one(tmp_path, python, arch, "--wheel", snapshot_wheel)

    assert built.path.name.endswith(f"-python{python}-{arch}.zip")
    with zipfile.ZipFile(built.path) as zf:
        extensions = [n for n in zf.namelist() if n.endswith(".so")]
        assert len(extensions) >= 3, extensions  # pydantic-core, orjson, wrapt
        for name in extensions:
            assert f"cpython-{python.replace('.', '')}-aarch64" in name or ".abi3." in name, name
            assert elf_machine(zf.read(name)) == ELF_MACHINES["arm64"], name
    build_script.check_budget(build_script.measure(built.path))


# ----------------------------------------------------------------------------------------------
# The build's parts, without pip
# ----------------------------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, bytes], mode: int) -> Path:
    for name in sorted(files, reverse=True):  # another creation order on every call
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        path.chmod(mode)
        os.utime(path, (1_700_000_000 + len(name), 1_700_000_000 + len(name)))
    return root


def test_write_zip_ignores_mtimes_modes_and_creation_order(
    tmp_path: Path, build_script: ModuleType
) -> None:
    files = {"pkg/__init__.py": b"x = 1\n", "pkg/sub/data.json": b"{}", "mod.py": b"y = 2\n"}
    first = _tree(tmp_path / "a", files, 0o600)
    second = _tree(tmp_path / "b", dict(reversed(files.items())), 0o755)
    (second / "pkg").chmod(0o700)

    build_script.write_zip(first, tmp_path / "a.zip")
    build_script.write_zip(second, tmp_path / "b.zip")

    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.namelist() == [
            "python/",
            "python/mod.py",
            "python/pkg/",
            "python/pkg/__init__.py",
            "python/pkg/sub/",
            "python/pkg/sub/data.json",
        ]
        assert zf.read("python/pkg/sub/data.json") == b"{}"


def test_source_date_epoch_sets_the_timestamps(
    tmp_path: Path, build_script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _tree(tmp_path / "t", {"m.py": b""}, 0o644)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14T22:13:20Z
    build_script.write_zip(tree, tmp_path / "z.zip", epoch=build_script.source_date_epoch())
    with zipfile.ZipFile(tmp_path / "z.zip") as zf:
        assert {info.date_time for info in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # before 1980: clamped, zip cannot say
    assert build_script.source_date_epoch() == build_script.ZIP_EPOCH
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert build_script.source_date_epoch() == build_script.ZIP_EPOCH


def test_check_budget_names_the_limit_exceeded(tmp_path: Path, build_script: ModuleType) -> None:
    layer = build_script.LayerZip(tmp_path / "l.zip", 6_000_001, 20_000_000, "0" * 64)
    with pytest.raises(build_script.BudgetExceededError, match=r"zipped 6000001 B > 6000000 B"):
        build_script.check_budget(layer)
    build_script.check_budget(build_script.LayerZip(tmp_path / "l.zip", 6_000_000, 20_000_000, ""))
    with pytest.raises(build_script.BudgetExceededError, match="unzipped"):
        build_script.check_budget(layer, max_zipped=10**9, max_unzipped=19_999_999)


def _dist(site: Path, name: str, version: str, *requires: str, files: tuple[str, ...] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    headers = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    headers += [f"Requires-Dist: {req}" for req in requires]
    (info / "METADATA").write_text("\n".join(headers) + "\n\nLong description.\n")
    for file in files:
        (site / file).parent.mkdir(parents=True, exist_ok=True)
        (site / file).write_text("# code\n")
    rows = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{row},,\n" for row in rows))


def test_prune_keeps_the_targets_closure_with_target_markers(
    tmp_path: Path, build_script: ModuleType
) -> None:
    site = tmp_path / "site"
    _dist(
        site,
        "ceap-stage",
        "0.1.0",
        "old-only; python_version < '3.12'",
        "arm-only; platform_machine == 'aarch64'",
        "plugin[fast]>=1",
        "boto3>=1.34",
        "pytest; extra == 'dev'",
        "xray; extra == 'tracing'",
        files=("ceap_stage/__init__.py", "ceap_stage/tests/test_x.py"),
    )
    _dist(site, "old-only", "1.0", files=("old_only.py",))
    _dist(site, "arm-only", "1.0", files=("arm_only/__init__.py",))
    _dist(site, "plugin", "2.0", "speedup; extra == 'fast'", files=("plugin/__init__.py",))
    _dist(site, "speedup", "1.0", files=("speedup/__init__.py", "speedup/__pycache__/x.pyc"))
    _dist(site, "xray", "1.0", "botocore", files=("xray/__init__.py",))
    _dist(site, "boto3", "1.40", "botocore", files=("boto3/__init__.py",))
    _dist(site, "botocore", "1.40", files=("botocore/__init__.py", "botocore/data/x.json"))
    (site / "bin").mkdir()
    (site / "bin" / "ceap-stage").write_text("#!/build/machine/python\n")

    removed = build_script.prune(site, build_script.Target("3.11", "x86_64"))

    # x86_64 + 3.11: old-only stays; arm-only (not this CPU) and the runtime's SDK go
    assert removed == ["arm-only", "boto3", "botocore"]
    left = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert "old_only.py" in left
    assert "speedup/__init__.py" in left  # reached through plugin[fast]
    assert "xray/__init__.py" in left  # the tracing extra
    assert not [p for p in left if p.startswith(("boto", "arm_only", "bin/"))], left
    assert not [p for p in left if "tests/" in p or p.endswith(".pyc")], left
    assert not (site / "botocore").exists()
    record = (site / "ceap_stage-0.1.0.dist-info" / "RECORD").read_text()
    assert "ceap_stage/tests/test_x.py" not in record
    assert "ceap_stage/__init__.py" in record


def test_prune_fails_when_the_target_needs_what_pip_skipped(
    tmp_path: Path, build_script: ModuleType
) -> None:
    # pip evaluated markers for this machine; a Python 3.12 runtime needs one more dependency.
    site = tmp_path / "site"
    _dist(site, "ceap-stage", "0.1.0", "newer-only; python_version >= '3.12'", "dep>=2")
    _dist(site, "dep", "1.5")
    with pytest.raises(build_script.LayerBuildError) as err:
        build_script.prune(site, build_script.Target("3.12", "arm64"))
    assert "newer-only" in str(err.value)
    assert "dep>=2" in str(err.value)
    assert "got 1.5" in str(err.value)


def test_platform_tags_follow_each_runtimes_glibc(build_script: ModuleType) -> None:
    al2 = build_script.Target("3.11", "arm64").platforms()
    al2023 = build_script.Target("3.13", "x86_64").platforms()
    assert al2[0] == "manylinux_2_26_aarch64"
    assert "manylinux_2_28_aarch64" not in al2  # Amazon Linux 2 has glibc 2.26
    assert al2023[0] == "manylinux_2_34_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(al2023)
