"""Streaming stages and large outputs: records read lazily, outputs written as parts + manifest.

Reading. A stage whose input model is ``Iterable[X]`` or ``Iterator[X]`` receives a lazy iterator:
JSON Lines (and each part of a manifest) is read from :meth:`Store.open_object` a chunk at a time,
decoded line by line and validated record by record with ``X``'s adapter, so memory stays bounded
by the read chunk and one record, however large the input. Problems are
:class:`InputValidationError` naming the line (or record) and the object, never its content. The
object is opened, and a manifest checked, before the stage's function runs; a bad record surfaces
while the function iterates.

Writing. An ``Iterable[X]``/``Iterator[X]`` output is validated and encoded record by record. While
it fits in one part (``part_bytes``) it is buffered and written as one ``output.json``; beyond that
it becomes JSON Lines parts under ``executions/{id}/{stage}/parts/`` plus a manifest. A list output
whose encoding exceeds ``max_single_object_bytes`` is written the same way. Parts go first; the
manifest (``output.json``) is written last and is the commit marker. Part keys carry a hash of the
part's content (``part-00000-{sha256[:16]}.jsonl``), so a re-run with the same data writes the same
keys and the same manifest byte for byte (``write_once`` sees it as done), and a re-run with other
data never overwrites the parts a committed manifest points at. After the manifest is written, parts
under the prefix that it does not name are deleted; when a write fails, the parts it wrote are
deleted (best effort) and no ``output.json`` is written.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO, Final

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from ._context import output_key, parts_prefix
from ._errors import (
    CeapStageError,
    InputNotFoundError,
    InputValidationError,
    OutputConflictError,
    OutputValidationError,
)
from ._formats import (
    JSONL,
    MANIFEST,
    Manifest,
    ManifestPart,
    decode,
    format_of_content_type,
    iter_jsonl_numbered,
    iter_lines,
    open_stream,
)
from ._models import describe_validation_error
from ._observability import InvocationStats
from ._store import PutResult, Store, sha256_hex

__all__ = [
    "DEFAULT_MAX_SINGLE_OBJECT_BYTES",
    "DEFAULT_PART_BYTES",
    "PartWriter",
    "dumps_line",
    "encode_records",
    "initial_records",
    "put_output",
    "stream_input",
    "write_record_stream",
]

#: A list output whose encoding is larger than this is written as JSON Lines parts + manifest.
DEFAULT_MAX_SINGLE_OBJECT_BYTES: Final = 64 * 1024 * 1024
#: The size of each part of a partitioned output, and the most a streamed output buffers.
DEFAULT_PART_BYTES: Final = 8 * 1024 * 1024
# A manifest is small; an output.json larger than this is not one (no need to read it).
_MANIFEST_READ_LIMIT: Final = 1 << 20

Validate = Callable[[Any], Any]


# -- reading ------------------------------------------------------------------------------------


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


def stream_input(
    store: Store,
    bucket: str,
    key: str,
    *,
    execution_id: str,
    previous_stage: str,
    validate: Validate,
    label: str,
    stats: InvocationStats,
) -> Iterator[Any]:
    """Open the previous stage's output and return its records, validated lazily.

    The object is opened (and a manifest read and checked) now; records are read, decoded and
    validated as the returned iterator is consumed.

    Raises:
        InputNotFoundError: The object does not exist.
        InputValidationError: The object is not in one of the three formats, a manifest points
            outside the stage's parts prefix, or a document is not a list (now); a line, part or
            record is bad (while iterating).
    """
    opened = store.open_object(bucket, key)
    if opened is None:
        raise InputNotFoundError(
            f"the previous stage {previous_stage!r} has no output", bucket=bucket, key=key
        )
    stats.input_bytes = opened.size or 0
    try:
        fmt, value = open_stream(opened.stream, opened.content_type)
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
            value.check_parts_under(parts_prefix(execution_id, previous_stage))
            return _validated(
                _manifest_records(store, bucket, value), "line", validate, label, bucket=bucket
            )
        if not isinstance(value, list):
            raise InputValidationError(
                f"the input is a single JSON value but the input model {label} takes a stream "
                "of records"
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
    store: Store, bucket: str, manifest: Manifest
) -> Iterator[tuple[str | None, int, Any]]:
    """The records of a manifest's parts in order, each part streamed and its size checked."""
    count = 0
    for part in manifest.parts:
        opened = store.open_object(bucket, part.key)
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
                for number, record in iter_jsonl_numbered(iter_lines(counting)):  # type: ignore[arg-type]
                    count += 1
                    yield part.key, number, record
            except InputValidationError as exc:
                exc.add_context(bucket=bucket, key=part.key)
                raise
            if counting.bytes != part.bytes:
                raise InputValidationError(
                    f"a manifest part has {counting.bytes} bytes, the manifest says {part.bytes}",
                    bucket=bucket,
                    key=part.key,
                )
    if count != manifest.records:
        raise InputValidationError(
            f"the manifest says {manifest.records} records but its parts hold {count}"
        )


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
    """Write ``output.json``; with ``write_once``, an identical existing object counts as done.

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


class PartWriter:
    """Writes JSON Lines parts under a stage's parts prefix, then the manifest that commits them.

    Args:
        store: Where to write.
        bucket: The workflow bucket.
        execution_id: The execution.
        stage: The stage whose output this is.
        part_bytes: Cut a part once it holds at least this many bytes.

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> writer = PartWriter(store, "bucket", "run-1", "Score", part_bytes=16)
        >>> for line in (b'{"a":1}\\n', b'{"a":2}\\n', b'{"a":3}\\n'):  # 8 bytes each
        ...     writer.add(line)
        >>> put = writer.commit(3, metadata={}, write_once=False)
        >>> [part.bytes for part in writer.parts]  # a part is cut once it holds 16 bytes
        [16, 8]
        >>> sorted({key.rsplit("/", 1)[0] for key in writer.written})
        ['executions/run-1/Score/parts']
        >>> store.get("bucket", "executions/run-1/Score/output.json").content_type
        'application/vnd.ceap.manifest+json'
    """

    def __init__(
        self, store: Store, bucket: str, execution_id: str, stage: str, *, part_bytes: int
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = parts_prefix(execution_id, stage)
        self.output_key = output_key(execution_id, stage)
        self.part_bytes = part_bytes
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
        key = f"{self.prefix}part-{len(self.parts):05d}-{sha256_hex(body)[:16]}.jsonl"
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
        manifest = Manifest(records=records, parts=tuple(self.parts))
        try:
            put = put_output(
                self.store,
                self.bucket,
                self.output_key,
                manifest.to_bytes(),
                content_type=MANIFEST,
                metadata=metadata,
                write_once=write_once,
            )
        except BaseException:
            self.abort()
            raise
        keep = {part.key for part in self.parts}
        with contextlib.suppress(CeapStageError):  # the output is committed; stale parts wait
            stale = [k for k in self.store.list_keys(self.bucket, self.prefix) if k not in keep]
            self.store.delete(self.bucket, stale)
        return put

    def abort(self) -> None:
        """Delete the parts this writer wrote, except those the current ``output.json`` names."""
        if not self.written:
            return
        written, self.written = self.written, []
        with contextlib.suppress(CeapStageError):
            referenced = _committed_parts(self.store, self.bucket, self.output_key)
            self.store.delete(self.bucket, [k for k in written if k not in referenced])


def _committed_parts(store: Store, bucket: str, key: str) -> set[str]:
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


def encode_records(
    records: Iterable[Any], adapter: TypeAdapter[Any], label: str
) -> Iterator[bytes]:
    """Validate and encode records one by one as JSON Lines (each line ends with a newline).

    Raises:
        OutputValidationError: A record fails the item model (its position is named).
    """
    validate = adapter.validate_python
    dump = adapter.dump_json
    for index, record in enumerate(records):
        try:
            line = dump(validate(record))
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
    bucket: str,
    execution_id: str,
    stage: str,
    lines: Iterable[bytes],
    *,
    as_document: bool,
    part_bytes: int,
    metadata: Callable[[int], Mapping[str, str]],
    write_once: bool,
) -> tuple[PutResult, str, int]:
    """Write encoded records: one ``output.json`` while they fit in one part, else parts.

    Args:
        lines: JSON Lines records, each ending with a newline (see :func:`encode_records`).
        as_document: Write a small output as one JSON array instead of JSON Lines.
        part_bytes: The most buffered before switching to parts; the size of each part.
        metadata: The ``output.json`` metadata for a given record count.

    Returns:
        The write's result, the format written (``json``, ``jsonl`` or ``manifest``) and the
        record count.
    """
    buffered: list[bytes] = []
    size = 0
    count = 0
    writer: PartWriter | None = None
    key = output_key(execution_id, stage)
    try:
        for line in lines:
            count += 1
            if writer is not None:
                writer.add(line)
                continue
            buffered.append(line)
            size += len(line)
            if size > part_bytes:
                writer = PartWriter(store, bucket, execution_id, stage, part_bytes=part_bytes)
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
    if as_document:
        body = b"[" + b",".join(line[:-1] for line in buffered) + b"]"
        fmt, content_type = "json", "application/json"
    else:
        body = b"".join(buffered)
        fmt, content_type = "jsonl", JSONL
    put = put_output(
        store,
        bucket,
        key,
        body,
        content_type=content_type,
        metadata=metadata(count),
        write_once=write_once,
    )
    return put, fmt, count


def dumps_line(value: Any) -> bytes:
    """One JSON-ready value as a JSON Lines line.

    >>> dumps_line({"a": 1})
    b'{"a":1}\\n'
    """
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
