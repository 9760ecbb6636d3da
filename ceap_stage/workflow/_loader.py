"""Load a workflow configuration from a Python module, a YAML file or a JSON file."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from ceap_stage._handler import WorkflowLambdaHandler

from ._config import WorkflowConfiguration, WorkflowConfigurationError, field_problems
from ._kinds import kind_of

__all__ = ["LoadedWorkflow", "load_handler", "load_workflow"]

#: Names a workflow module may expose its configuration under (checked in this order).
_CONFIG_NAMES = ("workflow", "WORKFLOW", "config", "configuration")


@dataclass(frozen=True)
class LoadedWorkflow:
    """A configuration with where it came from.

    Attributes:
        config: The validated configuration.
        source: The file it was loaded from.
        base_dir: Relative Glue script paths are resolved against this directory.
        sample_input: The module's ``sample_input()`` (a callable returning the execution
            input, e.g. an SQS batch), used by ``ceap-stage run`` when no ``--input`` is given.

    Example:
        >>> loaded = load_workflow("examples/engagement/workflow_standard.py")
        >>> loaded.script_path("glue_score.py").name, loaded.sample_input is not None
        ('glue_score.py', True)
    """

    config: WorkflowConfiguration
    source: Path
    base_dir: Path
    sample_input: Callable[[], Any] | None = None

    def script_path(self, script: str) -> Path:
        """A Glue step's script path, resolved against :attr:`base_dir`."""
        path = Path(script)
        return path if path.is_absolute() else self.base_dir / path


def _import_by_path(path: Path) -> Any | None:
    """Import ``path`` under its dotted name relative to a ``sys.path`` entry, if it has one.

    Namespace packages count (``examples/`` needs no ``__init__.py``); the imported module must
    be the very file, or the next entry is tried.
    """
    resolved = path.resolve()
    for entry in list(sys.path):
        try:
            relative = resolved.with_suffix("").relative_to(Path(entry or ".").resolve())
        except (OSError, ValueError):
            continue
        if not relative.parts or not all(p.isidentifier() for p in relative.parts):
            continue
        name = ".".join(relative.parts)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # not importable under this name; an error inside the module is raised
            raise
        origin = getattr(module, "__file__", None)
        if origin is not None and Path(origin).resolve() == resolved:
            return module
    return None


def _load_module(path: Path) -> Any:
    module = _import_by_path(path)
    if module is not None:
        return module
    # A module inside a package that is not on sys.path: put the package's parent there.
    root = path.resolve().parent
    if (root / "__init__.py").is_file():
        while (root.parent / "__init__.py").is_file():
            root = root.parent
        sys.path.insert(0, str(root.parent))
        module = _import_by_path(path)
        if module is not None:
            return module
    spec = importlib.util.spec_from_file_location(f"_ceap_workflow_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise WorkflowConfigurationError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _construction_message(source: Path, exc: ValidationError) -> str:
    """What is wrong with an object a workflow module builds, one line per field (snake_case,
    as the module names them), headed by the line of the module that built it."""
    line = _line_in(source, exc)
    lines = [f"invalid workflow configuration in {source}{f', line {line}' if line else ''}:"]
    problems = field_problems(exc, snake=True, title=exc.title, show_input=True)
    lines.extend(f"  - {problem}" for problem in problems)
    return "\n".join(lines)


def _located(source: Path, exc: WorkflowConfigurationError) -> WorkflowConfigurationError:
    """``exc``, its heading naming the line of ``source`` that built the configuration."""
    heading = "invalid workflow configuration:"
    line = _line_in(source, exc)
    message = str(exc)
    if type(exc) is not WorkflowConfigurationError or not message.startswith(heading) or not line:
        return exc
    located = f"invalid workflow configuration in {source}, line {line}:"
    return WorkflowConfigurationError(located + message.removeprefix(heading))


def _line_in(source: Path, exc: BaseException) -> int | None:
    """The line of ``source`` the exception passed through last (the statement that built the
    invalid object), or None."""
    resolved = source.resolve()
    line = None
    traceback = exc.__traceback__
    while traceback is not None:
        if Path(traceback.tb_frame.f_code.co_filename).resolve() == resolved:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _load_data(path: Path) -> Any:
    text = path.read_bytes()
    if path.suffix.lower() == ".json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise WorkflowConfigurationError(
                f"{path} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise WorkflowConfigurationError(
            f"{path} is YAML, which needs PyYAML: pip install 'ceap-stage[yaml]'"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkflowConfigurationError(f"{path} is not valid YAML: {exc}") from None


def load_workflow(path: str | Path) -> LoadedWorkflow:
    """Load a workflow from a ``.py`` module, or a ``.yaml``/``.yml``/``.json`` file.

    A module exposes its :class:`WorkflowConfiguration` as a module-level ``workflow`` (or
    ``WORKFLOW``, ``config``, ``configuration``) and may define ``sample_input()``. A module
    inside a package on ``sys.path`` is imported under its package name, so its relative imports
    work. PyYAML is imported only for YAML files.

    Raises:
        WorkflowConfigurationError: The file is missing, unreadable or not a valid
            configuration.

    Example:
        >>> import json, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "wf.json"
        >>> _ = path.write_text(json.dumps({"workflowName": "w", "workflowBucket": "bkt-1",
        ...     "sourceQueue": "q", "steps": [{"stateName": "A", "functionName": "fa"}]}))
        >>> load_workflow(path).config.state_names
        ['A']
    """
    source = Path(path)
    if source.is_dir():
        candidates = [p for p in sorted(source.iterdir()) if p.stem == "workflow" and p.is_file()]
        hint = f": did you mean {candidates[0]}?" if candidates else ""
        raise WorkflowConfigurationError(
            f"{source} is a folder; name the workflow file (a .py, .yaml or .json){hint}"
        )
    if not source.is_file():
        raise WorkflowConfigurationError(f"no workflow file at {source}")
    suffix = source.suffix.lower()
    sample: Callable[[], Any] | None = None
    if suffix == ".py":
        try:
            module = _load_module(source)
        except ValidationError as exc:  # a step or model built with invalid fields
            raise WorkflowConfigurationError(_construction_message(source, exc)) from None
        except WorkflowConfigurationError as exc:  # WorkflowConfiguration(...) in the module
            raise _located(source, exc) from None
        except SyntaxError as exc:
            raise WorkflowConfigurationError(
                f"{exc.filename or source}, line {exc.lineno}: {exc.msg} (a syntax error in "
                "the workflow module)"
            ) from None
        except Exception as exc:  # the module's own import-time error
            raise WorkflowConfigurationError(
                f"importing the workflow module {source} raised {type(exc).__name__}: {exc}"
            ) from exc
        found = [getattr(module, n) for n in _CONFIG_NAMES if hasattr(module, n)]
        configs = [c for c in found if isinstance(c, WorkflowConfiguration)]
        if not configs:
            raise WorkflowConfigurationError(
                f"{source} defines no WorkflowConfiguration; expose one as a module-level "
                "variable named 'workflow'"
            )
        config = configs[0]
        candidate = getattr(module, "sample_input", None)
        sample = candidate if callable(candidate) else None
    elif suffix in (".yaml", ".yml", ".json"):
        config = WorkflowConfiguration.parse(_load_data(source))
    else:
        raise WorkflowConfigurationError(
            f"{source}: a workflow is a .py module or a .yaml, .yml or .json file"
        )
    problems = [problem for step in config.steps for problem in kind_of(step).code_problems(step)]
    if problems:
        raise WorkflowConfigurationError(
            "\n".join(["invalid workflow configuration:", *(f"  - {p}" for p in problems)])
        )
    return LoadedWorkflow(config, source, source.resolve().parent, sample)


def load_handler(reference: str) -> Callable[..., Any]:
    """Import a Lambda handler named ``package.module:attribute``.

    A ``WorkflowLambdaHandler`` subclass named instead of an instance is instantiated.

    Raises:
        WorkflowConfigurationError: The module or attribute does not exist or is not callable.

    Example:
        >>> load_handler("json:dumps")([1])
        '[1]'
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise WorkflowConfigurationError(
            f"handler {reference!r} must look like 'package.module:attribute'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and not (module_name == missing or module_name.startswith(f"{missing}.")):
            # The handler's module exists; something it imports is not installed.
            raise WorkflowConfigurationError(
                f"the module of handler {reference!r} imports {missing!r}, which is not "
                f"installed here: {exc}"
            ) from exc
        raise WorkflowConfigurationError(
            f"cannot import the module of handler {reference!r}: {exc} (handlers are imported "
            f"from the current directory, {os.getcwd()}, and sys.path)"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            close = difflib.get_close_matches(part, [n for n in dir(target) if n[:1] != "_"], 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WorkflowConfigurationError(f"handler {reference!r}: no attribute {part!r}{hint}")
        target = getattr(target, part)
    if isinstance(target, type) and issubclass(target, WorkflowLambdaHandler):
        target = target()  # the class named instead of its instance: make the instance
    elif isinstance(target, type):
        raise WorkflowConfigurationError(
            f"{reference} is a class, not a stage handler: name a @stage function or a "
            "WorkflowLambdaHandler instance or subclass (or a plain function taking "
            "(event, context))"
        )
    if not callable(target):
        raise WorkflowConfigurationError(f"handler {reference!r} is not callable")
    result: Callable[..., Any] = target
    return result
