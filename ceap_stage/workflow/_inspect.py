"""Inspect executions in a store: list them, see what each stage wrote, read its records.

The client API of the debugging loop (``ceap-stage executions``, ``show``, ``run --resume``
and ``replay`` use it), for notebooks too::

    from ceap_stage import LocalStore
    from ceap_stage.workflow import Execution, list_executions

    store = LocalStore(".ceap")
    for summary in list_executions(store, "ceap-workflow-dev", limit=5):
        print(summary.execution_id, summary.stages)
    run = Execution(store, "ceap-workflow-dev", "local-20260101T000000Z-0a1b2c3d")
    for name, output in run.stages.items():
        print(name, output.format, output.records_count, output.size)
    first_ten = list(itertools.islice(run.stage("Score").records(), 10))

Everything goes through the stage I/O layer (:mod:`ceap_stage._io`): a stage's records come
from ``StageIO.records`` (JSON Lines and a manifest's parts streamed, in order), its
description from ``StageIO.describe`` (the object's head, no records read).

Requests: listing executions is one delimiter listing of ``executions/`` (one request per
1,000 executions on S3), one delimiter listing per execution (its stages) and one ``HEAD`` per
stage output (its time); the number of objects under a stage (a manifest's parts, shards) does
not count.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ceap_stage._context import INITIAL_STAGE, validate_execution_id
from ceap_stage._errors import CeapStageError
from ceap_stage._formats import READ_CHUNK_BYTES
from ceap_stage._io import OutputDescription, OutputRef, StageIO
from ceap_stage._store import LocalStore, Store

__all__ = [
    "Execution",
    "ExecutionSummary",
    "InspectError",
    "StageOutput",
    "list_executions",
]

_EXECUTIONS = "executions/"


class InspectError(LookupError):
    """An execution, a stage or an output that is not there, or a kept output that is damaged.

    The message names what is wrong in one line (the CLI prints it and exits with status 2).

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> Execution(LocalStore(tempfile.mkdtemp()), "bkt-1", "run-1").stages
        Traceback (most recent call last):
        ...
        ceap_stage.workflow._inspect.InspectError: no execution run-1 in bucket bkt-1
    """


def _where(store: Store, bucket: str) -> str:
    if isinstance(store, LocalStore):
        return f"bucket {bucket}"
    return f"s3://{bucket}"


@dataclass(frozen=True)
class ExecutionSummary:
    """One execution in a listing (:func:`list_executions`).

    Attributes:
        execution_id: The execution id.
        stages: Its stages with an output, oldest output first.
        pending: Its stages that have a directory but no ``output.json`` (a stage that failed
            after writing parts, a fan-out in progress), sorted.
        written_at: When its latest output was written (None: no output yet).

    Example:
        >>> ExecutionSummary("run-1", ("ETL",), (), None).execution_id
        'run-1'
    """

    execution_id: str
    stages: tuple[str, ...]
    pending: tuple[str, ...]
    written_at: datetime | None


def list_executions(
    store: Store,
    bucket: str,
    *,
    limit: int | None = None,
    stage_order: Sequence[str] | None = None,
) -> list[ExecutionSummary]:
    """The executions in ``bucket``, newest first (by their latest output), at most ``limit``.

    Uses delimiter listings: one for the executions, one per execution for its stages, and one
    ``HEAD`` per stage output; never a listing of every object.

    Args:
        store: Where the outputs live.
        bucket: The workflow bucket.
        limit: Return at most this many (the newest).
        stage_order: The workflow's stage names, to order each execution's stages by (stages
            it does not name last); default: oldest output first.

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> from ceap_stage._io import OutputRef, StageIO
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> _ = StageIO(store).write_document(OutputRef("bkt-1", "run-1", "ETL"), [1], records=1)
        >>> [(s.execution_id, s.stages) for s in list_executions(store, "bkt-1")]
        [('run-1', ('ETL',))]
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    summaries: list[ExecutionSummary] = []
    for prefix in store.list_prefixes(bucket, _EXECUTIONS):
        execution_id = prefix[len(_EXECUTIONS) : -1]
        execution = Execution(store, bucket, execution_id, check_id=False)
        written: list[tuple[datetime | None, str]] = []
        pending: list[str] = []
        for name in execution.stage_names():
            info = store.head(bucket, OutputRef(bucket, execution_id, name).key)
            if info is None:
                pending.append(name)
            else:
                written.append((info.last_modified, name))
        written.sort(key=lambda pair: (pair[0] is None, pair[0] or datetime.min, pair[1]))
        if stage_order is not None:  # stable: stages it does not name keep their written order
            rank = {name: i for i, name in enumerate(stage_order)}
            written.sort(key=lambda pair: rank.get(pair[1], len(rank)))
        times = [when for when, _ in written if when is not None]
        summaries.append(
            ExecutionSummary(
                execution_id,
                tuple(name for _, name in written),
                tuple(sorted(pending)),
                max(times) if times else None,
            )
        )
    summaries.sort(key=lambda s: s.execution_id, reverse=True)
    summaries.sort(key=_newest_first, reverse=True)
    return summaries if limit is None else summaries[:limit]


def _newest_first(summary: ExecutionSummary) -> tuple[bool, datetime]:
    when = summary.written_at
    return (when is not None, when.replace(tzinfo=None) if when is not None else datetime.min)


class StageOutput:
    """What one stage of an execution wrote (``Execution.stages[name]``).

    Its description (format, size, metadata) is read once, from the object's head; its records
    are read when asked for.

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> from ceap_stage._io import OutputRef, StageIO
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> ref = OutputRef("bkt-1", "run-1", "ETL")
        >>> _ = StageIO(store).write_jsonl(ref, [{"a": 1}, {"a": 2}])
        >>> out = Execution(store, "bkt-1", "run-1").stage("ETL")
        >>> out.format, out.records_count, list(out.records())
        ('jsonl', 2, [{'a': 1}, {'a': 2}])
    """

    def __init__(self, store: Store, ref: OutputRef) -> None:
        self.store = store
        self.ref = ref

    def __repr__(self) -> str:
        return f"StageOutput({self.ref.execution_id!r}, {self.ref.stage!r})"

    @property
    def name(self) -> str:
        """The stage's name."""
        return self.ref.stage

    @functools.cached_property
    def description(self) -> OutputDescription | None:
        """The output's :class:`~ceap_stage._io.OutputDescription` (None: no ``output.json``)."""
        return StageIO(self.store).describe(self.ref)

    @property
    def exists(self) -> bool:
        """True when the stage wrote its ``output.json``."""
        return self.description is not None

    @functools.cached_property
    def rejected(self) -> int | None:
        """How many queue records the stage rejected (its ``rejected.jsonl``, contract section
        8); None when it wrote none. One ``HEAD`` (the count is the object's metadata), or a
        read of the ids and reasons when the metadata is missing; never a record's payload."""
        info = self.store.head(self.ref.bucket, self.ref.rejected_key)
        if info is None:
            return None
        counted = info.metadata.get("records", "")
        if counted.isdigit():
            return int(counted)
        entries = StageIO(self.store).rejected(self.ref)
        return None if entries is None else len(entries)

    @property
    def format(self) -> str | None:
        """``json``, ``jsonl`` or ``manifest`` (None: no output)."""
        return None if self.description is None else self.description.format

    @property
    def records_count(self) -> int | None:
        """Its records, when known without reading them (a manifest, or the writer's label)."""
        return None if self.description is None else self.description.records

    def count_records(self) -> int | None:
        """Its records: :attr:`records_count`, else a JSON document's (read to count them).

        JSON Lines whose writer did not label them stay unknown (None) rather than be read.
        """
        known = self.records_count
        if known is not None or self.format != "json":
            return known
        try:
            value = StageIO(self.store).read(self.ref).value
        except CeapStageError:
            return None
        return len(value) if isinstance(value, list) else 1

    @property
    def size(self) -> int | None:
        """Its bytes, a manifest's parts included."""
        d = self.description
        return None if d is None else d.total_bytes

    @property
    def parts(self) -> int:
        """How many parts its manifest names (0: not a manifest)."""
        d = self.description
        return 0 if d is None or d.manifest is None else len(d.manifest.parts)

    @property
    def schema(self) -> str | None:
        """The label of the model that wrote it (``ceap-schema`` metadata)."""
        return None if self.description is None else self.description.metadata.get("ceap-schema")

    @property
    def metadata(self) -> dict[str, str]:
        """The output's metadata (``ceap-*``: execution, stage, schema, records, ...)."""
        return {} if self.description is None else dict(self.description.metadata)

    @property
    def written_at(self) -> datetime | None:
        """When ``output.json`` was written (the store's last-modified time)."""
        d = self.description
        value = None if d is None else d.last_modified
        return value if isinstance(value, datetime) else None

    def _require(self) -> OutputDescription:
        if self.description is None:
            raise InspectError(
                f"stage {self.name} of execution {self.ref.execution_id} has no output "
                f"({self.ref.key} does not exist)"
            )
        return self.description

    def records(self, *, chunk_size: int = READ_CHUNK_BYTES) -> Iterator[Any]:
        """Its records in order, streamed: JSON Lines line by line, a manifest's parts in order.

        A JSON document is read whole (a list gives its items, anything else is one record).
        Stop iterating early and little is read (``chunk_size`` bytes at a time).

        Raises:
            InspectError: The stage has no output.
            InputValidationError: The output is damaged (a missing part, a bad line).
        """
        description = self._require()
        io = StageIO(self.store)
        if description.format == "json":
            value = io.read(self.ref).value
            if isinstance(value, list):
                return iter(value)
            return iter([value])
        return io.records(self.ref, validate=_same, label="records", chunk_size=chunk_size)

    def read(self) -> Any:
        """The whole output: a document, or the list of its records (a manifest's parts joined).

        Raises:
            InspectError: The stage has no output.
            InputValidationError: The output is damaged.
        """
        self._require()
        return StageIO(self.store).read(self.ref).value

    def drift(self, model: Any) -> str | None:
        """Whether the output was written by another model than ``model`` (the code's now).

        Compares the schema fingerprint stored with the output to ``model``'s
        (:func:`ceap_stage._models.drift`); None when they agree, when the output carries no
        fingerprint, or when there is no output.
        """
        from ceap_stage._models import drift

        if model is None or self.description is None:
            return None
        return drift(self.description.metadata, model)

    def check(self) -> None:
        """Check that the output can be kept: it exists, and a manifest's parts exist with the
        sizes it says (one ``HEAD`` per part; no data read).

        Raises:
            InspectError: Something is missing or has another size.
        """
        try:
            description = self._require()
        except CeapStageError as exc:  # a damaged manifest
            raise InspectError(f"the output of stage {self.name} is damaged: {exc}") from None
        if description.manifest is None:
            return
        for part in description.manifest.parts:
            info = self.store.head(self.ref.bucket, part.key)
            if info is None:
                raise InspectError(
                    f"the output of stage {self.name} is missing its part {part.key}"
                )
            if info.size != part.bytes:
                raise InspectError(
                    f"the output of stage {self.name} has a part of {info.size} bytes where its "
                    f"manifest says {part.bytes}: {part.key}"
                )


def _same(value: Any) -> Any:
    return value


class Execution:
    """One execution's outputs in a store: its stages, their descriptions and records.

    Args:
        store: Where the outputs live (a :class:`~ceap_stage.LocalStore`, an S3 store).
        bucket: The workflow bucket.
        execution_id: The execution id (the state machine's execution name).
        stage_order: The workflow's stage names, to order :attr:`stages` by (default: by when
            each output was written, stages without one last).

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> from ceap_stage._io import OutputRef, StageIO
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> _ = StageIO(store).write_document(OutputRef("bkt-1", "run-1", "ETL"), [1], records=1)
        >>> run = Execution(store, "bkt-1", "run-1")
        >>> list(run.stages), run.stage("ETL").read()
        (['ETL'], [1])
    """

    def __init__(
        self,
        store: Store,
        bucket: str,
        execution_id: str,
        *,
        stage_order: tuple[str, ...] | list[str] | None = None,
        check_id: bool = True,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.execution_id = validate_execution_id(execution_id) if check_id else execution_id
        self.stage_order = tuple(stage_order) if stage_order is not None else None

    def __repr__(self) -> str:
        return f"Execution({self.store!r}, {self.bucket!r}, {self.execution_id!r})"

    @property
    def prefix(self) -> str:
        """``executions/{id}/``: everything of the execution lives below it."""
        return f"{_EXECUTIONS}{self.execution_id}/"

    def stage_names(self) -> list[str]:
        """The stages with anything stored (one delimiter listing), sorted by name."""
        listed = self.store.list_prefixes(self.bucket, self.prefix)
        return [
            p[len(self.prefix) : -1] for p in listed if p[len(self.prefix) : -1] != INITIAL_STAGE
        ]

    def stages_if_any(self) -> dict[str, StageOutput]:
        """Like :attr:`stages`, but an execution with nothing stored has no stages."""
        names = self.stage_names()
        outputs = {
            name: StageOutput(self.store, OutputRef(self.bucket, self.execution_id, name))
            for name in names
        }
        if self.stage_order is not None:
            rank = {name: i for i, name in enumerate(self.stage_order)}
            ordered = sorted(outputs, key=lambda n: (rank.get(n, len(rank)), n))
        else:
            ordered = sorted(
                outputs,
                key=lambda n: (
                    outputs[n].written_at is None,
                    outputs[n].written_at or datetime.min,
                    n,
                ),
            )
        return {name: outputs[name] for name in ordered}

    @functools.cached_property
    def stages(self) -> dict[str, StageOutput]:
        """Its stages (those with anything stored), in workflow or writing order.

        Raises:
            InspectError: Nothing is stored under the execution.
        """
        found = self.stages_if_any()
        if not found and not self.store.list_prefixes(self.bucket, self.prefix):
            raise InspectError(
                f"no execution {self.execution_id} in {_where(self.store, self.bucket)}"
            )
        return found

    def stage(self, name: str) -> StageOutput:
        """One stage's output.

        Raises:
            InspectError: The execution does not exist, or has nothing of this stage.
        """
        stages = self.stages
        if name not in stages:
            known = ", ".join(stages) or "none"
            raise InspectError(
                f"execution {self.execution_id} has no stage {name} (its stages: {known}); a "
                "stage that failed or did not run stores nothing (--workflow lists them all)"
            )
        return stages[name]

    def output(self, name: str) -> StageOutput:
        """A stage's output whether or not anything is stored for it (``exists`` tells)."""
        return StageOutput(self.store, OutputRef(self.bucket, self.execution_id, name))

    def exists(self) -> bool:
        """True when anything is stored under the execution."""
        return bool(self.store.list_prefixes(self.bucket, self.prefix))
