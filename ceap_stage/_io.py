"""The stage I/O layer: the one module that knows the storage layout, the formats and manifests.

Everything that reads or writes a stage's output goes through here: the Lambda runtime, the Glue
helper (Spark and Python shell), ``ceap_stage.testing``, the local runner and the CLI.

Addressing. :class:`OutputRef` names one output: ``(bucket, execution_id, stage)``, and a
``shard`` for the output of one shard of a fanned-out stage. The layout (docs/contract.md
sections 3, 7 and 8) lives in its properties: ``executions/{id}/{stage}/output.json`` (the
output, or the manifest that commits it), ``parts/{writer}/...`` (a partitioned output's
parts), ``shards.jsonl`` and ``shards/{n:05d}.jsonl`` (a fan-out's plan and shard outputs),
``rejected.jsonl``; the ``initial`` pseudo-stage holds a Glue first stage's input. A stage's
input is a tuple of upstream refs (:func:`upstream_refs`): one today (the wire names one
``previousStage``), more for a fan-in later.

Reading. :meth:`StageIO.read` reads an output whole (a manifest's parts expanded, sizes and the
record count checked), :meth:`StageIO.records` record by record (memory bounded by one read chunk
and one record), :meth:`StageIO.describe` tells what an output is without reading its records,
and :meth:`StageIO.read_slice` reads one slice: manifest parts ``i..j``, a record range of a JSON
array, or a byte range of a JSON Lines object cut at line boundaries (a line belongs to the range
its first byte lies in). A manifest's parts must lie under the stage's own prefix
``executions/{id}/{stage}/`` (so shard outputs are valid parts).

Writing. One part layout and one commit protocol for Lambda and Glue alike: parts go under
``executions/{id}/{stage}/parts/{writer}/``; a Glue writer is its time-ordered attempt id, a
Lambda writer's id is the hash of its first part and each part's name carries the hash of its
content, so a retry with the same data writes the same keys and the same manifest byte for byte
(``write_once`` sees it as done). The manifest (``output.json``) is written last and is the
commit marker. After it, the commit deletes the parts under ``parts/`` that the manifest now at
``output.json`` does not reference (parts of earlier attempts, retries with other data, crashed
writers); shard outputs live under ``shards/``, outside ``parts/``, so the writers of a
fanned-out stage never delete each other's output. A write that fails deletes the parts it wrote
(best effort) and writes no ``output.json``. Metadata is written in one place
(:func:`output_metadata`).
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Final, Literal, NamedTuple
from urllib.parse import quote

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from ._context import INITIAL_STAGE
from ._errors import (
    CeapStageError,
    InputNotFoundError,
    InputValidationError,
    OutputConflictError,
    OutputValidationError,
)
from ._formats import (
    CONTENT_TYPES,
    JSON,
    JSONL,
    MANIFEST,
    MANIFEST_VERSION,
    READ_CHUNK_BYTES,
    Format,
    Manifest,
    ManifestPart,
    decode,
    encode_jsonl,
    format_of_content_type,
    iter_jsonl,
    iter_jsonl_numbered,
    iter_lines,
    open_stream,
)
from ._models import describe_validation_error
from ._observability import InvocationStats
from ._store import _NO_METADATA, LocalStore, PutResult, Store, sha256_hex

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "DEFAULT_MAX_SINGLE_OBJECT_BYTES",
    "DEFAULT_PART_BYTES",
    "ByteRange",
    "OutputDescription",
    "OutputRef",
    "PartBytes",
    "PartRange",
    "PartWriter",
    "RecordRange",
    "Slice",
    "StageIO",
    "commit_manifest",
    "dumps_line",
    "encode_records",
    "initial_records",
    "maybe_not_finite",
    "meta_value",
    "output_metadata",
    "put_output",
    "upstream_refs",
    "write_record_stream",
]

#: A list output whose encoding is larger than this is written as JSON Lines parts + manifest.
DEFAULT_MAX_SINGLE_OBJECT_BYTES: Final = 64 * 1024 * 1024
#: The most one JSON document may hold when the next stage reads nothing else (``outputFormat:
#: json``, a Kotlin CEAP stage): that reader parses it whole (a Jackson tree takes several times
#: its size in the reader's Lambda memory, 10 GB at most), and the writer holds it in memory too.
DEFAULT_MAX_DOCUMENT_BYTES: Final = 256 * 1024 * 1024
#: The size of each part of a partitioned output, and the most a streamed output buffers.
DEFAULT_PART_BYTES: Final = 8 * 1024 * 1024
# A manifest is small; an output.json larger than this is not one (no need to read it).
_MANIFEST_READ_LIMIT: Final = 1 << 20

Validate = Callable[[Any], Any]


# -- addressing ---------------------------------------------------------------------------------


class OutputRef(NamedTuple):
    """Where one stage output lives; its properties are the storage layout.

    Args:
        bucket: The workflow bucket.
        execution_id: The execution.
        stage: The stage (``initial`` for the input a Glue first stage reads).
        shard: The shard of a fanned-out stage whose output this is (None: the stage's own).

    Example:
        >>> ref = OutputRef("wf-bucket", "run-1", "Score")
        >>> ref.key, ref.parts_prefix
        ('executions/run-1/Score/output.json', 'executions/run-1/Score/parts/')
        >>> ref.shard_ref(3).key
        'executions/run-1/Score/shards/00003.jsonl'
    """

    bucket: str
    execution_id: str
    stage: str
    shard: int | None = None

    @classmethod
    def initial(cls, bucket: str, execution_id: str) -> OutputRef:
        """The ``initial`` pseudo-stage: the input of a Glue job that is a workflow's first step."""
        return cls(bucket, execution_id, INITIAL_STAGE)

    @property
    def prefix(self) -> str:
        """Everything of the stage lives under ``executions/{id}/{stage}/``."""
        return f"executions/{self.execution_id}/{self.stage}/"

    @property
    def key(self) -> str:
        """The output: ``output.json``, or ``shards/{n:05d}.jsonl`` for a shard."""
        if self.shard is not None:
            return f"{self.prefix}shards/{self.shard:05d}.jsonl"
        return f"{self.prefix}output.json"

    @property
    def parts_prefix(self) -> str:
        """Where a partitioned output's parts go: ``parts/{writer}/...`` below it."""
        return f"{self.prefix}parts/"

    @property
    def shards_key(self) -> str:
        """A fan-out's plan: one line per shard (docs/contract.md section 7)."""
        return f"{self.prefix}shards.jsonl"

    @property
    def shards_prefix(self) -> str:
        """Where the shard outputs of a fanned-out stage go."""
        return f"{self.prefix}shards/"

    @property
    def rejected_key(self) -> str:
        """The records a batch stage rejected (docs/contract.md section 8)."""
        return f"{self.prefix}rejected.jsonl"

    def shard_ref(self, shard: int) -> OutputRef:
        """The output of one shard of this stage."""
        return OutputRef(self.bucket, self.execution_id, self.stage, shard)

    def writer_prefix(self, writer: str) -> str:
        """The prefix of one writer's parts."""
        return f"{self.parts_prefix}{writer}/"


def upstream_refs(
    bucket: str, execution_id: str, previous_stage: str | None
) -> tuple[OutputRef, ...]:
    """The outputs a stage reads: one upstream today, room for several (fan-in) later.

    Example:
        >>> [r.stage for r in upstream_refs("b", "run-1", "Filter")], upstream_refs("b", "r", None)
        (['Filter'], ())
    """
    if previous_stage is None:
        return ()
    return (OutputRef(bucket, execution_id, previous_stage),)


# -- metadata -----------------------------------------------------------------------------------

_META_SAFE = re.compile(r"[A-Za-z0-9\-_.~:\[\], ]*")


def meta_value(value: str) -> str:
    """An S3 metadata value (ASCII): percent-encode what is not plainly safe.

    >>> meta_value("Score"), meta_value("Scöre")
    ('Score', 'Sc%C3%B6re')
    """
    return value if _META_SAFE.fullmatch(value) else quote(value, safe="-_.~:[], ")


def output_metadata(
    ref: OutputRef,
    records: int,
    *,
    schema: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The metadata every output carries: execution id, stage, schema label, record count.

    ``schema`` is the output model's label (already made metadata-safe with :func:`meta_value`);
    ``extra`` adds more (a Glue attempt id; a schema fingerprint later).

    >>> output_metadata(OutputRef("b", "run-1", "Score"), 2, schema="Scored")["ceap-records"]
    '2'
    """
    metadata = {
        "ceap-execution-id": meta_value(ref.execution_id),
        "ceap-stage": meta_value(ref.stage),
    }
    if schema is not None:
        metadata["ceap-schema"] = schema
    metadata["ceap-records"] = str(records)
    if extra:
        metadata.update(extra)
    return metadata


# -- recognising JSON ---------------------------------------------------------------------------

# maybe_not_finite: digits become "0", "E" becomes "e" and "+" goes, so that big exponents and
# long digit runs (numbers that may overflow to infinity) are found by two plain substring
# searches, far cheaper than a regex.
_ZEROED = bytes.maketrans(b"123456789E", b"000000000e")
_WHITESPACE = b" \t\r\n"


def maybe_not_finite(body: bytes) -> bool:
    """Whether ``body`` may hold ``NaN``/``Infinity`` or a number beyond the float range.

    >>> maybe_not_finite(b'[1.5, 2]'), maybe_not_finite(b'[1e400]'), maybe_not_finite(b'[NaN]')
    (False, True, True)
    """
    if b"NaN" in body or b"Infinity" in body:
        return True
    zeroed = body.translate(_ZEROED, b"+")
    return b"0e000" in zeroed or b"0" * 300 in zeroed


def _one_pass_json(body: bytes, content_type: str | None) -> bool:
    """Whether a body may be validated straight from its JSON text (one pass).

    Yes for an object labelled ``application/json``, and for an unlabelled object (a
    :class:`LocalStore` file without a sidecar) whose content is a JSON array, or a JSON object
    that is not a manifest; never when the body may hold a number that is not finite (the
    ``NaN``/``Infinity`` literals, which pydantic's parser accepts and JSON does not, or a
    three-digit exponent or a 300-digit run, which may overflow to infinity where orjson refuses
    it): such a body takes the strict orjson reader. Unlabelled JSON Lines that starts like an
    array fails pydantic's parse as ``json_invalid`` and falls back to the strict reader.
    """
    fmt = format_of_content_type(content_type)
    if fmt is None and content_type is None:
        start = body[:64].lstrip(_WHITESPACE)[:1]
        if start == b"[" or (start == b"{" and b'"ceap"' not in body):
            fmt = "json"
    return fmt == "json" and not maybe_not_finite(body)


# -- descriptions and slices --------------------------------------------------------------------


class OutputDescription(NamedTuple):
    """What an output is, without its records (:meth:`StageIO.describe`).

    ``records`` is known for a manifest (and from the metadata when the writer put it there).
    """

    ref: OutputRef
    format: Format
    content_type: str | None
    size: int
    metadata: Mapping[str, str] = _NO_METADATA
    last_modified: Any = None
    manifest: Manifest | None = None
    records: int | None = None

    @property
    def total_bytes(self) -> int:
        """Its bytes, a manifest's parts included (what the stage wrote in all)."""
        return self.size + (self.manifest.total_bytes if self.manifest is not None else 0)


class PartRange(NamedTuple):
    """Manifest parts ``start`` to ``stop`` (exclusive)."""

    start: int
    stop: int
    kind: Literal["parts"] = "parts"


class RecordRange(NamedTuple):
    """Records ``start`` to ``stop`` (exclusive) of a JSON array document."""

    start: int
    stop: int
    kind: Literal["records"] = "records"


class ByteRange(NamedTuple):
    """Bytes ``start`` to ``stop`` of a JSON Lines object: the lines that begin in the range."""

    start: int
    stop: int
    kind: Literal["bytes"] = "bytes"


class PartBytes(NamedTuple):
    """Bytes ``start`` to ``stop`` of manifest part ``part``: the lines that begin in the range.

    A part too large for one shard of a fan-out is read as several of these.
    """

    part: int
    start: int
    stop: int
    kind: Literal["partBytes"] = "partBytes"


Slice = PartRange | RecordRange | ByteRange | PartBytes


class ReadResult(NamedTuple):
    """An output read whole: its format, value (records for JSON Lines and a manifest), size.

    ``text`` is the document's JSON text when the value is a plain JSON document (validators
    that need the text use it instead of encoding the value again); ``validated`` tells that the
    value came from the one-pass ``parse_json`` of :meth:`StageIO.read`.
    """

    format: Format
    value: Any
    size: int
    text: bytes | None = None
    validated: bool = False


class _CountingReader:
    """Counts the bytes read through it (a manifest part's size is checked against them)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.bytes += len(data)
        return data


def _validated(
    source: Iterator[tuple[str | None, int, Any]],
    unit: str,
    validate: Validate,
    label: str,
    *,
    bucket: str | None,
    close: Callable[[], None] | None = None,
) -> Iterator[Any]:
    key: str | None = None
    try:
        for key, number, record in source:
            try:
                value = validate(record)
            except ValidationError as exc:
                raise InputValidationError(
                    f"{unit} {number} fails the input model {label}: "
                    f"{describe_validation_error(exc)}",
                    bucket=bucket if key else None,
                    key=key,
                ) from None
            yield value
    except InputValidationError as exc:
        exc.add_context(bucket=bucket if key else None, key=key)
        raise
    finally:
        if close is not None:
            close()


def initial_records(value: Any, validate: Validate, label: str) -> Iterator[Any]:
    """Stream a first stage's ``initialData`` (a list, or a Pipes batch's bodies) record by record.

    Raises:
        InputValidationError: ``value`` is not a list of records.
    """
    if not isinstance(value, list):
        raise InputValidationError(
            f"initialData is a single value but the input model {label} takes a stream of records"
        )
    return _validated(
        ((None, index, record) for index, record in enumerate(value)),
        "initialData record",
        validate,
        label,
        bucket=None,
    )


class StageIO:
    """Reads and writes stage outputs in one store: the only code that knows the layout.

    Args:
        store: Where outputs live.

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> io = StageIO(LocalStore(tempfile.mkdtemp()))
        >>> ref = OutputRef("wf-bucket", "run-1", "Score")
        >>> io.write_document(ref, [{"a": 1}, {"a": 2}], records=2).bytes
        17
        >>> io.read(ref).value, io.describe(ref).format
        ([{'a': 1}, {'a': 2}], 'json')
        >>> io.read_slice(ref, RecordRange(1, 2))
        [{'a': 2}]
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"StageIO({self.store!r})"

    # -- reading whole ----------------------------------------------------------------------

    def read(
        self,
        ref: OutputRef,
        *,
        parse_json: Callable[[bytes], Any] | None = None,
        missing: str | None = None,
    ) -> ReadResult:
        """Read an output whole: a document, JSON Lines records, or a manifest's parts' records.

        Args:
            ref: The output.
            parse_json: Validates a JSON document straight from its text (pydantic's
                ``validate_json``), used for any body recognised as JSON whatever the store.
                Its :class:`ValidationError` propagates, except ``json_invalid``: then the
                strict reader says why.
            missing: The message of the :class:`InputNotFoundError` (default: the stage's).

        Raises:
            InputNotFoundError: The output does not exist.
            InputValidationError: It is not valid in its format, or a manifest is damaged.
        """
        bucket, key = ref.bucket, ref.key
        obj = self.store.get(bucket, key)
        if obj is None:
            raise InputNotFoundError(
                missing or f"the stage {ref.stage!r} has no output", bucket=bucket, key=key
            )
        body = obj.body
        if parse_json is not None and _one_pass_json(body, obj.content_type):
            try:
                return ReadResult("json", parse_json(body), len(body), body, validated=True)
            except ValidationError as exc:
                if not any(e["type"] == "json_invalid" for e in exc.errors(include_input=False)):
                    raise
                # Not JSON: the strict reader below says why.
        try:
            fmt, value = decode(body, obj.content_type)
            if isinstance(value, Manifest):
                value = self._manifest_values(ref, value)
        except InputValidationError as exc:
            exc.add_context(bucket=bucket, key=key)
            raise
        # A document orjson accepted is plain JSON (no NaN, no Infinity): its own text serves.
        return ReadResult(fmt, value, len(body), body if fmt == "json" else None)

    def _manifest_values(
        self, ref: OutputRef, manifest: Manifest, parts: Sequence[ManifestPart] | None = None
    ) -> list[Any]:
        """Read a manifest's parts (all, or ``parts``) in order, checking sizes and the count."""
        manifest.check_parts_under(ref.prefix)
        bucket = ref.bucket
        records: list[Any] = []
        for part in manifest.parts if parts is None else parts:
            obj = self.store.get(bucket, part.key)
            if obj is None:
                raise InputValidationError(
                    "the manifest names a part that does not exist", bucket=bucket, key=part.key
                )
            if len(obj.body) != part.bytes:
                raise InputValidationError(
                    f"a manifest part has {len(obj.body)} bytes, the manifest says {part.bytes}",
                    bucket=bucket,
                    key=part.key,
                )
            try:
                records.extend(iter_jsonl(obj.body.split(b"\n")))
            except InputValidationError as exc:
                exc.add_context(bucket=bucket, key=part.key)
                raise
        if parts is None and len(records) != manifest.records:
            raise InputValidationError(
                f"the manifest says {manifest.records} records but its parts hold {len(records)}"
            )
        return records

    def read_manifest_parts(self, ref: OutputRef, manifest: Manifest) -> list[Any]:
        """The records of ``manifest`` (the output at ``ref``), sizes and count checked."""
        return self._manifest_values(ref, manifest)

    def open(self, ref: OutputRef, *, missing: str | None = None) -> tuple[Format, Any]:
        """Read and decode ``ref``'s object without expanding a manifest (checked, not read).

        Returns ``(format, value)``: a document, a list of records, or a :class:`Manifest`
        whose parts lie under the stage's prefix.
        """
        obj = self.store.get(ref.bucket, ref.key)
        if obj is None:
            raise InputNotFoundError(
                missing or f"the stage {ref.stage!r} has no output", bucket=ref.bucket, key=ref.key
            )
        try:
            fmt, value = decode(obj.body, obj.content_type)
            if isinstance(value, Manifest):
                value.check_parts_under(ref.prefix)
        except InputValidationError as exc:
            exc.add_context(bucket=ref.bucket, key=ref.key)
            raise
        return fmt, value

    # -- describing -------------------------------------------------------------------------

    def describe(self, ref: OutputRef) -> OutputDescription | None:
        """Format, Content-Type, size, metadata and (for a manifest) its parts; None: missing.

        Reads no records: the object's head, and its body only when it may be a manifest (a
        small object that is not labelled as a document or JSON Lines).

        Raises:
            InputValidationError: A manifest is damaged.
        """
        info = self.store.head(ref.bucket, ref.key)
        if info is None:
            return None
        fmt = format_of_content_type(info.content_type)
        manifest: Manifest | None = None
        records: int | None = None
        raw = info.metadata.get("ceap-records")
        if raw is not None and raw.isdigit():
            records = int(raw)
        if fmt is None or fmt == "manifest":
            head = b""
            if info.size <= _MANIFEST_READ_LIMIT:
                head = self.store.get_range(ref.bucket, ref.key, 0, None) or b""
            else:
                head = self.store.get_range(ref.bucket, ref.key, 0, 4096) or b""
            if info.size <= _MANIFEST_READ_LIMIT and (
                fmt == "manifest" or MANIFEST_VERSION.encode() in head
            ):
                try:
                    found, value = decode(head, info.content_type)
                except InputValidationError as exc:
                    if fmt == "manifest":
                        exc.add_context(bucket=ref.bucket, key=ref.key)
                        raise
                    found, value = "jsonl", None
                if isinstance(value, Manifest):
                    value.check_parts_under(ref.prefix)
                    manifest, records = value, value.records
                fmt = found
            else:
                fmt = _sniff(head)
        return OutputDescription(
            ref,
            fmt,
            info.content_type,
            info.size,
            dict(info.metadata),
            info.last_modified,
            manifest,
            records,
        )

    # -- slices -----------------------------------------------------------------------------

    def read_slice(self, ref: OutputRef, part: Slice) -> list[Any]:
        """The records of one slice of an output (not validated against a model).

        Raises:
            InputNotFoundError: The output does not exist.
            InputValidationError: The slice does not fit the output's format, or the data is bad.
        """
        if isinstance(part, ByteRange):
            return self._byte_range(ref, ref.key, part.start, part.stop)
        description = self.describe(ref)
        if description is None:
            raise InputNotFoundError(
                f"the stage {ref.stage!r} has no output", bucket=ref.bucket, key=ref.key
            )
        if isinstance(part, PartBytes):
            manifest = description.manifest
            if manifest is None or not 0 <= part.part < len(manifest.parts):
                raise InputValidationError(
                    f"a byte range of part {part.part} needs a manifest with that part",
                    bucket=ref.bucket,
                    key=ref.key,
                )
            return self._byte_range(ref, manifest.parts[part.part].key, part.start, part.stop)
        if isinstance(part, PartRange):
            if description.manifest is None:
                raise InputValidationError(
                    "a part range needs a manifest", bucket=ref.bucket, key=ref.key
                )
            return self._manifest_values(
                ref, description.manifest, description.manifest.parts[part.start : part.stop]
            )
        result = self.read(ref)
        if result.format != "json" or not isinstance(result.value, list):
            raise InputValidationError(
                "a record range needs a JSON array document", bucket=ref.bucket, key=ref.key
            )
        return list(result.value[part.start : part.stop])

    def _byte_range(self, ref: OutputRef, key: str, start: int, stop: int) -> list[Any]:
        """The lines of the JSON Lines object ``key`` whose first byte lies in ``[start, stop)``."""
        bucket = ref.bucket
        begin = max(start - 1, 0)
        data = self.store.get_range(bucket, key, begin, stop)
        if data is None:
            if key != ref.key:
                raise InputValidationError(
                    "the manifest names a part that does not exist", bucket=bucket, key=key
                )
            raise InputNotFoundError(
                f"the stage {ref.stage!r} has no output", bucket=bucket, key=key
            )
        if start > 0:
            cut = data.find(b"\n")  # the line in progress at start belongs to the range before
            data = b"" if cut < 0 else data[cut + 1 :]
        chunks = [data]
        if data and not data.endswith(b"\n") and stop > start:
            # The last line starts in the range and runs past its end: read on to its newline.
            position = stop
            while True:
                more = self.store.get_range(bucket, key, position, position + (1 << 16)) or b""
                if not more:
                    break
                cut = more.find(b"\n")
                if cut >= 0:
                    chunks.append(more[: cut + 1])
                    break
                chunks.append(more)
                position += len(more)
        body = b"".join(chunks)
        try:
            return list(iter_jsonl(body.split(b"\n")))
        except InputValidationError as exc:
            exc.add_context(bucket=bucket, key=key)
            raise

    # -- reading record by record -----------------------------------------------------------

    def records(
        self,
        ref: OutputRef,
        *,
        validate: Validate,
        label: str,
        stats: InvocationStats | None = None,
        missing: str | None = None,
        chunk_size: int = READ_CHUNK_BYTES,
    ) -> Iterator[Any]:
        """Open an output and return its records, validated lazily with ``validate``.

        The object is opened (and a manifest read and checked) now; records are read, decoded
        and validated as the returned iterator is consumed, JSON Lines ``chunk_size`` bytes at
        a time (a reader that stops early, like ``ceap-stage show --head``, reads little).

        Raises:
            InputNotFoundError: The object does not exist.
            InputValidationError: The object is not in one of the three formats, a manifest
                points outside the stage's prefix, or a document is not a list (now); a line,
                part or record is bad (while iterating).
        """
        store, bucket, key = self.store, ref.bucket, ref.key
        opened = store.open_object(bucket, key)
        if opened is None:
            raise InputNotFoundError(
                missing or f"the stage {ref.stage!r} has no output", bucket=bucket, key=key
            )
        if stats is not None:
            stats.input_bytes = opened.size or 0
        try:
            fmt, value = open_stream(opened.stream, opened.content_type, chunk_size=chunk_size)
            if stats is not None:
                stats.input_format = fmt
            if fmt == "jsonl":
                records = _validated(
                    ((key, number, record) for number, record in value),
                    "JSON Lines line",
                    validate,
                    label,
                    bucket=bucket,
                    close=opened.close,
                )
                # A generator that never started runs no finally: release the stream (and its
                # connection) when the iterator goes away, even if the stage never iterated it.
                weakref.finalize(records, opened.close)
                return records
            opened.close()
            if isinstance(value, Manifest):
                value.check_parts_under(ref.prefix)
                return _validated(
                    self._manifest_records(bucket, value, chunk_size),
                    "line",
                    validate,
                    label,
                    bucket=bucket,
                )
            if not isinstance(value, list):
                raise InputValidationError(
                    f"the input is a single JSON value but the input model {label} takes a "
                    "stream of records"
                )
            return _validated(
                ((key, index, record) for index, record in enumerate(value)),
                "record",
                validate,
                label,
                bucket=bucket,
            )
        except InputValidationError as exc:
            opened.close()
            exc.add_context(bucket=bucket, key=key)
            raise
        except BaseException:
            opened.close()
            raise

    def _manifest_records(
        self, bucket: str, manifest: Manifest, chunk_size: int = READ_CHUNK_BYTES
    ) -> Iterator[tuple[str | None, int, Any]]:
        """The records of a manifest's parts in order, each part streamed and its size checked."""
        count = 0
        for part in manifest.parts:
            opened = self.store.open_object(bucket, part.key)
            if opened is None:
                raise InputValidationError(
                    "the manifest names a part that does not exist", bucket=bucket, key=part.key
                )
            with opened:
                if opened.size is not None and opened.size != part.bytes:
                    raise InputValidationError(
                        f"a manifest part has {opened.size} bytes, the manifest says {part.bytes}",
                        bucket=bucket,
                        key=part.key,
                    )
                counting = _CountingReader(opened.stream)
                try:
                    for number, record in iter_jsonl_numbered(
                        iter_lines(counting, chunk_size=chunk_size)  # type: ignore[arg-type]
                    ):
                        count += 1
                        yield part.key, number, record
                except InputValidationError as exc:
                    exc.add_context(bucket=bucket, key=part.key)
                    raise
                if counting.bytes != part.bytes:
                    raise InputValidationError(
                        f"a manifest part has {counting.bytes} bytes, the manifest says "
                        f"{part.bytes}",
                        bucket=bucket,
                        key=part.key,
                    )
        if count != manifest.records:
            raise InputValidationError(
                f"the manifest says {manifest.records} records but its parts hold {count}"
            )

    def measure(self, ref: OutputRef) -> tuple[int | None, int | None]:
        """Records and bytes of an output (parts included), read back; Nones when unknown."""
        description = self.describe(ref)
        if description is None:
            return None, None
        if description.manifest is not None:
            return description.manifest.records, description.total_bytes
        try:
            result = self.read(ref)
        except CeapStageError:
            return None, description.size
        value = result.value
        return (len(value) if isinstance(value, list) else 1), description.size

    # -- writing ---------------------------------------------------------------------------

    def write_bytes(
        self,
        ref: OutputRef,
        body: bytes,
        fmt: Format,
        *,
        metadata: Mapping[str, str],
        write_once: bool = False,
    ) -> PutResult:
        """Write an encoded document or JSON Lines object at ``ref.key`` (atomic)."""
        return put_output(
            self.store,
            ref.bucket,
            ref.key,
            body,
            content_type=CONTENT_TYPES[fmt],
            metadata=metadata,
            write_once=write_once,
        )

    def write_rejected(self, ref: OutputRef, entries: Sequence[Mapping[str, Any]]) -> PutResult:
        """Write the records a batch stage left out as ``rejected.jsonl`` (contract section 8).

        Each entry names a record (``messageId``, ``index``, ``error``), never its payload.
        Written even when empty, so that a stage run under ``on_invalid_record="reject"`` is
        told apart from one that rejects nothing because it cannot.
        """
        return put_output(
            self.store,
            ref.bucket,
            ref.rejected_key,
            encode_jsonl(entries),
            content_type=CONTENT_TYPES["jsonl"],
            metadata={"records": str(len(entries))},
            write_once=False,
        )

    def rejected(self, ref: OutputRef) -> list[dict[str, Any]] | None:
        """The entries of ``ref``'s ``rejected.jsonl``; None when the stage wrote none."""
        stored = self.store.get(ref.bucket, ref.rejected_key)
        if stored is None:
            return None
        return [orjson.loads(line) for line in stored.body.splitlines() if line.strip()]

    def write_document(
        self,
        ref: OutputRef,
        value: Any,
        *,
        records: int,
        schema: str | None = None,
        write_once: bool = False,
    ) -> PutResult:
        """Write a JSON-ready value as one JSON document, with the output metadata."""
        return self.write_bytes(
            ref,
            orjson.dumps(value),
            "json",
            metadata=output_metadata(ref, records, schema=schema),
            write_once=write_once,
        )

    def write_jsonl(
        self,
        ref: OutputRef,
        records: Iterable[Any],
        *,
        schema: str | None = None,
        part_bytes: int = DEFAULT_PART_BYTES,
        write_once: bool = False,
    ) -> tuple[PutResult, str, int]:
        """Write JSON-ready records as JSON Lines: one object, or parts + manifest when large."""
        return write_record_stream(
            self.store,
            ref,
            (dumps_line(r) for r in records),
            as_document=False,
            part_bytes=part_bytes,
            metadata=lambda n: output_metadata(ref, n, schema=schema),
            write_once=write_once,
        )

    def part_writer(
        self, ref: OutputRef, *, writer: str | None = None, part_bytes: int = DEFAULT_PART_BYTES
    ) -> PartWriter:
        """A writer of parts under ``ref``'s ``parts/{writer}/`` (see :class:`PartWriter`)."""
        return PartWriter(self.store, ref, part_bytes=part_bytes, writer=writer)

    def commit(
        self,
        ref: OutputRef,
        parts: Sequence[ManifestPart],
        records: int,
        *,
        metadata: Mapping[str, str],
        write_once: bool = False,
    ) -> tuple[Manifest, PutResult]:
        """Commit parts written elsewhere (Spark) with the one protocol :func:`commit_manifest`."""
        return commit_manifest(
            self.store, ref, parts, records, metadata=metadata, write_once=write_once
        )


def _sniff(head: bytes) -> Format:
    """A large unlabelled object's format from its first bytes: a document or JSON Lines."""
    try:
        orjson.loads(head)
    except orjson.JSONDecodeError:
        first = head.lstrip(_WHITESPACE)[:1]
        if first == b"[":
            return "json"
        return "jsonl" if b"\n" in head.strip() else "json"
    return "json"


# -- writing ------------------------------------------------------------------------------------


def put_output(
    store: Store,
    bucket: str,
    key: str,
    body: bytes,
    *,
    content_type: str,
    metadata: Mapping[str, str],
    write_once: bool,
) -> PutResult:
    """Write an output object; with ``write_once``, an identical existing object counts as done.

    Raises:
        OutputConflictError: ``write_once`` is on and a different object exists at ``key``.
    """
    try:
        return store.put(
            bucket,
            key,
            body,
            content_type=content_type,
            metadata=metadata,
            if_none_match=write_once,
        )
    except OutputConflictError:
        digest = sha256_hex(body)
        existing = store.get(bucket, key)
        if existing is None or sha256_hex(existing.body) != digest:
            raise OutputConflictError(
                "write_once is on and a different output already exists for this stage",
                bucket=bucket,
                key=key,
            ) from None
        return PutResult(len(body), digest)


def _referenced(store: Store, bucket: str, key: str) -> set[str]:
    """The part keys the manifest now at ``key`` references (empty: none, or not a manifest)."""
    opened = store.open_object(bucket, key)
    if opened is None:
        return set()
    with opened:
        fmt = format_of_content_type(opened.content_type)
        if fmt in ("json", "jsonl") or (opened.size or 0) > _MANIFEST_READ_LIMIT:
            return set()
        body = opened.stream.read(_MANIFEST_READ_LIMIT + 1)
    try:
        _, value = decode(body, opened.content_type)
    except InputValidationError:
        return set()
    return {p.key for p in value.parts} if isinstance(value, Manifest) else set()


def _delete_unreferenced(store: Store, ref: OutputRef, keep: set[str]) -> None:
    """Delete what lies under ``ref``'s parts prefix and is not in ``keep``."""
    bucket, prefix = ref.bucket, ref.parts_prefix
    if isinstance(store, LocalStore):
        # One pass over the directory: also removes what a store listing skips (Spark's hidden
        # .part-*.crc checksum files) and the emptied writer directories.
        import shutil  # Deferred for import time: only a commit of parts needs it.

        root = store.path(bucket, prefix.rstrip("/"))
        if not root.is_dir():
            return
        kept_dirs = {k[len(prefix) :].split("/", 1)[0] for k in keep if k.startswith(prefix)}
        for child in root.iterdir():
            if child.name in kept_dirs:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            elif not child.name.startswith("."):
                store.delete(bucket, [f"{prefix}{child.name}"])
    stale = [k for k in store.list_keys(bucket, prefix) if k not in keep]
    if stale:
        store.delete(bucket, stale)


def commit_manifest(
    store: Store,
    ref: OutputRef,
    parts: Sequence[ManifestPart],
    records: int,
    *,
    metadata: Mapping[str, str],
    write_once: bool = False,
) -> tuple[Manifest, PutResult]:
    """The one commit protocol: write the manifest at ``ref.key``, then delete stale parts.

    The manifest is the commit marker. After it is written, every part under the stage's
    ``parts/`` that the manifest now at ``output.json`` does not reference is deleted (earlier
    attempts, retries with other data, crashed writers), best effort: a failed clean-up leaves
    the output committed. Shard outputs (``shards/``) are never touched.

    Raises:
        OutputConflictError: ``write_once`` is on and a different output exists.
        StorageError: The store refused the manifest.
    """
    manifest = Manifest(records=records, parts=tuple(parts))
    put = put_output(
        store,
        ref.bucket,
        ref.key,
        manifest.to_bytes(),
        content_type=MANIFEST,
        metadata=metadata,
        write_once=write_once,
    )
    with contextlib.suppress(CeapStageError, OSError):  # the output is committed; stale parts wait
        current = _referenced(store, ref.bucket, ref.key)
        keep = current | {p.key for p in manifest.parts}
        _delete_unreferenced(store, ref, keep)
    return manifest, put


class PartWriter:
    """Writes JSON Lines parts under one writer's prefix, then the manifest that commits them.

    Parts go to ``executions/{id}/{stage}/parts/{writer}/part-{n:05d}-{sha16}.jsonl``. Without
    ``writer`` the writer's id is the hash of the first part, so the same records give the same
    keys and the same manifest (a Lambda retry is idempotent); a Glue job passes its attempt id.

    Args:
        store: Where to write.
        bucket: The workflow bucket (or an :class:`OutputRef` as the only argument after store).
        execution_id: The execution.
        stage: The stage whose output this is.
        part_bytes: Cut a part once it holds at least this many bytes.
        writer: This writer's id (default: derived from the content).

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> writer = PartWriter(store, "bucket", "run-1", "Score", part_bytes=8)
        >>> for line in (b'{"a":1}\\n', b'{"a":2}\\n', b'{"a":3}\\n'):
        ...     writer.add(line)
        >>> put = writer.commit(3, metadata={}, write_once=False)
        >>> len(writer.parts), writer.parts[0].key.startswith("executions/run-1/Score/parts/")
        (3, True)
    """

    def __init__(
        self,
        store: Store,
        bucket: str | OutputRef,
        execution_id: str | None = None,
        stage: str | None = None,
        *,
        part_bytes: int,
        writer: str | None = None,
    ) -> None:
        if isinstance(bucket, OutputRef):
            ref = bucket
        else:
            if execution_id is None or stage is None:
                raise TypeError("PartWriter needs an OutputRef or bucket, execution_id and stage")
            ref = OutputRef(bucket, execution_id, stage)
        self.store = store
        self.ref = ref
        self.bucket = ref.bucket
        self.prefix = ref.parts_prefix
        self.output_key = ref.key
        self.part_bytes = part_bytes
        self.writer = writer
        self.parts: list[ManifestPart] = []
        #: Keys written by this writer (deleted again if the write fails).
        self.written: list[str] = []
        self._buffer: list[bytes] = []
        self._buffered = 0

    def add(self, line: bytes) -> None:
        """Append one encoded record (ending with a newline); writes a part when one is full."""
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= self.part_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as the next part (nothing when the buffer is empty)."""
        if not self._buffer:
            return
        body = b"".join(self._buffer)
        self._buffer = []
        self._buffered = 0
        digest = sha256_hex(body)[:16]
        if self.writer is None:
            self.writer = digest
        key = f"{self.ref.writer_prefix(self.writer)}part-{len(self.parts):05d}-{digest}.jsonl"
        self.store.put(self.bucket, key, body, content_type=JSONL)
        self.written.append(key)
        self.parts.append(ManifestPart(key, len(body)))

    def commit(self, records: int, *, metadata: Mapping[str, str], write_once: bool) -> PutResult:
        """Write the last part and the manifest (the commit marker), then delete stale parts.

        Raises:
            OutputConflictError: ``write_once`` is on and a different output exists (the parts
                this writer wrote are deleted again).
        """
        self.flush()
        try:
            _, put = commit_manifest(
                self.store,
                self.ref,
                self.parts,
                records,
                metadata=metadata,
                write_once=write_once,
            )
        except BaseException:
            self.abort()
            raise
        return put

    def abort(self) -> None:
        """Delete the parts this writer wrote, except those the current ``output.json`` names."""
        if not self.written:
            return
        written, self.written = self.written, []
        with contextlib.suppress(CeapStageError):
            referenced = _referenced(self.store, self.bucket, self.output_key)
            self.store.delete(self.bucket, [k for k in written if k not in referenced])


def encode_records(
    records: Iterable[Any], adapter: TypeAdapter[Any], label: str
) -> Iterator[bytes]:
    """Validate and encode records one by one as JSON Lines (each line ends with a newline).

    Fields are written by alias, as they are read.

    Raises:
        OutputValidationError: A record fails the item model (its position is named).
    """
    validate = adapter.validate_python
    dump = adapter.dump_json
    for index, record in enumerate(records):
        try:
            line = dump(validate(record), by_alias=True)
        except ValidationError as exc:
            raise OutputValidationError(
                f"output record {index} fails the output model {label}: "
                f"{describe_validation_error(exc)}"
            ) from None
        except PydanticSerializationError:
            raise OutputValidationError(
                f"output record {index} cannot be serialised as {label}"
            ) from None
        yield line + b"\n"


def write_record_stream(
    store: Store,
    ref: OutputRef,
    lines: Iterable[bytes],
    *,
    as_document: bool,
    part_bytes: int,
    metadata: Callable[[int], Mapping[str, str]],
    write_once: bool,
    max_document_bytes: int | None = None,
) -> tuple[PutResult, str, int]:
    """Write encoded records: one object while they fit in one part, else parts + manifest.

    Args:
        lines: JSON Lines records, each ending with a newline (see :func:`encode_records`).
        as_document: Write a small output as one JSON array instead of JSON Lines.
        part_bytes: The most buffered before switching to parts; the size of each part.
        metadata: The output's metadata for a given record count.
        max_document_bytes: Never write parts: one JSON document of at most this many bytes.

    Returns:
        The write's result, the format written (``json``, ``jsonl`` or ``manifest``) and the
        record count.

    Raises:
        OutputValidationError: A record is invalid, or the output exceeds ``max_document_bytes``.
    """
    buffered: list[bytes] = []
    size = 0
    count = 0
    writer: PartWriter | None = None
    key = ref.key
    try:
        for line in lines:
            count += 1
            if writer is not None:
                writer.add(line)
                continue
            buffered.append(line)
            size += len(line)
            if max_document_bytes is not None:
                if size > max_document_bytes:
                    raise _too_large(ref, max_document_bytes)
            elif size > part_bytes and ref.shard is None:
                writer = PartWriter(store, ref, part_bytes=part_bytes)
                for pending in buffered:
                    writer.add(pending)
                buffered = []
        if writer is not None:
            put = writer.commit(count, metadata=metadata(count), write_once=write_once)
            return put, "manifest", count
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if as_document and ref.shard is None:
        body = b"[" + b",".join(line[:-1] for line in buffered) + b"]"
        fmt, content_type = "json", JSON
    else:
        body = b"".join(buffered)
        fmt, content_type = "jsonl", JSONL
    put = put_output(
        store,
        ref.bucket,
        key,
        body,
        content_type=content_type,
        metadata=metadata(count),
        write_once=write_once,
    )
    return put, fmt, count


def _too_large(ref: OutputRef, limit: int) -> OutputValidationError:
    return OutputValidationError(
        f"the output is larger than {limit} bytes and this stage writes one JSON document "
        "(outputFormat json allows no manifest)",
        bucket=ref.bucket,
        key=ref.key,
    )


def dumps_line(value: Any) -> bytes:
    """One JSON-ready value as a JSON Lines line.

    >>> dumps_line({"a": 1})
    b'{"a":1}\\n'
    """
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
