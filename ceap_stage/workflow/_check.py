"""Contracts between stages, checked before anything runs (``ceap-stage check``).

For every edge of a workflow (the initial batch to the first stage, then each stage's output to
the next stage's input) :func:`check_workflow` decides whether every value the writer may write
is accepted by the reader, with the engine of :mod:`._compat`. Handlers are imported through the
workflow loader; Glue scripts are read, not run: their declared schemas are found in the source.
What a step reads and writes comes from its kind (``StepKind.contract``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import TypeAdapter

from ._compat import (
    DEFAULT_BUDGET,
    Compatibility,
    ContractSide,
    StageContract,
    compare_schemas,
    has_functions,
    reader_schema,
)
from ._config import Step, WorkflowConfiguration
from ._kinds import kind_of
from ._loader import LoadedWorkflow

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


def _edge(
    writer: str, reader: str, w: ContractSide, r: ContractSide, *, budget: int, seed: int
) -> EdgeCheck:
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
        writer_inputs=reader_schema(w.adapter) if w.adapter is not None else None,
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
        ContractSide.of_model(writer, reading=False, adapter=w),
        ContractSide.of_model(reader, reading=True, adapter=r),
        budget=budget,
        seed=seed,
    )


def _initial_edge(step: Step, contract: StageContract) -> EdgeCheck:
    reader = step.state_name
    kind = kind_of(step)
    if kind.reads_staged_input:
        return EdgeCheck(
            "initial",
            reader,
            "UNCHECKED",
            "none",
            detail=f"a {kind.noun} first reads the staged execution input, known only at run time",
        )
    side = contract.reads
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
        >>> from ceap_stage.workflow import load_workflow
        >>> report = check_workflow(load_workflow("examples/engagement/workflow.py"))
        >>> report.ok, report.edges[1].line()
        (True, 'ETLStage -> FilterStage: OK (structural)')
    """
    started = time.perf_counter()
    if isinstance(workflow, WorkflowConfiguration):
        workflow = LoadedWorkflow(workflow, Path.cwd(), Path.cwd())
    steps = workflow.config.steps
    contracts = [kind_of(step).contract(step, workflow) for step in steps]
    problems = [
        StageProblem(step.state_name, kind, message)
        for step, contract in zip(steps, contracts, strict=True)
        for kind, message in contract.problems
    ]
    edges = [_initial_edge(steps[0], contracts[0])]
    for index in range(1, len(steps)):
        edges.append(
            _edge(
                steps[index - 1].state_name,
                steps[index].state_name,
                contracts[index - 1].writes,
                contracts[index].reads,
                budget=budget,
                seed=seed,
            )
        )
    return CheckReport(
        workflow.config.workflow_name, tuple(edges), tuple(problems), time.perf_counter() - started
    )
