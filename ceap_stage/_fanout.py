"""The three phases of a fanned-out stage (docs/contract.md section 7): plan, shard, collect.

A fanned-out Lambda stage is one function invoked many times: once to ``plan`` (cut the previous
stage's output into shards), once per shard (``shard``: that slice in, JSON Lines out), and once
to ``collect`` (commit the shard outputs as one manifest at ``output.json``). The event field
``ceapPhase`` says which; an event without it is the ordinary single invocation.

Everything goes through the stage I/O layer (:mod:`ceap_stage._io`):

- ``plan`` reads the previous output's *description* (:meth:`StageIO.describe`), never its
  records: a manifest's parts are grouped (small parts) or cut into byte ranges (large parts)
  towards ``recordsPerShard``, using the parts' sizes and the manifest's record count; a JSON
  Lines object is cut into byte ranges (the shard's ranged reads find the line boundaries: a
  line belongs to the range its first byte lies in); a JSON array document is cut into record
  ranges. It writes ``shards.jsonl``, one small line per shard, the same bytes on every retry.
- ``shard`` reads its slice only (:meth:`StageIO.read_slice`), validates it record by record,
  calls the stage function and writes ``shards/{n:05d}.jsonl`` (one atomic put; the same input
  gives the same bytes, so a retried shard writes what the first attempt wrote).
- ``collect`` reads ``shards.jsonl``, checks that every shard output exists (its size from the
  store, its record count from its metadata), and commits a manifest whose parts are the shard
  outputs in shard order.

Only list-like or ``Iterable[X]`` input and output models can be fanned out (the records of a
shard are a slice of the records of the whole); ``plan`` refuses anything else.
"""

from __future__ import annotations

import math
import time
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson
from pydantic import TypeAdapter, ValidationError

from ._errors import (
    ContextResolutionError,
    HandlerDefinitionError,
    InputNotFoundError,
    InputValidationError,
    OutputValidationError,
)
from ._formats import JSONL, ManifestPart
from ._io import (
    ByteRange,
    OutputDescription,
    OutputRef,
    PartBytes,
    PartRange,
    RecordRange,
    Slice,
    StageIO,
    commit_manifest,
    encode_records,
    output_metadata,
    put_output,
    upstream_refs,
)
from ._models import (
    UNSET,
    StageSpec,
    adapter_for,
    describe_validation_error,
    json_validator,
    model_name,
    unwrap_annotated,
)
from ._observability import elapsed_ms

if TYPE_CHECKING:
    from ._context import ExecutionContext, StageEvent
    from ._observability import InvocationStats
    from ._runtime import StageRuntime
    from ._store import PutResult

__all__ = [
    "PHASES",
    "SHARD_VERSION",
    "Shard",
    "fan_out_problems",
    "plan_shards",
    "run_phase",
]

#: The values of the event field ``ceapPhase``.
PHASES: Final = ("plan", "shard", "collect")
#: The ``ceap`` tag of a ``shards.jsonl`` line.
SHARD_VERSION: Final = "shard/1"
# The most records a plan reads to count a JSON array document that carries no record count.
_SAMPLE_BYTES: Final = 1 << 16
_LIST_CONTAINERS: Final = (list, tuple, set, frozenset)


def record_model(model: Any) -> Any:
    """The record type of a list-like or ``Iterable[X]`` model (``Any`` when not given)."""
    model = unwrap_annotated(model)
    args = typing.get_args(model)
    if not args or (len(args) == 2 and args[1] is Ellipsis and args[0] is Ellipsis):
        return Any
    return args[0]


def fan_out_problems(spec: StageSpec, where: str) -> list[str]:
    """Why a stage with ``spec`` cannot be fanned out (empty when it can).

    Example:
        >>> from ceap_stage._models import resolve
        >>> def ok(rows: list[int]) -> list[int]: return rows
        >>> def bad(rows: list[int]) -> int: return 1
        >>> fan_out_problems(resolve(ok), "S"), fan_out_problems(resolve(bad), "S")
        ([], ['S: fan_out needs a list-like or Iterable[X] output model, not int'])
    """
    problems = []
    if not spec.accepts_records:
        problems.append(
            f"{where}: fan_out needs a list-like or Iterable[X] input model, not "
            f"{model_name(spec.input_model)}"
        )
    if not spec.output_is_list:
        problems.append(
            f"{where}: fan_out needs a list-like or Iterable[X] output model, not "
            f"{model_name(spec.output_model)}"
        )
    return problems


# -- shards -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shard:
    """One line of ``shards.jsonl``: which slice of the previous output shard ``index`` reads.

    Example:
        >>> s = Shard("run-1", "Score", "Filter", 0, 2, PartRange(0, 3))
        >>> Shard.from_line(orjson.loads(s.to_line())) == s
        True
    """

    execution_id: str
    stage: str
    previous_stage: str
    index: int
    of: int
    slice: Slice

    def to_line(self) -> bytes:
        """The JSON Lines line (well under 1 KB)."""
        part = self.slice
        fields: dict[str, Any] = {"kind": part.kind, "start": part.start, "stop": part.stop}
        if isinstance(part, PartBytes):
            fields["part"] = part.part
        return orjson.dumps(
            {
                "ceap": SHARD_VERSION,
                "executionId": self.execution_id,
                "stage": self.stage,
                "previousStage": self.previous_stage,
                "index": self.index,
                "of": self.of,
                "slice": fields,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )

    @classmethod
    def from_line(cls, value: object) -> Shard:
        """Check a decoded line (a mapping) and build the shard.

        Raises:
            InputValidationError: It is not a ``shard/1`` line.
        """
        if not isinstance(value, Mapping) or value.get("ceap") != SHARD_VERSION:
            raise InputValidationError(f"the shard is not a {SHARD_VERSION!r} object")
        text = {name: value.get(name) for name in ("executionId", "stage", "previousStage")}
        if not all(isinstance(v, str) and v for v in text.values()):
            raise InputValidationError("the shard lacks executionId, stage or previousStage")
        index, of = value.get("index"), value.get("of")
        if not (_count(index) and _count(of) and index < of):  # type: ignore[operator]
            raise InputValidationError("the shard's index is not a number below its 'of'")
        raw = value.get("slice")
        if not isinstance(raw, Mapping):
            raise InputValidationError("the shard has no slice")
        start, stop, kind = raw.get("start"), raw.get("stop"), raw.get("kind")
        if not (_count(start) and _count(stop) and start <= stop):  # type: ignore[operator]
            raise InputValidationError("the shard's slice is not a range start <= stop")
        part: Slice
        if kind == "parts":
            part = PartRange(start, stop)  # type: ignore[arg-type]
        elif kind == "records":
            part = RecordRange(start, stop)  # type: ignore[arg-type]
        elif kind == "bytes":
            part = ByteRange(start, stop)  # type: ignore[arg-type]
        elif kind == "partBytes" and _count(raw.get("part")):
            part = PartBytes(raw["part"], start, stop)  # type: ignore[arg-type]
        else:
            raise InputValidationError(f"the shard's slice kind {kind!r} is unknown")
        return cls(
            text["executionId"],  # type: ignore[arg-type]
            text["stage"],  # type: ignore[arg-type]
            text["previousStage"],  # type: ignore[arg-type]
            index,  # type: ignore[arg-type]
            of,  # type: ignore[arg-type]
            part,
        )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _even_cuts(size: int, pieces: int) -> list[tuple[int, int]]:
    pieces = max(1, min(pieces, size)) if size else 1
    return [(size * k // pieces, size * (k + 1) // pieces) for k in range(pieces)]


def plan_shards(description: OutputDescription, records_per_shard: int) -> list[Slice]:
    """Cut an output, from its description alone, into slices of about ``records_per_shard``.

    A manifest: consecutive parts grouped while they hold at most that many records (estimated
    from the parts' sizes and the record count), a part estimated to hold more cut into byte
    ranges. A JSON Lines object: byte ranges of the size that many records take on average. A
    JSON array document: record ranges. An output without records: no shard.

    Raises:
        InputValidationError: The description has no record count where one is needed.

    Example:
        >>> from ceap_stage._formats import Manifest, ManifestPart
        >>> parts = tuple(ManifestPart(f"executions/r/S/parts/w/p{i}", 100) for i in range(4))
        >>> d = OutputDescription(OutputRef("b", "r", "S"), "manifest", None, 300,
        ...                       manifest=Manifest(40, parts), records=40)
        >>> plan_shards(d, 20)
        [PartRange(start=0, stop=2, kind='parts'), PartRange(start=2, stop=4, kind='parts')]
    """
    records = description.records
    if records is None:
        raise InputValidationError(
            "the previous output carries no record count; a plan needs one",
            bucket=description.ref.bucket,
            key=description.ref.key,
        )
    if records == 0:
        return []
    if description.format == "json":
        return [
            RecordRange(start, min(start + records_per_shard, records))
            for start in range(0, records, records_per_shard)
        ]
    if description.manifest is not None:
        manifest = description.manifest
        total = manifest.total_bytes
        target = max(1.0, total * records_per_shard / records)
        slices: list[Slice] = []
        group_start, group_bytes = 0, 0
        for index, part in enumerate(manifest.parts):
            if part.bytes > target:
                if group_start < index:
                    slices.append(PartRange(group_start, index))
                pieces = math.ceil(part.bytes / target)
                slices.extend(
                    PartBytes(index, a, b) for a, b in _even_cuts(part.bytes, pieces) if b > a
                )
                group_start, group_bytes = index + 1, 0
                continue
            if group_bytes + part.bytes > target and group_start < index:
                slices.append(PartRange(group_start, index))
                group_start, group_bytes = index, 0
            group_bytes += part.bytes
        if group_start < len(manifest.parts):
            slices.append(PartRange(group_start, len(manifest.parts)))
        return slices
    size = description.size
    pieces = math.ceil(records / records_per_shard)
    return [ByteRange(a, b) for a, b in _even_cuts(size, pieces) if b > a]


# -- the phases -------------------------------------------------------------------------------


def _check_models(runtime: StageRuntime, stage: str) -> None:
    problems = fan_out_problems(runtime.spec, f"stage {stage!r}")
    if problems:
        raise HandlerDefinitionError("; ".join(problems))


def _previous_ref(ev: StageEvent, ctx: ExecutionContext) -> OutputRef:
    upstream = upstream_refs(ctx.workflow_bucket, ev.execution_id, ev.previous_stage)
    if not upstream:
        raise ContextResolutionError(
            "a fanned-out stage reads the previous stage's output, and this event has no "
            "previousStage (a first step cannot be fanned out)"
        )
    return upstream[0]


def _positive(event: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = event.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ContextResolutionError(f"the event's {name} must be a whole number >= 1")
    return value


def _percentage(event: Mapping[str, Any], name: str) -> float:
    value = event.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ContextResolutionError(f"the event's {name} must be a number from 0 to 100")
    return float(value)


def run_phase(
    runtime: StageRuntime,
    io: StageIO,
    event: Mapping[str, Any],
    *,
    ev: StageEvent,
    ctx: ExecutionContext,
    stats: InvocationStats,
) -> dict[str, Any]:
    """Run the phase ``event["ceapPhase"]`` names and return its pointer.

    Raises:
        ContextResolutionError: The phase, or a field it needs, is not valid.
        HandlerDefinitionError: The stage's models cannot be fanned out.
        InputNotFoundError: The previous output, ``shards.jsonl`` or a shard output is missing.
        InputValidationError: A shard line is not one of this stage's, or a record is invalid.
    """
    phase = event.get("ceapPhase")
    if phase not in PHASES:
        raise ContextResolutionError(f"ceapPhase must be one of {list(PHASES)}, not {phase!r}")
    _check_models(runtime, ctx.current_stage)
    stats.extra["phase"] = phase  # on the log lines: which phase of the stage this was
    if phase == "plan":
        return _plan(io, ev, ctx, _positive(event, "recordsPerShard"), stats)
    if phase == "shard":
        return _shard(runtime, io, event.get("shard"), ev=ev, ctx=ctx, stats=stats)
    return _collect(runtime, io, ctx, _percentage(event, "toleratedFailurePercentage"), stats)


def _plan(
    io: StageIO,
    ev: StageEvent,
    ctx: ExecutionContext,
    records_per_shard: int,
    stats: InvocationStats,
) -> dict[str, Any]:
    source = _previous_ref(ev, ctx)
    description = io.describe(source)
    if description is None:
        raise InputNotFoundError(
            f"the previous stage {source.stage!r} has no output",
            bucket=source.bucket,
            key=source.key,
        )
    stats.input_key = source.key
    stats.input_bytes = description.size
    stats.input_format = description.format
    if description.records is None:
        description = _with_record_count(io, description)
    slices = plan_shards(description, records_per_shard)
    ref = OutputRef(ctx.workflow_bucket, ctx.execution_id, ctx.current_stage)
    body = b"".join(
        Shard(ctx.execution_id, ctx.current_stage, source.stage, n, len(slices), s).to_line()
        for n, s in enumerate(slices)
    )
    # shards.jsonl is the plan, not the stage's output: its own key, the same bytes on a retry.
    put = put_output(
        io.store,
        ref.bucket,
        ref.shards_key,
        body,
        content_type=JSONL,
        metadata=output_metadata(ref, len(slices)),
        write_once=False,
    )
    # The plan processes no record: RecordsProcessed counts each record once, in its shard.
    _wrote(stats, ref.shards_key, put, "jsonl", 0)
    stats.extra["planned_records"] = description.records
    return {
        "status": "SUCCESS",
        "stage": ctx.current_stage,
        "executionId": ctx.execution_id,
        "ceapPhase": "plan",
        "shards": len(slices),
        "records": description.records,
        "plan": {"bucket": ref.bucket, "key": ref.shards_key, "bytes": put.bytes},
    }


def _wrote(stats: InvocationStats, key: str, put: PutResult, fmt: str, records: int) -> None:
    """Note in ``stats`` what a phase wrote: its key, size, format and record count."""
    stats.records = records
    stats.output_key = key
    stats.output_bytes = put.bytes
    stats.output_format = fmt


def _output_fields(ref: OutputRef, put: PutResult, fmt: str) -> dict[str, Any]:
    """A pointer's ``output`` object (docs/contract.md section 4) for what a phase wrote."""
    return {
        "bucket": ref.bucket,
        "key": ref.key,
        "bytes": put.bytes,
        "sha256": put.sha256,
        "format": fmt,
    }


def _with_record_count(io: StageIO, description: OutputDescription) -> OutputDescription:
    """A description whose output carries no record count (a foreign writer), counted.

    A JSON document is read and counted (documents are at most the single-object limit);
    JSON Lines is estimated from the average line length of its first 64 KiB.
    """
    ref = description.ref
    if description.format == "json":
        value = io.read(ref).value
        if not isinstance(value, list):
            raise InputValidationError(
                "a fanned-out stage reads a list of records; the previous output is a single "
                "JSON value",
                bucket=ref.bucket,
                key=ref.key,
            )
        count = len(value)
    else:
        head = io.store.get_range(ref.bucket, ref.key, 0, _SAMPLE_BYTES) or b""
        lines = head.count(b"\n") or 1
        count = max(1, round(description.size * lines / max(1, len(head))))
    return OutputDescription(
        ref,
        description.format,
        description.content_type,
        description.size,
        description.metadata,
        description.last_modified,
        description.manifest,
        count,
    )


def _item_validator(spec: StageSpec) -> Any:
    item = spec.input_item if spec.input_item is not UNSET else record_model(spec.input_model)
    return json_validator(adapter_for(item))


def _output_adapter(spec: StageSpec) -> TypeAdapter[Any]:
    item = spec.output_item if spec.output_item is not UNSET else record_model(spec.output_model)
    return adapter_for(item)


def _shard(
    runtime: StageRuntime,
    io: StageIO,
    raw: object,
    *,
    ev: StageEvent,
    ctx: ExecutionContext,
    stats: InvocationStats,
) -> dict[str, Any]:
    source = _previous_ref(ev, ctx)
    try:
        shard = Shard.from_line(raw)
    except InputValidationError as exc:
        raise InputValidationError(
            f"the event's shard is not a shard of stage {ctx.current_stage!r}: {exc.detail}"
        ) from None
    mine = (shard.execution_id, shard.stage, shard.previous_stage)
    if mine != (ctx.execution_id, ctx.current_stage, source.stage):
        raise InputValidationError(
            f"the event's shard {shard.index} belongs to stage {shard.stage!r} (previous "
            f"{shard.previous_stage!r}) of execution {shard.execution_id!r}, not to stage "
            f"{ctx.current_stage!r} (previous {source.stage!r}) of execution "
            f"{ctx.execution_id!r}"
        )
    stats.extra["shard"] = shard.index
    spec = runtime.spec
    label = model_name(spec.input_model)
    stats.input_key = source.key
    stats.input_format = shard.slice.kind
    started = time.perf_counter()
    values = io.read_slice(source, shard.slice)
    validate = _item_validator(spec)
    records = []
    for number, value in enumerate(values):
        try:
            records.append(validate(value))
        except ValidationError as exc:
            raise InputValidationError(
                f"record {number} of shard {shard.index} fails the input model {label}: "
                f"{describe_validation_error(exc)}",
                bucket=source.bucket,
                key=source.key,
            ) from None
    data: Any = records
    if spec.input_item is not UNSET:
        data = iter(records)
    else:
        model = unwrap_annotated(spec.input_model)
        origin = typing.get_origin(model) or model
        if origin in _LIST_CONTAINERS and origin is not list:
            data = origin(records)
    stats.read_ms = elapsed_ms(started)
    started = time.perf_counter()
    result = spec.fn(data, ctx) if spec.pass_context else spec.fn(data)
    stats.process_ms = elapsed_ms(started)
    started = time.perf_counter()
    ref = OutputRef(ctx.workflow_bucket, ctx.execution_id, ctx.current_stage, shard.index)
    out_label = model_name(spec.output_model)
    if isinstance(result, str | bytes | bytearray | Mapping) or not isinstance(
        result, typing.Iterable
    ):
        raise OutputValidationError(
            f"shard {shard.index} returned a {type(result).__name__}, not an iterable of "
            f"records, for the output model {out_label}",
            bucket=ref.bucket,
            key=ref.key,
        )
    lines = list(encode_records(result, _output_adapter(spec), out_label))
    body = b"".join(lines)
    put = io.write_bytes(
        ref,
        body,
        "jsonl",
        metadata=runtime.output_metadata(ref, len(lines)),
        write_once=runtime.write_once,
    )
    _wrote(stats, ref.key, put, "jsonl", len(lines))
    stats.write_ms = elapsed_ms(started)
    return {
        "status": "SUCCESS",
        "stage": ctx.current_stage,
        "executionId": ctx.execution_id,
        "ceapPhase": "shard",
        "shard": shard.index,
        "recordsProcessed": len(lines),
        "output": _output_fields(ref, put, "jsonl"),
    }


def read_plan(io: StageIO, ref: OutputRef) -> list[Shard]:
    """The shards of ``ref``'s stage, from its ``shards.jsonl``, checked to be its own.

    Raises:
        InputNotFoundError: There is no ``shards.jsonl`` (the plan did not run).
        InputValidationError: A line is not a shard of this stage, or the lines are not
            numbered 0, 1, ... in order.
    """
    obj = io.store.get(ref.bucket, ref.shards_key)
    if obj is None:
        raise InputNotFoundError(
            f"stage {ref.stage!r} has no shards.jsonl (its plan has not run)",
            bucket=ref.bucket,
            key=ref.shards_key,
        )
    shards = []
    for number, line in enumerate(obj.body.splitlines()):
        try:
            shard = Shard.from_line(orjson.loads(line))
        except (orjson.JSONDecodeError, InputValidationError) as exc:
            detail = exc.detail if isinstance(exc, InputValidationError) else "not JSON"
            raise InputValidationError(
                f"line {number + 1} of shards.jsonl is not a shard: {detail}",
                bucket=ref.bucket,
                key=ref.shards_key,
            ) from None
        if (shard.execution_id, shard.stage, shard.index) != (ref.execution_id, ref.stage, number):
            raise InputValidationError(
                f"line {number + 1} of shards.jsonl is not shard {number} of stage "
                f"{ref.stage!r} in execution {ref.execution_id!r}",
                bucket=ref.bucket,
                key=ref.shards_key,
            )
        shards.append(shard)
    return shards


def _collect(
    runtime: StageRuntime,
    io: StageIO,
    ctx: ExecutionContext,
    tolerated: float,
    stats: InvocationStats,
) -> dict[str, Any]:
    ref = OutputRef(ctx.workflow_bucket, ctx.execution_id, ctx.current_stage)
    shards = read_plan(io, ref)
    parts: list[ManifestPart] = []
    missing: list[str] = []
    records = 0
    for shard in shards:
        out = ref.shard_ref(shard.index)
        info = io.store.head(out.bucket, out.key)
        if info is None:
            missing.append(out.key)
            continue
        raw = info.metadata.get("ceap-records")
        if raw is None or not raw.isdigit():
            body = io.store.get(out.bucket, out.key)
            count = 0 if body is None else body.body.count(b"\n")
        else:
            count = int(raw)
        records += count
        parts.append(ManifestPart(out.key, info.size))
    if missing and len(missing) * 100 > tolerated * len(shards):
        raise InputNotFoundError(
            f"{len(missing)} of {len(shards)} shards of stage {ref.stage!r} have no output "
            f"(tolerated: {tolerated:g}%); the first is {missing[0]}",
            bucket=ref.bucket,
            key=missing[0],
        )
    _, put = commit_manifest(
        io.store,
        ref,
        parts,
        records,
        metadata=runtime.output_metadata(ref, records),
        write_once=runtime.write_once,
    )
    # The collect processes no record either (the shards did): see the plan.
    _wrote(stats, ref.key, put, "manifest", 0)
    stats.extra["collected_records"] = records
    pointer: dict[str, Any] = {
        "status": "SUCCESS",
        "stage": ctx.current_stage,
        "recordsProcessed": records,
        "executionId": ctx.execution_id,
        "output": _output_fields(ref, put, "manifest"),
    }
    if missing:
        pointer["shardsMissing"] = len(missing)
    return pointer


def shard_events(base: Mapping[str, Any], shards: Sequence[Shard]) -> Iterator[dict[str, Any]]:
    """The ``shard`` events of a plan: what the Map's ``ItemSelector`` builds, evaluated."""
    for shard in shards:
        yield {**base, "ceapPhase": "shard", "shard": orjson.loads(shard.to_line())}
