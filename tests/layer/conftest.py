"""Fixtures for the Lambda layer tests: build the layer once per session, unpack it, and lay out
folders standing in for what the Lambda runtime provides itself.

- ``build_script``: ``layer/build.py`` loaded as a module (for its constants and helpers).
- ``project_snapshot``: a copy of the project (pyproject, README, ``ceap_stage/``) taken once, so
  that every build of the session sees the same source while others edit the tree.
- ``snapshot_wheel``: the snapshot's wheel, for builds that start from ``--wheel``.
- ``host_layer``: the layer zip for this machine's Python and architecture, built by running the
  build command on the snapshot (the zip, its build output and wall time).
- ``layer_python``: that zip unpacked; the path of its ``python/`` folder (``/opt/python``).
- ``aws_sdk_dir`` / ``ric_dir``: folders of symlinks to this venv's boto3 & co and to
  ``awslambdaric`` & co, standing in for the runtime's ``/var/runtime``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "layer" / "build.py"

#: What the Lambda Python runtime ships (the layer leaves it out), as distribution names.
AWS_SDK_DISTRIBUTIONS = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "urllib3",
    "six",
)
#: The Runtime Interface Client and its dependencies (in Lambda, also part of the runtime).
RIC_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")


@dataclass(frozen=True)
class BuiltLayer:
    """A zip built by the build command, with what the command printed."""

    path: Path
    stdout: str
    seconds: float


def host_target() -> tuple[str, str]:
    """This interpreter's Python version and Lambda architecture name, e.g. ("3.11", "x86_64")."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine()
    )
    return python, arch


def run_build(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``layer/build.py`` with ``args`` as ``make layer`` does (this venv's Python)."""
    return subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def build_one(out: Path, python: str, arch: str, *inputs: str | Path) -> BuiltLayer:
    """Build one target's zip into ``out`` (``inputs``: ``--source DIR`` or ``--wheel FILE``)."""
    started = time.monotonic()
    proc = run_build("--python", python, "--arch", arch, "--out", out, *inputs)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"layer build failed:\n{proc.stdout}\n{proc.stderr}"
    zips = sorted(out.glob("*.zip"))
    assert len(zips) == 1, zips
    return BuiltLayer(zips[0], proc.stdout, seconds)


def link_distributions(names: tuple[str, ...], dest: Path) -> Path:
    """Symlink the top-level files and folders of installed distributions into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(file)).parts[0] for file in dist.files or ()}
        for top in sorted(tops):
            source = Path(str(dist.locate_file(top)))
            if top in {"..", "bin"} or not source.exists() or (dest / top).exists():
                continue
            (dest / top).symlink_to(source, target_is_directory=source.is_dir())
    return dest


@pytest.fixture(scope="session")
def build_script() -> ModuleType:
    """``layer/build.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("ceap_layer_build", BUILD_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def project_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's buildable files, copied once for every build of the session."""
    root = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, root / name)
    shutil.copytree(
        REPO / "ceap_stage",
        root / "ceap_stage",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return root


@pytest.fixture(scope="session")
def host_layer(tmp_path_factory: pytest.TempPathFactory, project_snapshot: Path) -> BuiltLayer:
    """The layer zip for this machine's Python and architecture."""
    python, arch = host_target()
    if python not in ("3.11", "3.12", "3.13"):
        pytest.skip(f"Python {python} is not a Lambda runtime the layer is built for")
    out = tmp_path_factory.mktemp("layer-a")
    return build_one(out, python, arch, "--source", project_snapshot)


@pytest.fixture(scope="session")
def snapshot_wheel(
    tmp_path_factory: pytest.TempPathFactory, project_snapshot: Path, build_script: ModuleType
) -> Path:
    """The snapshot's ceap-stage wheel, for builds that take ``--wheel`` (one wheel build)."""
    wheel: Path = build_script.build_wheel(project_snapshot, tmp_path_factory.mktemp("wheel"))
    return wheel


@pytest.fixture(scope="session")
def layer_python(tmp_path_factory: pytest.TempPathFactory, host_layer: BuiltLayer) -> Path:
    """The host layer unpacked, as Lambda does under /opt; returns ``.../opt/python``."""
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(host_layer.path) as zf:
        zf.extractall(opt)
    return opt / "python"


@pytest.fixture(scope="session")
def aws_sdk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """boto3, botocore and their dependencies, as the Lambda runtime provides them."""
    return link_distributions(AWS_SDK_DISTRIBUTIONS, tmp_path_factory.mktemp("aws-sdk"))


@pytest.fixture(scope="session")
def ric_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Runtime Interface Client (awslambdaric) and its dependencies."""
    return link_distributions(RIC_DISTRIBUTIONS, tmp_path_factory.mktemp("ric"))
