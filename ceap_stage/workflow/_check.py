"""Contracts between stages, checked before anything runs (``ceap-stage check``).

For every edge of a workflow (the initial batch to the first stage, then each stage's output to
the next stage's input) :func:`check_workflow` decides whether every value the writer may write
is accepted by the reader, with the engine of :mod:`._compat`. Handlers are imported through the
workflow loader; Glue scripts are read, not run: their declared schemas are found in the source.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import PydanticUserError, TypeAdapter

from ._compat import (
    DEFAULT_BUDGET,
    Compatibility,
    compare_schemas,
    has_functions,
    reader_schema,
    writer_schema,
)
from ._config import GlueStep, LambdaStep, Step, WorkflowConfiguration
from ._loader import LoadedWorkflow, load_handler
from ._spark_schema import spark_reader_schema, spark_writer_schema

__all__ = ["CheckReport", "EdgeCheck", "StageProblem", "check_workflow"]

Verdict = Literal["OK", "INCOMPATIBLE", "UNCHECKED"]
_EXAMPLE_CHARS = 160


@dataclass(frozen=True)
class EdgeCheck:
    """The verdict on one edge: can ``reader`` read what ``writer`` writes?

    Attributes:
        writer: The writing stage (``initial`` for the execution's input).
        reader: The reading stage.
        verdict: ``OK``, ``INCOMPATIBLE`` or ``UNCHECKED``.
        method: ``structural``, ``property``, ``shape`` (the initial batch) or ``none``.
        field: The first field at fault (INCOMPATIBLE).
        example: A JSON text the writer may write that the reader refuses (INCOMPATIBLE).
        detail: The reader's complaint, why it is unchecked, or how it was decided.
        examples: Generated values tried by the property-based method.

    Example:
        >>> EdgeCheck("A", "B", "OK", "structural").line()
        'A -> B: OK (structural)'
    """

    writer: str
    reader: str
    verdict: Verdict
    method: str
    field: str | None = None
    example: str | None = None
    detail: str = ""
    examples: int = 0

    def line(self) -> str:
        """One line for humans."""
        head = f"{self.writer} -> {self.reader}: {self.verdict}"
        plural = "example" if self.examples == 1 else "examples"
        how = self.method + (f", {self.examples} {plural}" if self.examples else "")
        if self.verdict == "INCOMPATIBLE":
            text = f"{head} ({how}): {self.field}: {self.detail}"
            return text + (f"; e.g. {self.example}" if self.example is not None else "")
        if self.verdict == "UNCHECKED":
            return f"{head}: {self.detail}"
        return f"{head} ({how})" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class StageProblem:
    """A stage that is wrong on its own: its handler does not import, or is pinned elsewhere.

    Attributes:
        stage: The step's state name.
        kind: ``import`` (a usage error: the workflow cannot be checked) or ``pinned``.
        message: What is wrong, naming the handler.

    Example:
        >>> StageProblem("A", "pinned", "pinned to B").line()
        'A: ERROR: pinned to B'
    """

    stage: str
    kind: Literal["import", "pinned"]
    message: str

    def line(self) -> str:
        """One line for humans."""
        return f"{self.stage}: ERROR: {self.message}"


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_workflow` found.

    Attributes:
        workflow: The workflow's name.
        edges: One :class:`EdgeCheck` per edge, in order.
        problems: Stages wrong on their own.
        seconds: How long the check took.

    Example:
        >>> CheckReport("w", (EdgeCheck("A", "B", "OK", "structural"),), ()).ok
        True
    """

    workflow: str
    edges: tuple[EdgeCheck, ...]
    problems: tuple[StageProblem, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no edge is INCOMPATIBLE and no stage has a problem."""
        return not self.incompatible and not self.problems

    @property
    def incompatible(self) -> list[EdgeCheck]:
        """The INCOMPATIBLE edges."""
        return [e for e in self.edges if e.verdict == "INCOMPATIBLE"]

    @property
    def import_errors(self) -> list[StageProblem]:
        """Handlers that do not import (the workflow could not be checked whole)."""
        return [p for p in self.problems if p.kind == "import"]

    def lines(self) -> list[str]:
        """The report, one line per stage problem and per edge."""
        return [p.line() for p in self.problems] + [e.line() for e in self.edges]


# -- the two sides of an edge -----------------------------------------------------------------


@dataclass
class _Side:
    """What one stage writes or reads, as far as it is known."""

    schema: dict[str, Any] | None = None
    adapter: TypeAdapter[Any] | None = None
    label: str = ""
    unknown: str = ""  # why the side is not known
    spark: bool = False  # a Glue reader: no pydantic validator to confirm with


@dataclass
class _Stage:
    step: Step
    reads: _Side = field(default_factory=_Side)
    writes: _Side = field(default_factory=_Side)


@functools.cache
def _reader_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    return reader_schema(adapter)


@functools.cache
def _writer_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    return writer_schema(adapter)


def _handler_spec(handler: Any) -> tuple[Any, str | None]:
    runtime = getattr(handler, "runtime", None)
    spec = getattr(runtime, "spec", None)
    return spec, getattr(runtime, "name", None)


def _lambda_stage(step: LambdaStep, problems: list[StageProblem]) -> _Stage:
    stage = _Stage(step)
    if step.handler is None:
        stage.reads.unknown = stage.writes.unknown = f"step {step.state_name} names no handler"
        return stage
    try:
        handler = load_handler(step.handler)
    except Exception as exc:  # the loader's message, or the module's own import-time error
        message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        problems.append(
            StageProblem(step.state_name, "import", f"handler {step.handler}: {message}")
        )
        stage.reads.unknown = stage.writes.unknown = f"handler {step.handler} does not import"
        return stage
    spec, pinned = _handler_spec(handler)
    if pinned is not None and pinned != step.state_name:
        problems.append(
            StageProblem(
                step.state_name,
                "pinned",
                f"handler {step.handler} is pinned to stage {pinned!r} (name=) but runs as "
                f"step {step.state_name!r}; it would refuse every event",
            )
        )
    if spec is None:
        why = f"handler {step.handler} is not a ceap-stage handler (no declared models)"
        stage.reads.unknown = stage.writes.unknown = why
        return stage
    from ceap_stage._models import model_name

    for attribute, adapter, model, schema_of in (
        ("reads", spec.input_adapter, spec.input_model, _reader_schema),
        ("writes", spec.output_adapter, spec.output_model, _writer_schema),
    ):
        try:
            side = _Side(schema_of(adapter), adapter, model_name(model))
        except PydanticUserError as exc:  # e.g. a field of an arbitrary type
            side = _Side(
                unknown=f"pydantic cannot describe {model_name(model)} as a JSON Schema "
                f"({type(exc).__name__})"
            )
        setattr(stage, attribute, side)
    return stage


@dataclass(frozen=True)
class GlueDeclarations:
    """What a Glue script declares, read from its source without running it."""

    input_ddl: str | None = None
    input_unknown: str = "the script declares no schema= for read_input / @glue_stage"
    output_ddl: str | None = None
    output_model: Any = None


def _literal(node: ast.expr, constants: dict[str, ast.expr]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return _literal(constants[node.id], constants)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, constants), _literal(node.right, constants)
        return left + right if left is not None and right is not None else None
    return None


def read_glue_declarations(script: Path) -> GlueDeclarations:
    """Find a Glue script's declared input schema and output schema or model.

    The input: the ``schema=`` of ``read_input``/``job.read_input``/``@glue_stage``, a string
    literal or a module-level constant. The output: a module-level ``OUTPUT_SCHEMA`` (a DDL
    string) or ``OUTPUT_MODEL`` (a pydantic model of one record; the script is then imported,
    under a name that is not ``__main__``, to get it).

    Example:
        >>> read_glue_declarations(Path("examples/engagement/glue_score.py")).input_ddl[:19]
        'event_id STRING, se'
    """
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    constants: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                constants[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            constants[node.target.id] = node.value
    schemas: list[str | None] = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
        if name not in ("read_input", "glue_stage"):
            continue
        value = next((k.value for k in call.keywords if k.arg == "schema"), None)
        if value is None and name == "read_input" and isinstance(call.func, ast.Attribute):
            value = call.args[0] if call.args else None  # job.read_input(SCHEMA)
        if value is not None:
            schemas.append(_literal(value, constants))
    input_ddl, unknown = None, GlueDeclarations.input_unknown
    if len(set(schemas)) > 1:
        unknown = "the script reads its input with several schemas"
    elif schemas and schemas[0] is None:
        unknown = "the script's schema= is not a string literal or module-level constant"
    elif schemas:
        input_ddl = schemas[0]
    output_ddl = (
        _literal(constants["OUTPUT_SCHEMA"], constants) if "OUTPUT_SCHEMA" in constants else None
    )
    output_model = None
    if "OUTPUT_MODEL" in constants:
        module_name = f"_ceap_check_{abs(hash(str(script.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, script)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            output_model = module.OUTPUT_MODEL
    return GlueDeclarations(input_ddl, unknown, output_ddl, output_model)


def _glue_stage(step: GlueStep, loaded: LoadedWorkflow, problems: list[StageProblem]) -> _Stage:
    stage = _Stage(step)
    if step.script is None:
        stage.reads.unknown = stage.writes.unknown = f"Glue step {step.state_name} names no script"
        return stage
    path = loaded.script_path(step.script)
    try:
        found = read_glue_declarations(path)
    except (OSError, SyntaxError) as exc:
        problems.append(
            StageProblem(
                step.state_name, "import", f"Glue script {path}: {type(exc).__name__}: {exc}"
            )
        )
        stage.reads.unknown = stage.writes.unknown = f"Glue script {path} cannot be read"
        return stage
    except Exception as exc:  # OUTPUT_MODEL's module failed to import
        problems.append(
            StageProblem(
                step.state_name, "import", f"Glue script {path}: {type(exc).__name__}: {exc}"
            )
        )
        stage.reads.unknown = stage.writes.unknown = f"Glue script {path} does not import"
        return stage
    if found.input_ddl is not None:
        try:
            stage.reads = _Side(
                spark_reader_schema(found.input_ddl), None, "Spark schema", spark=True
            )
        except ValueError as exc:
            stage.reads.unknown = f"Glue input schema: {exc}"
    else:
        stage.reads.unknown = f"Glue step {step.state_name}: {found.input_unknown}"
    if found.output_model is not None:
        adapter = TypeAdapter(list[found.output_model])  # type: ignore[name-defined]
        from ceap_stage._models import model_name

        stage.writes = _Side(
            _writer_schema(adapter), adapter, f"list[{model_name(found.output_model)}]"
        )
    elif found.output_ddl is not None:
        try:
            stage.writes = _Side(spark_writer_schema(found.output_ddl), None, "OUTPUT_SCHEMA")
        except ValueError as exc:
            stage.writes.unknown = f"Glue OUTPUT_SCHEMA: {exc}"
    else:
        stage.writes.unknown = (
            f"Glue step {step.state_name} declares no OUTPUT_SCHEMA or OUTPUT_MODEL"
        )
    return stage


# -- edges ------------------------------------------------------------------------------------


def _example_text(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= _EXAMPLE_CHARS else text[: _EXAMPLE_CHARS - 3] + "..."


def _writer_fn(adapter: TypeAdapter[Any]) -> Callable[[Any], bytes]:
    def write(value: Any) -> bytes:
        # What the stage writes for a value its model holds: validated, then dumped by alias.
        return adapter.dump_json(adapter.validate_json(orjson.dumps(value)), by_alias=True)

    return write


def _reader_fn(adapter: TypeAdapter[Any]) -> Callable[[bytes], None]:
    def read(text: bytes) -> None:
        adapter.validate_json(text)

    return read


def _edge(writer: str, reader: str, w: _Side, r: _Side, *, budget: int, seed: int) -> EdgeCheck:
    if w.schema is None:
        return EdgeCheck(writer, reader, "UNCHECKED", "none", detail=w.unknown)
    if r.schema is None:
        return EdgeCheck(writer, reader, "UNCHECKED", "none", detail=r.unknown)
    opaque = []
    if r.adapter is not None and has_functions(r.adapter, serialization=False):
        opaque.append(f"{r.label} has validators")
    if w.adapter is not None and has_functions(w.adapter, serialization=True):
        opaque.append(f"{w.label} has custom serializers")
    result: Compatibility = compare_schemas(
        w.schema,
        r.schema,
        write=_writer_fn(w.adapter) if w.adapter is not None else None,
        read=_reader_fn(r.adapter) if r.adapter is not None else None,
        writer_inputs=_reader_schema(w.adapter) if w.adapter is not None else None,
        opaque=opaque,
        budget=budget,
        seed=seed,
    )
    return EdgeCheck(
        writer,
        reader,
        result.verdict,
        result.method,
        field=result.field,
        example=_example_text(result.example) if result.has_example else None,
        detail=result.reason,
        examples=result.examples,
    )


def compare_models(
    writer: Any, reader: Any, *, budget: int = DEFAULT_BUDGET, seed: int = 0
) -> EdgeCheck:
    """The verdict on one pair of models: does ``reader`` accept all that ``writer`` writes?

    Example:
        >>> compare_models(list[int], list[float]).verdict
        'OK'
    """
    from ceap_stage._models import adapter_for, model_name

    w, r = adapter_for(writer), adapter_for(reader)
    return _edge(
        model_name(writer),
        model_name(reader),
        _Side(_writer_schema(w), w, model_name(writer)),
        _Side(_reader_schema(r), r, model_name(reader)),
        budget=budget,
        seed=seed,
    )


def _initial_edge(first: _Stage) -> EdgeCheck:
    reader = first.step.state_name
    if isinstance(first.step, GlueStep):
        return EdgeCheck(
            "initial",
            reader,
            "UNCHECKED",
            "none",
            detail="a Glue first stage reads the staged execution input, known only at run time",
        )
    side = first.reads
    if side.schema is None or side.adapter is None:
        return EdgeCheck("initial", reader, "UNCHECKED", "none", detail=side.unknown)
    # The pipe sends a batch of SQS records; the runtime hands a list model their bodies, and a
    # single-record model only a batch of one.
    batch = [{"body": "{}"}, {"body": "{}"}]
    if _accepts_array(side.schema):
        return EdgeCheck(
            "initial",
            reader,
            "OK",
            "shape",
            detail=f"{side.label} takes the batch's records (their bodies are checked at run time)",
        )
    return EdgeCheck(
        "initial",
        reader,
        "INCOMPATIBLE",
        "shape",
        field="<root>",
        example=_example_text(batch),
        detail=f"the source queue's pipe sends a batch of SQS records; {side.label} takes one "
        "record (use a list model)",
    )


def _accepts_array(schema: dict[str, Any]) -> bool:
    kinds = [schema, *schema.get("anyOf", ())]
    return any(k.get("type") == "array" or not (set(k) - {"title", "description"}) for k in kinds)


def check_workflow(
    workflow: LoadedWorkflow | WorkflowConfiguration,
    *,
    budget: int = DEFAULT_BUDGET,
    seed: int = 0,
) -> CheckReport:
    """Check every edge of a workflow: does each stage accept what the one before writes?

    Args:
        workflow: A :class:`LoadedWorkflow` (Glue scripts resolve against its directory) or a
            bare :class:`WorkflowConfiguration`.
        budget: Examples the property-based method tries per edge it is needed on.
        seed: Seeds the example generator (the same seed, the same verdicts).

    Returns:
        A :class:`CheckReport`: one :class:`EdgeCheck` per edge (``initial -> first`` first),
        and the stages wrong on their own (a handler that does not import, a pinned name).

    Example:
        >>> report = check_workflow(load_workflow("examples/engagement/workflow.py"))
        >>> report.ok, report.edges[1].line()
        (True, 'ETLStage -> FilterStage: OK (structural)')
    """
    started = time.perf_counter()
    if isinstance(workflow, WorkflowConfiguration):
        workflow = LoadedWorkflow(workflow, Path.cwd(), Path.cwd())
    problems: list[StageProblem] = []
    stages = [
        _lambda_stage(step, problems)
        if isinstance(step, LambdaStep)
        else _glue_stage(step, workflow, problems)
        for step in workflow.config.steps
    ]
    edges = [_initial_edge(stages[0])]
    for before, after in itertools.pairwise(stages):
        edges.append(
            _edge(
                before.step.state_name,
                after.step.state_name,
                before.writes,
                after.reads,
                budget=budget,
                seed=seed,
            )
        )
    return CheckReport(
        workflow.config.workflow_name, tuple(edges), tuple(problems), time.perf_counter() - started
    )
