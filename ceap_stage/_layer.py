"""Build the ceap-stage Lambda layer: one reproducible zip per Python runtime and architecture.

Usage::

    ceap-stage layer                                     # 6 zips (3.11/3.12/3.13 x x86_64/arm64)
    ceap-stage layer --python 3.11 --arch x86_64         # one target
    ceap-stage layer --constraint pins.txt               # pin the dependencies (pip -c)
    ceap-stage layer --wheel dist/ceap_stage-0.1.0-py3-none-any.whl   # a released wheel
    ceap-stage layer --source .                          # build the wheel from a source tree

Without ``--wheel`` or ``--source`` the layer is built from the ceap-stage that is installed
(:func:`installed_wheel` packs it into a wheel, offline). ``make layer`` (``layer/build.py``)
builds from the repository's source tree.

Each zip holds ``python/`` at its root (Lambda mounts it at ``/opt/python``, which is on
``sys.path``) with ceap-stage and the dependencies a stage needs at run time, installed for that
runtime's Python and CPU by ``pip install --platform ... --only-binary=:all:``. Left out:

- what every Lambda Python runtime already provides (:data:`RUNTIME_PROVIDED`: the AWS SDK and its
  dependencies);
- anything the target does not need: the layer is the dependency closure of
  ``ceap-stage[tracing]`` evaluated for the *target* Python and CPU (pip evaluates environment
  markers for the machine it runs on, so whatever it added for this machine only is dropped, and a
  dependency the target needs but pip skipped fails the build);
- console scripts (``bin/``), ``__pycache__``/``*.pyc``, ``tests``/``test`` folders and
  ``direct_url.json`` (it names this machine's temporary wheel path).

Reproducible: entries sorted, every timestamp ``SOURCE_DATE_EPOCH`` (default 1980-01-01, the
earliest a zip can hold), files 0644 and folders 0755, deflate level 9. The same inputs (the
source tree or wheel, the resolved dependency versions) give byte-identical zips on the same build
image. The build prints each zip's size and SHA-256 and fails when a zip is over the size budget.

pip's download cache (``--cache-dir``, default pip's own) makes repeated builds fast.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._errors import BudgetExceededError, LayerBuildError
from ._settings import resolve_source_date_epoch

__all__ = [
    "ARCHITECTURES",
    "EXTRAS",
    "MAX_UNZIPPED",
    "MAX_ZIPPED",
    "RUNTIMES",
    "RUNTIME_PROVIDED",
    "ZIP_EPOCH",
    "BudgetExceededError",
    "LayerBuildError",
    "LayerZip",
    "Target",
    "build_layer",
    "build_wheel",
    "check_budget",
    "installed_wheel",
    "main",
    "measure",
    "prune",
    "source_date_epoch",
    "wheel_version",
    "write_zip",
]

#: Lambda runtime -> newest glibc minor version of its OS, the bound for ``manylinux_2_N`` wheels:
#: python3.11 runs on Amazon Linux 2 (glibc 2.26), python3.12 and 3.13 on Amazon Linux 2023 (2.34).
RUNTIMES: dict[str, int] = {"3.11": 26, "3.12": 34, "3.13": 34}
#: Lambda architecture name -> the machine name used in wheel platform tags.
ARCHITECTURES: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
#: Distributions every Lambda Python runtime ships: the AWS SDK and its dependencies. A layer
#: copy would shadow the runtime's (layers come first on sys.path) and add ~35 MB unzipped.
RUNTIME_PROVIDED: frozenset[str] = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}
)
#: The extras of ceap-stage installed in the layer (X-Ray tracing costs ~1 MB unzipped).
EXTRAS: tuple[str, ...] = ("tracing",)
#: Size budget per zip, in bytes (decimal megabytes: 6 MB zipped, 20 MB unzipped).
MAX_ZIPPED = 6_000_000
MAX_UNZIPPED = 20_000_000
#: 1980-01-01T00:00:00Z: the default timestamp of every entry (the earliest a zip can store).
ZIP_EPOCH = 315_532_800
#: Folder names removed wherever they appear in the installed tree.
PRUNED_DIRS: frozenset[str] = frozenset({"__pycache__", "tests", "test"})
PRUNED_SUFFIXES: tuple[str, ...] = (".pyc", ".pyo")


@dataclass(frozen=True)
class Target:
    """One Lambda runtime and architecture, e.g. ``Target("3.12", "arm64")``.

    >>> Target("3.11", "arm64").zip_name("0.1.0")
    'ceap-stage-0.1.0-python3.11-arm64.zip'
    >>> Target("3.11", "x86_64").platforms()[-1]
    'manylinux2014_x86_64'
    """

    python: str
    arch: str

    def __str__(self) -> str:
        return f"python{self.python}/{self.arch}"

    @property
    def machine(self) -> str:
        """The CPU name in wheel tags and in ``platform.machine()``: ``x86_64`` or ``aarch64``."""
        return ARCHITECTURES[self.arch]

    def platforms(self) -> list[str]:
        """The wheel platform tags this target runs, newest glibc first."""
        newest = RUNTIMES[self.python]
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(newest, 16, -1)]
        # pip expands manylinux2014 to the older manylinux2010/manylinux1 aliases itself.
        return [*tags, f"manylinux2014_{self.machine}"]

    def zip_name(self, version: str) -> str:
        """The zip's file name for ceap-stage ``version``."""
        return f"ceap-stage-{version}-python{self.python}-{self.arch}.zip"

    def marker_environment(self) -> dict[str, str]:
        """Marker values of the Lambda runtime (``python_version``, ``platform_machine``)."""
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{self.python}.0",
            "python_version": self.python,
            "sys_platform": "linux",
        }


@dataclass(frozen=True)
class LayerZip:
    """A built zip: where it is, its sizes in bytes and its SHA-256 (hex)."""

    path: Path
    zipped: int
    unzipped: int
    sha256: str

    def describe(self) -> str:
        """One line for the build log: name, sizes and checksum."""
        return (
            f"{self.path.name}  zipped {self.zipped / 1e6:.2f} MB ({self.zipped} B)  "
            f"unzipped {self.unzipped / 1e6:.2f} MB ({self.unzipped} B)  sha256 {self.sha256}"
        )


# ----------------------------------------------------------------------------------------------
# pip
# ----------------------------------------------------------------------------------------------


def _pip(args: Sequence[str], cache_dir: Path | None) -> None:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LayerBuildError(
            f"pip failed ({proc.returncode}): {' '.join(command)}\n{proc.stdout}{proc.stderr}"
        )


def build_wheel(source: Path, wheel_dir: Path, cache_dir: Path | None = None) -> Path:
    """Build ceap-stage's wheel from the project folder ``source`` into ``wheel_dir``."""
    _pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheel_dir), str(source)], cache_dir)
    wheels = sorted(wheel_dir.glob("ceap_stage-*.whl"))
    if len(wheels) != 1:
        raise LayerBuildError(f"expected one ceap_stage wheel in {wheel_dir}, found {wheels}")
    return wheels[0]


def wheel_version(wheel: Path) -> str:
    """The version in a wheel's file name.

    >>> wheel_version(Path("ceap_stage-0.1.0-py3-none-any.whl"))
    '0.1.0'
    """
    return wheel.name.split("-")[1]


def _target_args(target: Target, site: Path) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", target.python]
    for platform in target.platforms():
        args += ["--platform", platform]
    return [*args, "--target", str(site)]


def resolve(
    target: Target,
    wheel: Path,
    report: Path,
    *,
    cache_dir: Path | None = None,
    constraints: Sequence[Path] = (),
) -> list[str]:
    """Resolve ``wheel`` with :data:`EXTRAS` for ``target``; return what the layer installs.

    The result is the download URL of every resolved distribution but ceap-stage itself and
    :data:`RUNTIME_PROVIDED` (resolving first and installing those with ``--no-deps`` saves
    unpacking ~35 MB of botocore only to delete it).
    """
    _, utils = _packaging()
    extras = f"[{','.join(EXTRAS)}]" if EXTRAS else ""
    args = ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report)]
    args += _target_args(target, report.parent / "resolve-target")
    for constraint in constraints:
        args += ["--constraint", str(constraint)]
    _pip([*args, f"{wheel}{extras}"], cache_dir)
    resolved = json.loads(report.read_text(encoding="utf-8"))["install"]
    return sorted(
        item["download_info"]["url"]
        for item in resolved
        if not item.get("requested")
        and utils.canonicalize_name(item["metadata"]["name"]) not in RUNTIME_PROVIDED
    )


def pip_install(
    target: Target,
    wheel: Path,
    site: Path,
    *,
    cache_dir: Path | None = None,
    constraints: Sequence[Path] = (),
) -> None:
    """Install ``wheel`` and the dependencies :func:`resolve` picks for ``target`` into ``site``."""
    urls = resolve(
        target,
        wheel,
        site.parent / f"{site.name}-resolved.json",
        cache_dir=cache_dir,
        constraints=constraints,
    )
    args = ["install", "--quiet", "--no-deps", "--no-compile", *_target_args(target, site)]
    _pip([*args, str(wheel), *urls], cache_dir)


# ----------------------------------------------------------------------------------------------
# Pruning: keep the target's dependency closure minus the runtime's own distributions
# ----------------------------------------------------------------------------------------------


def _packaging() -> Any:
    try:
        from packaging import requirements, utils
    except ImportError:  # pip always vendors it
        from pip._vendor.packaging import requirements, utils  # type: ignore[no-redef]
    return requirements, utils


@dataclass
class _Dist:
    name: str
    version: str
    requires: list[str]
    dist_info: Path


def installed_distributions(site: Path) -> dict[str, _Dist]:
    """The distributions in ``site`` by canonical name, read from their ``METADATA``."""
    _, utils = _packaging()
    dists: dict[str, _Dist] = {}
    for dist_info in sorted(site.glob("*.dist-info")):
        headers = (dist_info / "METADATA").read_text(encoding="utf-8").split("\n\n", 1)[0]
        name = version = ""
        requires: list[str] = []
        for line in headers.splitlines():
            key, _, value = line.partition(": ")
            if key == "Name":
                name = value.strip()
            elif key == "Version":
                version = value.strip()
            elif key == "Requires-Dist":
                requires.append(value.strip())
        dists[utils.canonicalize_name(name)] = _Dist(name, version, requires, dist_info)
    return dists


def needed_distributions(
    dists: dict[str, _Dist], root: str, extras: Iterable[str], target: Target
) -> set[str]:
    """The canonical names ``root[extras]`` needs on ``target``, without :data:`RUNTIME_PROVIDED`.

    Markers are evaluated for the target's Python and CPU. Raises :class:`LayerBuildError` when a
    needed distribution is missing or its version does not satisfy a requirement.
    """
    requirements, utils = _packaging()
    env = target.marker_environment()
    needed: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    problems: list[str] = []
    queue: list[tuple[str, frozenset[str]]] = [(utils.canonicalize_name(root), frozenset(extras))]
    while queue:
        name, wanted = queue.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        needed.add(name)
        for line in dists[name].requires:
            req = requirements.Requirement(line)
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": extra}) for extra in (*wanted, "")
            ):
                continue
            dep = utils.canonicalize_name(req.name)
            if dep in RUNTIME_PROVIDED:
                continue
            if dep not in dists:
                problems.append(f"{dists[name].name} needs {req} on {target}: not installed")
            elif not req.specifier.contains(dists[dep].version, prereleases=True):
                problems.append(
                    f"{dists[name].name} needs {req} on {target}: got {dists[dep].version}"
                )
            else:
                queue.append((dep, frozenset(req.extras)))
    if problems:
        raise LayerBuildError("\n".join(problems))
    return needed


def _record_paths(dist_info: Path) -> list[str]:
    with (dist_info / "RECORD").open(encoding="utf-8", newline="") as fh:
        return [row[0] for row in csv.reader(fh) if row]


def _inside(site: Path, relative: str) -> Path | None:
    path = (site / relative).resolve()
    return path if path.is_relative_to(site.resolve()) else None


def remove_distribution(site: Path, dist: _Dist) -> None:
    """Delete every file ``dist`` installed into ``site`` (per its RECORD) and its dist-info."""
    for relative in _record_paths(dist.dist_info):
        path = _inside(site, relative)
        if path is not None and path.is_file():
            path.unlink()
    shutil.rmtree(dist.dist_info, ignore_errors=True)


def _rewrite_record(site: Path, dist_info: Path) -> None:
    # Keep RECORD true to what ships: drop the rows of files pruned from the layer.
    record = dist_info / "RECORD"
    with record.open(encoding="utf-8", newline="") as fh:
        rows = [row for row in csv.reader(fh) if row]
    kept = [row for row in rows if (path := _inside(site, row[0])) is not None and path.exists()]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    record.write_text(out.getvalue(), encoding="utf-8")


def prune(site: Path, target: Target, *, root: str = "ceap-stage") -> list[str]:
    """Reduce a ``pip install --target`` folder to what ``target`` needs at run time.

    Returns the names of the distributions removed. See the module docstring for what goes.
    """
    dists = installed_distributions(site)
    needed = needed_distributions(dists, root, EXTRAS, target)
    removed = sorted(name for name in dists if name not in needed)
    for name in removed:
        remove_distribution(site, dists[name])
    shutil.rmtree(site / "bin", ignore_errors=True)
    for dirpath, dirnames, filenames in os.walk(site, topdown=True):
        for dirname in [d for d in dirnames if d in PRUNED_DIRS]:
            shutil.rmtree(Path(dirpath, dirname))
            dirnames.remove(dirname)
        for filename in filenames:
            if filename.endswith(PRUNED_SUFFIXES):
                Path(dirpath, filename).unlink()
    for name in needed:
        (dists[name].dist_info / "direct_url.json").unlink(missing_ok=True)
        _rewrite_record(site, dists[name].dist_info)
    # Folders emptied by the removals above, deepest first.
    for dirpath, _, _ in sorted(os.walk(site), key=lambda entry: -len(entry[0])):
        path = Path(dirpath)
        if path != site and not any(path.iterdir()):
            path.rmdir()
    return removed


# ----------------------------------------------------------------------------------------------
# The zip
# ----------------------------------------------------------------------------------------------


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` when set, else 1980-01-01; never before 1980 (zip cannot say)."""
    value = resolve_source_date_epoch()
    return max(value, ZIP_EPOCH) if value is not None else ZIP_EPOCH


def write_zip(tree: Path, dest: Path, *, prefix: str = "python/", epoch: int = ZIP_EPOCH) -> None:
    """Zip the folder ``tree`` under ``prefix`` into ``dest``, reproducibly.

    Entries are sorted by name; every one has the timestamp ``epoch``; folders are 0755 and
    files 0644 whatever they are on disk; files are deflated at level 9.
    """
    date_time = time.gmtime(epoch)[:6]
    entries: list[tuple[str, Path | None]] = [(prefix, None)] if prefix else []
    for dirpath, dirnames, filenames in os.walk(tree):
        base = Path(dirpath).relative_to(tree)
        for dirname in dirnames:
            entries.append((f"{prefix}{(base / dirname).as_posix()}/", None))
        for filename in filenames:
            entries.append((f"{prefix}{(base / filename).as_posix()}", Path(dirpath, filename)))
    entries.sort(key=lambda entry: entry[0])
    with zipfile.ZipFile(dest, "w") as zf:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time)
            info.create_system = 3  # Unix, so that external_attr carries the permissions
            if path is None:
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10  # 0x10: MS-DOS folder
                zf.writestr(info, b"", compress_type=zipfile.ZIP_STORED)
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(
                    info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9
                )


def measure(path: Path) -> LayerZip:
    """Sizes and SHA-256 of a zip."""
    with zipfile.ZipFile(path) as zf:
        unzipped = sum(info.file_size for info in zf.infolist())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LayerZip(path, path.stat().st_size, unzipped, digest)


def check_budget(
    layer: LayerZip, *, max_zipped: int = MAX_ZIPPED, max_unzipped: int = MAX_UNZIPPED
) -> None:
    """Raise :class:`BudgetExceededError` when ``layer`` is over either size limit."""
    over = []
    if layer.zipped > max_zipped:
        over.append(f"zipped {layer.zipped} B > {max_zipped} B")
    if layer.unzipped > max_unzipped:
        over.append(f"unzipped {layer.unzipped} B > {max_unzipped} B")
    if over:
        raise BudgetExceededError(f"{layer.path.name} is over the size budget: {', '.join(over)}")


# ----------------------------------------------------------------------------------------------
# One target, then the command line
# ----------------------------------------------------------------------------------------------


def build_layer(
    target: Target,
    wheel: Path,
    out_dir: Path,
    *,
    work_dir: Path,
    cache_dir: Path | None = None,
    constraints: Sequence[Path] = (),
    max_zipped: int = MAX_ZIPPED,
    max_unzipped: int = MAX_UNZIPPED,
) -> LayerZip:
    """Build ``target``'s zip into ``out_dir``; raise when it fails or is over budget."""
    site = work_dir / f"{target.python}-{target.arch}"
    shutil.rmtree(site, ignore_errors=True)
    pip_install(target, wheel, site, cache_dir=cache_dir, constraints=constraints)
    prune(site, target)
    dest = out_dir / target.zip_name(wheel_version(wheel))
    dest.unlink(missing_ok=True)  # never leave a stale zip behind a failed build
    partial = work_dir / dest.name
    write_zip(site, partial, epoch=source_date_epoch())
    check_budget(measure(partial), max_zipped=max_zipped, max_unzipped=max_unzipped)
    shutil.move(partial, dest)
    return measure(dest)


def installed_wheel(wheel_dir: Path, *, epoch: int = ZIP_EPOCH) -> Path:
    """Pack the ceap-stage this interpreter imports into a wheel in ``wheel_dir``, offline.

    The wheel holds the ``ceap_stage`` package as it is on disk (without bytecode) and a
    ``dist-info`` made from the installed distribution's metadata, so it works the same for a
    regular and an editable install, with no network and no build backend. It is reproducible:
    entries sorted, every timestamp ``epoch``, fixed permissions, so the same installed files
    give a byte-identical wheel. The layer and the Glue jobs install it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     installed_wheel(Path(tmp)).name.endswith("-py3-none-any.whl")
        True
    """
    import base64
    import importlib.metadata

    import ceap_stage

    version = ceap_stage.__version__
    package = Path(ceap_stage.__file__).resolve().parent
    try:
        metadata = importlib.metadata.distribution("ceap-stage").read_text("METADATA")
        entry_points = importlib.metadata.distribution("ceap-stage").read_text("entry_points.txt")
    except importlib.metadata.PackageNotFoundError:
        metadata = entry_points = None
    if not metadata:
        metadata = f"Metadata-Version: 2.1\nName: ceap-stage\nVersion: {version}\n"
    info = f"ceap_stage-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package.parent)
        if (
            not path.is_file()
            or PRUNED_DIRS & set(relative.parts)
            or path.suffix in PRUNED_SUFFIXES
        ):
            continue
        files[relative.as_posix()] = path.read_bytes()
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: ceap-stage\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if entry_points:
        files[f"{info}/entry_points.txt"] = entry_points.encode()
    rows = []
    for name, data in sorted(files.items()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}\n")
    files[f"{info}/RECORD"] = "".join([*rows, f"{info}/RECORD,,\n"]).encode()
    wheel_dir.mkdir(parents=True, exist_ok=True)
    dest = wheel_dir / f"ceap_stage-{version}-py3-none-any.whl"
    date_time = time.gmtime(epoch)[:6]
    with zipfile.ZipFile(dest, "w") as zf:
        # dist-info last, as wheel builders do (RECORD at the very end)
        for name in sorted(files, key=lambda n: (n.startswith(info), n == f"{info}/RECORD", n)):
            entry = zipfile.ZipInfo(name, date_time)
            entry.create_system = 3
            entry.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(entry, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return dest


def add_arguments(
    parser: argparse.ArgumentParser, *, default_out: Path, default_source: Path | None
) -> None:
    """Add the build's options to ``parser`` (``ceap-stage layer``, ``layer/build.py``)."""
    parser.add_argument(
        "--python",
        action="append",
        choices=sorted(RUNTIMES),
        help="Python runtime to build for (repeatable; default: all)",
    )
    parser.add_argument(
        "--arch",
        action="append",
        choices=sorted(ARCHITECTURES),
        help="architecture to build for (repeatable; default: all)",
    )
    parser.add_argument(
        "--out", type=Path, default=default_out, help=f"output folder (default: {default_out})"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--source",
        type=Path,
        default=default_source,
        help="project folder to build the wheel from "
        + ("(default: this repository)" if default_source else "(default: the installed one)"),
    )
    source.add_argument("--wheel", type=Path, help="use this ceap-stage wheel instead of building")
    parser.add_argument(
        "--constraint",
        type=Path,
        action="append",
        default=[],
        help="pip constraints file pinning dependency versions (repeatable)",
    )
    parser.add_argument("--cache-dir", type=Path, help="pip cache folder (default: pip's own)")
    parser.add_argument(
        "--max-zipped", type=int, default=MAX_ZIPPED, help="budget per zip, bytes (6 MB)"
    )
    parser.add_argument(
        "--max-unzipped", type=int, default=MAX_UNZIPPED, help="budget unzipped, bytes (20 MB)"
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Build the targets ``args`` asks for (see :func:`add_arguments`); 0, or 1 on failure."""
    pythons = sorted(set(args.python or RUNTIMES))
    arches = sorted(set(args.arch or ARCHITECTURES))
    out_dir: Path = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="ceap-layer-") as tmp:
            work_dir = Path(tmp)
            started = time.monotonic()
            if args.wheel is not None:
                wheel: Path = args.wheel
            elif args.source is not None:
                wheel = build_wheel(args.source.resolve(), work_dir / "wheel", args.cache_dir)
            else:
                wheel = installed_wheel(work_dir / "wheel", epoch=source_date_epoch())
            print(f"wheel {wheel.name} ({time.monotonic() - started:.1f} s)", file=out, flush=True)
            for python in pythons:
                for arch in arches:
                    started = time.monotonic()
                    layer = build_layer(
                        Target(python, arch),
                        wheel.resolve(),
                        out_dir,
                        work_dir=work_dir,
                        cache_dir=args.cache_dir,
                        constraints=[c.resolve() for c in args.constraint],
                        max_zipped=args.max_zipped,
                        max_unzipped=args.max_unzipped,
                    )
                    elapsed = time.monotonic() - started
                    print(f"{layer.describe()}  ({elapsed:.1f} s)", file=out, flush=True)
    except LayerBuildError as exc:
        print(f"error: {exc}", file=err)
        return 1
    print(f"layers in {out_dir}", file=out)
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "ceap-stage layer",
    default_out: Path = Path("layer-dist"),
    default_source: Path | None = None,
) -> int:
    """Parse ``argv`` and :func:`run` the build; print one line per zip; 0, or 1 on failure."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Build the ceap-stage Lambda layer zips (one per Python runtime and arch).",
    )
    add_arguments(parser, default_out=default_out, default_source=default_source)
    return run(parser.parse_args(argv), sys.stdout, sys.stderr)
