"""``ceap-stage package``: build everything a workflow needs on AWS, reproducibly.

What :func:`package` writes into its output folder (default ``.ceap/package``)::

    lambda/<packages>.zip     the Lambda functions' code: the project packages that hold the
                              handlers and the project packages they import (one zip per distinct
                              set; functions whose handlers need the same packages share one)
    layer/ceap-stage-<v>-python3.X-<arch>.zip
                              the ceap-stage layer, one per runtime and architecture in use
                              (none when ``layer_arn`` names a published one)
    glue/<StateName>/<script>.py
                              each Glue step's script, as it is
    glue/ceap_stage-<v>-py3-none-any.whl
                              the installed ceap-stage as a wheel, which Glue installs with
                              ``--additional-python-modules``
    template.json             the complete CloudFormation template (see
                              :func:`ceap_stage.workflow._stack.build_stack_template`)
    manifest.json             every artifact: its file, size, SHA-256 and content-addressed S3 key

Reproducible: the same inputs give byte-identical files. Zip entries are sorted, stamped with
``SOURCE_DATE_EPOCH`` (default 1980-01-01) and have fixed permissions; the wheel is packed from
the installed files (:func:`ceap_stage._layer.installed_wheel`); a layer is cached under
``cache_dir`` by the SHA-256 of that wheel and its target, so a second package reuses it.

The code zip leaves out tests (``tests/``, ``test/``, ``test_*.py``, ``*_test.py``,
``conftest.py``), caches (``__pycache__``, ``*.pyc``), virtualenvs (a folder holding
``pyvenv.cfg``), hidden folders and ``ceap_stage`` itself (the layer provides it).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import orjson

from ._errors import PackagingError
from ._layer import Target, build_layer, installed_wheel, measure, source_date_epoch, write_zip

__all__ = [
    "ARTIFACT_PREFIX",
    "DEFAULT_OUT",
    "Artifact",
    "PackageResult",
    "code_units",
    "package",
]

#: Where ``package`` writes by default.
DEFAULT_OUT: Final = Path(".ceap/package")
#: Where built layers are cached by default.
DEFAULT_CACHE: Final = Path(".ceap/cache")
#: The S3 key prefix of every artifact; a key is ``{prefix}{sha256}/{file name}``.
ARTIFACT_PREFIX: Final = "ceap-stage/artifacts/"
#: Top-level names never packed into the code zip: the layer provides them.
_PROVIDED: Final = frozenset({"ceap_stage"})
_SKIPPED_DIRS: Final = frozenset({"__pycache__", "tests", "test", "node_modules", "site"})
_SKIPPED_SUFFIXES: Final = (".pyc", ".pyo", ".so.tmp")
_MAX_NAME: Final = 60
#: A Lambda layer version's ARN (any partition): ``arn:aws:lambda:REGION:ACCOUNT:layer:NAME:N``.
_LAYER_ARN: Final = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+")


@dataclass(frozen=True)
class Artifact:
    """One file ``package`` wrote and ``deploy`` uploads.

    Attributes:
        kind: ``lambda-code``, ``layer``, ``glue-script``, ``glue-wheel`` or ``template``.
        path: The file, under the output folder.
        sha256: Its SHA-256 (hex).
        size: Its size in bytes.

    Example:
        >>> a = Artifact("glue-script", Path("glue/A/job.py"), "ab" * 32, 10)
        >>> a.key
        'ceap-stage/artifacts/abababababababababababababababababababababababababababababababab/job.py'
    """

    kind: str
    path: Path
    sha256: str
    size: int

    @property
    def key(self) -> str:
        """The content-addressed S3 key: the same bytes always get the same key."""
        return f"{ARTIFACT_PREFIX}{self.sha256}/{self.path.name}"

    @classmethod
    def of(cls, kind: str, path: Path) -> Artifact:
        """Describe the file at ``path``."""
        data = path.read_bytes()
        return cls(kind, path, hashlib.sha256(data).hexdigest(), len(data))


@dataclass
class PackageResult:
    """What :func:`package` built.

    Attributes:
        out_dir: The output folder.
        template: The CloudFormation template (also written to ``template.json``).
        artifacts: Every file to upload, the template last.
        code: Lambda step state name -> its code zip.
        layers: ``(runtime, architecture)`` -> the layer zip (empty with ``layer_arn``).
        glue_scripts: Glue step state name -> its script.
        wheel: The ceap-stage wheel for the Glue jobs (None without Glue steps).
    """

    out_dir: Path
    template: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    code: dict[str, Artifact] = field(default_factory=dict)
    layers: dict[tuple[str, str], Artifact] = field(default_factory=dict)
    glue_scripts: dict[str, Artifact] = field(default_factory=dict)
    wheel: Artifact | None = None

    @property
    def template_path(self) -> Path:
        """``template.json`` in the output folder."""
        return self.out_dir / "template.json"


# ----------------------------------------------------------------------------------------------
# The code zip: which project files a handler needs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class _Unit:
    """A project package (or top-level module) packed whole: ``examples.engagement``."""

    name: str
    path: Path  # the package folder, or the module file

    def files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        found: list[Path] = []
        for path in sorted(self.path.rglob("*")):
            relative = path.relative_to(self.path)
            if any(
                _skipped_dir(self.path, relative.parts[:i]) for i in range(1, len(relative.parts))
            ):
                continue
            if path.is_file() and not _skipped_file(path.name):
                found.append(path)
        return found


def _skipped_dir(base: Path, parts: tuple[str, ...]) -> bool:
    name = parts[-1]
    return (
        name in _SKIPPED_DIRS
        or name.startswith(".")
        or name.endswith(".egg-info")
        or (base.joinpath(*parts) / "pyvenv.cfg").exists()
    )


def _skipped_file(name: str) -> bool:
    return (
        name.endswith(_SKIPPED_SUFFIXES)
        or name == "conftest.py"
        or (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
        or name.startswith(".")
    )


def _unit_of(root: Path, module: str) -> _Unit | None:
    """The unit under ``root`` that holds ``module``: its first regular package on the way down
    (namespace packages are descended), or the top-level module file itself."""
    parts = module.split(".")
    if parts[0] in _PROVIDED:
        return None
    here = root
    for index, part in enumerate(parts):
        folder = here / part
        if (folder / "__init__.py").is_file():
            return _Unit(".".join(parts[: index + 1]), folder)
        if (here / f"{part}.py").is_file():
            return _Unit(".".join(parts[: index + 1]), here / f"{part}.py")
        if not folder.is_dir() or _skipped_dir(here, (part,)):
            return None
        here = folder
    return None


def _parse(path: Path) -> ast.Module:
    """The syntax tree of a project file.

    Raises:
        PackagingError: It is not valid Python.
    """
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise PackagingError(f"{path} is not valid Python: {exc.msg} (line {exc.lineno})") from None


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    """Whether an ``except`` clause handles ``ImportError`` (or ``ModuleNotFoundError``)."""
    if handler.type is None:
        return True
    return bool(
        {"ImportError", "ModuleNotFoundError"} & set(re.findall(r"\w+", ast.unparse(handler.type)))
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree`` (in functions too), and whether it is guarded: under
    ``if TYPE_CHECKING:`` or in a ``try`` that handles ``ImportError`` (an optional dependency),
    so that the module runs without it."""

    def visit(node: ast.AST, guarded: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, guarded
            return
        optional: list[ast.AST] = []  # runs only when an import may be missing
        rest: list[ast.AST] = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            optional, rest = list(node.body), list(node.orelse)
        elif isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            optional = [*node.body, *node.handlers]
            rest = [*node.orelse, *node.finalbody]
        for child in optional:
            yield from visit(child, True)
        for child in rest:
            yield from visit(child, guarded)

    yield from visit(tree, False)


def _imported_names(path: Path, unit: _Unit) -> set[str]:
    """The absolute module names ``path`` imports (relative imports resolved)."""
    tree = _parse(path)
    if unit.path.is_file():
        package_parts = unit.name.split(".")[:-1]
    else:
        relative = path.relative_to(unit.path).with_suffix("")
        package_parts = [*unit.name.split("."), *relative.parts[:-1]]
    names: set[str] = set()
    for node, _ in _imports(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            if prefix:
                names.add(prefix)
                names.update(f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def code_units(root: Path, modules: Iterable[str]) -> list[_Unit]:
    """The project units ``modules`` need: theirs, and every project unit they import, at any
    depth (read from the source, so imports inside functions count too).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name, text in {"app/__init__.py": "", "app/h.py": "from lib import x",
        ...                    "lib.py": "x = 1", "other.py": ""}.items():
        ...     _ = (root / name).parent.mkdir(exist_ok=True), (root / name).write_text(text)
        >>> [u.name for u in code_units(root, ["app.h"])]
        ['app', 'lib']
    """
    found: dict[str, _Unit] = {}
    queue = [unit for m in modules if (unit := _unit_of(root, m)) is not None]
    while queue:
        unit = queue.pop()
        if unit.name in found:
            continue
        found[unit.name] = unit
        for path in unit.files():
            if path.suffix != ".py":
                continue
            for name in sorted(_imported_names(path, unit)):
                other = _unit_of(root, name)
                if other is not None and other.name not in found:
                    queue.append(other)
    return sorted(found.values())


#: Top-level import names every Lambda Python runtime provides (the AWS SDK and its
#: dependencies; see ``_layer.RUNTIME_PROVIDED`` for their distribution names).
RUNTIME_IMPORTS: Final = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"}
)


def _top_level_imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports ``path`` needs at run time (guarded imports,
    see :func:`_imports`, do not count)."""
    names: set[str] = set()
    for node, guarded in _imports(_parse(path)):
        if guarded:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def unprovided_imports(units: Iterable[_Unit], layer_names: Iterable[str]) -> list[str]:
    """The top-level modules the code of ``units`` imports that nothing on Lambda provides:
    not the units themselves, the standard library, the runtime's AWS SDK or the layer.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "app.py").write_text("import json, boto3, pydantic, yaml")
        >>> unprovided_imports(code_units(root, ["app"]), {"pydantic", "ceap_stage"})
        ['yaml']
    """
    units = list(units)
    provided = {
        *sys.stdlib_module_names,
        *RUNTIME_IMPORTS,
        *_PROVIDED,
        *layer_names,
        *(unit.name.split(".")[0] for unit in units),
        "__future__",
    }
    wanted: set[str] = set()
    for unit in units:
        for path in unit.files():
            if path.suffix == ".py":
                wanted |= _top_level_imports(path)
    return sorted(wanted - provided)


def _layer_top_names(layer_zip: Path) -> set[str]:
    """The top-level import names in a layer zip (``python/<name>/`` or ``python/<name>.py``)."""
    import zipfile

    names: set[str] = set()
    with zipfile.ZipFile(layer_zip) as archive:
        for entry in archive.namelist():
            parts = entry.split("/")
            if len(parts) >= 2 and parts[0] == "python" and parts[1]:
                top = parts[1].removesuffix(".py")
                if top.isidentifier():
                    names.add(top)
    return names


def _module_root(module: Any) -> Path:
    """The ``sys.path`` folder ``module`` was imported from."""
    origin = getattr(module, "__file__", None)
    if origin is None:
        raise PackagingError(f"module {module.__name__} has no file (a namespace package?)")
    path = Path(origin).resolve()
    depth = len(module.__name__.split("."))
    return path.parents[depth] if path.name == "__init__.py" else path.parents[depth - 1]


def _check_handler(state: str, reference: str) -> tuple[Path, str, str]:
    """Import ``reference``; return the project root, the module and the Lambda handler string.

    Raises:
        PackagingError: It does not import, is not callable, or is not a module attribute.
    """
    from ceap_stage._handler import WorkflowLambdaHandler
    from ceap_stage.workflow import load_handler

    module_name, _, attribute = reference.partition(":")
    try:
        load_handler(reference)
    except ValueError as exc:
        raise PackagingError(f"step {state}: {exc}; fix the step's handler") from None
    except Exception as exc:  # the module's own import-time error: a syntax error, a raise
        raise PackagingError(
            f"step {state}: importing the module of handler {reference!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if "." in attribute:
        raise PackagingError(
            f"step {state}: handler {reference!r} names a nested attribute; Lambda calls a "
            "module-level name: expose it as 'module:name'"
        )
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, type) and issubclass(target, WorkflowLambdaHandler):
        raise PackagingError(
            f"step {state}: handler {reference!r} is a class; Lambda calls an instance: "
            f"add `handler = {attribute}()` to {module_name} and name that"
        )
    module = sys.modules[module_name]
    return _module_root(module), module_name, f"{module_name}.{attribute}"


def _group_name(units: list[_Unit]) -> str:
    name = "+".join(unit.name for unit in units)
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{units[0].name[: _MAX_NAME - 14]}+{digest}"
    return name


def _zip_units(root: Path, units: list[_Unit], dest: Path, work: Path) -> None:
    tree = work / dest.stem
    shutil.rmtree(tree, ignore_errors=True)
    for unit in units:
        for path in unit.files():
            target = tree / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    write_zip(tree, dest, prefix="", epoch=source_date_epoch())


# ----------------------------------------------------------------------------------------------
# Layers (cached) and the whole package
# ----------------------------------------------------------------------------------------------


def _layer(
    target: Target, wheel: Path, out_dir: Path, *, cache_dir: Path, work: Path, say: _Say
) -> Path:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
    cached = cache_dir / "layers" / digest / target.zip_name(wheel.name.split("-")[1])
    if not cached.is_file():
        say(f"building the layer for {target} (pip) ...")
        cached.parent.mkdir(parents=True, exist_ok=True)
        (work / "layer").mkdir(exist_ok=True)
        build_layer(target, wheel, cached.parent, work_dir=work / "layer")
    dest = out_dir / cached.name
    shutil.copyfile(cached, dest)
    return dest


_Say = Callable[[str], None]


def _describe(artifact: Artifact, root: Path) -> str:
    path = artifact.path.relative_to(root).as_posix()
    unzipped = ""
    if path.endswith(".zip"):
        unzipped = f", unzipped {measure(artifact.path).unzipped / 1e6:.2f} MB"
    size = f"{artifact.size / 1e6:.2f} MB ({artifact.size} B{unzipped})"
    return f"  {path}  {size}  sha256 {artifact.sha256[:12]}"


def _check_out(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").exists():
        raise PackagingError(
            f"{out_dir} is not empty and holds no earlier package (manifest.json); choose an "
            "empty folder with --out"
        )


def _clear_out(out_dir: Path) -> None:
    """Remove an earlier package from ``out_dir`` (and nothing else)."""
    for name in ("lambda", "layer", "glue"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for name in ("template.json", "manifest.json"):
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def package(
    loaded: Any,
    *,
    artifacts_bucket: str,
    out_dir: Path = DEFAULT_OUT,
    layer_arn: str | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    say: _Say = print,
) -> PackageResult:
    """Build the code zips, layers, Glue artifacts and template of the workflow ``loaded``.

    Args:
        loaded: The :class:`~ceap_stage.workflow.LoadedWorkflow`.
        artifacts_bucket: The S3 bucket the artifacts are uploaded to (named in the template).
        out_dir: Where to write (emptied of an earlier package first).
        layer_arn: A published ceap-stage layer to use instead of building one.
        cache_dir: Where built layers are kept between runs.
        say: Prints progress (one line per artifact, with its size).

    Raises:
        PackagingError: A handler does not import, a Glue script is missing, a layer cannot be
            built, ``layer_arn`` is not a layer version ARN, or ``out_dir`` holds something else.

    Example:
        >>> from ceap_stage.workflow import load_workflow
        >>> result = package(load_workflow("examples/engagement/workflow.py"),  # doctest: +SKIP
        ...                  artifacts_bucket="my-artifacts")
    """
    from ceap_stage.workflow._kinds import kind_of
    from ceap_stage.workflow._stack import StackArtifacts, build_stack_template, lambda_target

    if layer_arn is not None and not _LAYER_ARN.fullmatch(layer_arn):
        raise PackagingError(
            f"--layer-arn {layer_arn!r} is not a layer version ARN "
            "(arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)"
        )
    config = loaded.config
    out_dir = out_dir.resolve()
    result = PackageResult(out_dir)
    # Check every input before writing anything; each step's kind says what it packages.
    handlers: dict[str, tuple[Path, str, str]] = {}
    scripts: dict[str, Path] = {}
    lambda_steps = {}
    for step in config.steps:
        try:
            source = kind_of(step).package_source(step, loaded)
        except ValueError as exc:
            raise PackagingError(f"step {step.state_name}: {exc}") from None
        if source is None:
            continue
        if source.handler is not None:
            handlers[step.state_name] = _check_handler(step.state_name, source.handler)
            lambda_steps[step.state_name] = step
        elif source.script is not None:
            scripts[step.state_name] = source.script
    _check_out(out_dir)
    epoch = source_date_epoch()
    with tempfile.TemporaryDirectory(prefix="ceap-package-") as tmp:
        work = Path(tmp)
        stage = work / "out"  # moved to out_dir once complete: never a half-written package
        wheel = installed_wheel(work / "wheel", epoch=epoch)
        # Lambda code: one zip per distinct set of project units.
        zips: dict[str, Artifact] = {}
        units_of: dict[str, list[_Unit]] = {}
        for state, (root, module, _) in handlers.items():
            units = units_of[state] = code_units(root, [module])
            name = _group_name(units)
            if name not in zips:
                dest = stage / "lambda" / f"{name}.zip"
                dest.parent.mkdir(parents=True, exist_ok=True)
                _zip_units(root, units, dest, work)
                zips[name] = Artifact.of("lambda-code", dest)
            result.code[state] = zips[name]
        # Layers: one per runtime and architecture in use.
        if layer_arn is None:
            targets = sorted({lambda_target(step) for step in lambda_steps.values()})
            for runtime, arch in targets:
                (stage / "layer").mkdir(exist_ok=True)
                target = Target(runtime.removeprefix("python"), arch)
                path = _layer(
                    target, wheel, stage / "layer", cache_dir=cache_dir, work=work, say=say
                )
                result.layers[(runtime, arch)] = Artifact.of("layer", path)
            layer_names = {
                name
                for artifact in result.layers.values()
                for name in _layer_top_names(artifact.path)
            }
            for state, units in units_of.items():
                missing = unprovided_imports(units, layer_names)
                if missing:
                    say(
                        f"warning: step {state}'s code imports {', '.join(missing)}, which neither "
                        "its code zip, the ceap-stage layer nor the Lambda runtime provides: the "
                        "function will fail to import it. Vendor it into the project (a folder "
                        "beside the handler's package) or attach a layer that has it."
                    )
        # Glue: the scripts, and ceap-stage as a wheel.
        for state, path in scripts.items():
            dest = stage / "glue" / state / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            result.glue_scripts[state] = Artifact.of("glue-script", dest)
        if scripts:
            dest = stage / "glue" / wheel.name
            shutil.copyfile(wheel, dest)
            result.wheel = Artifact.of("glue-wheel", dest)
        stack = StackArtifacts(
            bucket=artifacts_bucket,
            code={state: a.key for state, a in result.code.items()},
            handlers={state: h[2] for state, h in handlers.items()},
            layers={target: a.key for target, a in result.layers.items()},
            layer_arn=layer_arn,
            glue_scripts={state: a.key for state, a in result.glue_scripts.items()},
            wheel=result.wheel.key if result.wheel else None,
        )
        result.template = build_stack_template(config, stack)
        (stage / "template.json").write_bytes(
            orjson.dumps(result.template, option=orjson.OPT_INDENT_2)
        )
        result.artifacts = [
            *sorted(set(result.code.values()), key=lambda a: a.path),
            *result.layers.values(),
            *result.glue_scripts.values(),
            *([result.wheel] if result.wheel else []),
            Artifact.of("template", stage / "template.json"),
        ]
        manifest = [
            {
                "kind": a.kind,
                "file": a.path.relative_to(stage).as_posix(),
                "bytes": a.size,
                "sha256": a.sha256,
                "key": a.key,
            }
            for a in result.artifacts
        ]
        (stage / "manifest.json").write_bytes(
            orjson.dumps(
                {"artifactsBucket": artifacts_bucket, "artifacts": manifest},
                option=orjson.OPT_INDENT_2,
            )
        )
        _clear_out(out_dir)
        for child in sorted(stage.iterdir()):
            shutil.move(child, out_dir / child.name)
    moved = {a: replace(a, path=out_dir / a.path.relative_to(stage)) for a in result.artifacts}
    result.artifacts = [moved[a] for a in result.artifacts]
    result.code = {state: moved[a] for state, a in result.code.items()}
    result.layers = {target: moved[a] for target, a in result.layers.items()}
    result.glue_scripts = {state: moved[a] for state, a in result.glue_scripts.items()}
    result.wheel = moved[result.wheel] if result.wheel else None
    say(f"packaged {config.workflow_name} into {out_dir}:")
    for artifact in result.artifacts:
        say(_describe(artifact, out_dir))
    return result
