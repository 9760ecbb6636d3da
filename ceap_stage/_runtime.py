"""One invocation of a stage: resolve the context, read and validate, call, validate and write.

:class:`StageRuntime` is shared by ``@stage`` and ``WorkflowLambdaHandler``. Its configuration is a
:class:`~ceap_stage._settings.Settings` resolved by :func:`~ceap_stage._settings.resolve_settings`
together with the handler's own store (and so its own S3 client) and observer:

- inside Lambda (``Settings.in_lambda``: the environment is fixed for the life of the process)
  when the handler is created, at import, so that the init phase (and a SnapStart snapshot) pays
  for the S3 client and the observer, not the first request (with the cyclic garbage collector
  paused meanwhile, and what init made then frozen, see :func:`_init_phase`);
- outside Lambda at the first invocation, and again at a later invocation whenever the resolved
  settings differ (a test that sets ``CEAP_STORE`` after another test invoked the same
  module-level handler gets a store of its own);
- never, when the runtime was given its settings (:meth:`StageRuntime.configured`).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from ._context import (
    ExecutionContext,
    StageEvent,
    is_queue_batch,
    parse_event,
    validate_bucket,
)
from ._errors import (
    CeapStageError,
    ContextResolutionError,
    InputValidationError,
    OutputValidationError,
)
from ._formats import Format, Manifest, encode_jsonl
from ._io import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    DEFAULT_MAX_SINGLE_OBJECT_BYTES,
    DEFAULT_PART_BYTES,
    OutputRef,
    PartWriter,
    StageIO,
    dumps_line,
    encode_records,
    initial_records,
    meta_value,
    output_metadata,
    upstream_refs,
    write_record_stream,
)
from ._models import (
    FINGERPRINT_KEY,
    UNSET,
    OnInvalidRecord,
    StageSpec,
    adapter_for,
    describe_validation_error,
    json_validator,
    model_name,
    schema_fingerprint,
    written_by,
)
from ._observability import InvocationStats, Observer, default_observer, elapsed_ms
from ._settings import Settings, resolve_settings, settings_token
from ._snapstart import SNAP_START
from ._store import PutResult, Store, store_for

if TYPE_CHECKING:
    from ._batch import QueueBatch

__all__ = ["OutputFormat", "StageRuntime", "read_manifest_parts"]

OutputFormat = Literal["json", "jsonl"]


def _written_by(io: StageIO, bucket: str, key: str) -> str:
    """Which model wrote an input that fails its model (one HEAD, on the failure path only)."""
    try:
        info = io.store.head(bucket, key)
    except Exception:  # never hide the validation error behind a storage one
        return ""
    return written_by(info.metadata) if info is not None else ""


ObserverFactory = Callable[[Settings], Observer]


class _Resolved(NamedTuple):
    settings: Settings
    store: Store
    io: StageIO
    bucket: str | None
    observer: Observer


def read_manifest_parts(
    store: Store, bucket: str, execution_id: str, stage: str, manifest: Manifest
) -> list[Any]:
    """Read a manifest's parts, in manifest order, checking each part's size and the count.

    Kept for importers; it is :meth:`StageIO.read_manifest_parts`.

    Raises:
        InputValidationError: A part is outside the stage's prefix, missing, of another
            size than the manifest says, not JSON Lines, or the record count differs.
    """
    return StageIO(store).read_manifest_parts(OutputRef(bucket, execution_id, stage), manifest)


@contextlib.contextmanager
def _init_phase(freeze: bool) -> Iterator[None]:
    """Inside Lambda's init phase: create the client and observer without the cyclic collector.

    botocore's service model, endpoint rules and Powertools' objects are tens of thousands of
    long-lived, acyclic objects; collecting while they are made scans them again and again (about
    a sixth of the init phase) and frees nothing. With ``freeze`` the collector is paused for the
    block and then every object made so far (the imports, the models, the client) is moved to
    the permanent generation (``gc.freeze``), where no later collection scans it; the collector
    is enabled again only if it was on. Without ``freeze`` (``CEAP_GC_FREEZE=false``) nothing
    changes.
    """
    if not freeze:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class StageRuntime:
    """Runs one stage function under the contract. Built once per handler.

    Args:
        spec: The resolved function and models.
        name: The stage name the handler is pinned to (None: whatever the event says).
        store: The store to use (default: the settings' ``store_url``, else S3).
        bucket: The bucket to pin to (default: the settings' ``workflow_bucket``).
        output_format: ``"json"`` (one document) or ``"jsonl"`` (JSON Lines).
        write_once: Refuse to overwrite a different existing output (S3 ``If-None-Match``).
        observer: Logs, traces and metrics, or a factory called with the resolved settings
            (default: :func:`~ceap_stage._observability.default_observer`).
        max_single_object_bytes: A list output whose encoding is larger is written as JSON
            Lines parts + manifest (default 64 MiB).
        part_bytes: The size of each part, and the most a streamed output buffers (default
            8 MiB).
        settings: Fixed settings (default: resolved from the environment, see the module).
        single_document: Write nothing but one JSON document, whatever the event says (an
            event with ``"outputFormat": "json"`` asks the same of one invocation, for a next
            stage that reads nothing else): never JSON Lines or parts, whatever
            ``max_single_object_bytes`` says; an output larger than ``max_document_bytes`` is
            an :class:`OutputValidationError`, and nothing is written.
        max_document_bytes: The most one JSON document written so may hold (default 256 MiB).
        on_invalid_record: For a queue batch (contract section 8): ``"fail"`` (a record that
            fails the model fails the batch) or ``"reject"`` (it is left out and listed in
            ``rejected.jsonl``; the pointer carries ``rejected`` and ``batchItemFailures``).
    """

    def __init__(
        self,
        spec: StageSpec,
        *,
        name: str | None = None,
        store: Store | None = None,
        bucket: str | None = None,
        output_format: OutputFormat = "json",
        write_once: bool = False,
        observer: Observer | ObserverFactory | None = None,
        max_single_object_bytes: int = DEFAULT_MAX_SINGLE_OBJECT_BYTES,
        part_bytes: int = DEFAULT_PART_BYTES,
        settings: Settings | None = None,
        single_document: bool = False,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        on_invalid_record: OnInvalidRecord = "fail",
    ) -> None:
        self.spec = spec
        self.on_invalid_record: OnInvalidRecord = on_invalid_record
        self.single_document = single_document
        self.max_document_bytes = max_document_bytes
        self._schema_label = meta_value(model_name(spec.output_model))
        self._schema_fingerprint: str | None = None
        self.name = name
        self.output_format: Format = output_format
        self.write_once = write_once
        self.max_single_object_bytes = max_single_object_bytes
        self.part_bytes = part_bytes
        # Streamed models (Iterable[X] / Iterator[X]) are validated record by record with X's.
        # Input is JSON text: validate so that every format and store gives what validating
        # the text gives (json_validator).
        self._validate = json_validator(spec.input_adapter)
        self._validate_item = (
            None if spec.input_item is UNSET else json_validator(adapter_for(spec.input_item))
        )
        self._out_item = None if spec.output_item is UNSET else adapter_for(spec.output_item)
        self._store = store
        self._bucket = bucket
        self._observer = observer
        self._settings = settings
        self._resolved: _Resolved | None = None
        self._token: tuple[object, ...] | None = None
        self._lock = threading.Lock()
        self._resolve_at_init()

    # -- configuration ----------------------------------------------------------------------

    def _resolve_at_init(self) -> None:
        """Inside Lambda, resolve everything now (the import, in the init phase)."""
        try:
            settings = self._settings or resolve_settings()
        except CeapStageError:
            return  # raised again, and reported, at the first invocation
        if not settings.in_lambda:
            return
        try:
            with _init_phase(settings.gc_freeze):
                resolved = self._build(settings)
                # Create the S3 client now too: its cost belongs to the init phase.
                getattr(resolved.store, "client", None)
        except Exception:
            return  # the first invocation resolves again and reports what fails
        self._settings = settings
        self._resolved = resolved
        if settings.initialization_type == SNAP_START:
            from . import _snapstart

            _snapstart.register(self)  # prime before the snapshot, renew after restore

    def _build(self, settings: Settings) -> _Resolved:
        bucket = self._bucket or settings.workflow_bucket
        if bucket is not None:
            validate_bucket(bucket, "the configured workflow bucket")
        store = self._store or store_for(settings)
        observer = self._observer
        if observer is None:
            observer = default_observer(settings)
        elif not isinstance(observer, Observer):
            observer = observer(settings)
        return _Resolved(settings, store, StageIO(store), bucket, observer)

    def _resolve(self) -> _Resolved:
        """The configuration of this invocation (see the module for when it is resolved)."""
        resolved = self._resolved
        if self._settings is not None:  # fixed: given, or resolved inside Lambda
            if resolved is not None:
                return resolved
            settings = self._settings
        else:
            token = settings_token()
            if resolved is not None and token == self._token:
                return resolved  # nothing resolve_settings reads has changed
            settings = resolve_settings()
            self._token = token
            if resolved is not None and resolved.settings == settings:
                return resolved
        with self._lock:
            resolved = self._resolved
            if resolved is None or resolved.settings != settings:
                resolved = self._resolved = self._build(settings)
            return resolved

    @property
    def settings(self) -> Settings:
        """The settings this handler runs with (resolved now if not yet)."""
        return self._resolve().settings

    def output_metadata(self, ref: OutputRef, records: int) -> dict[str, str]:
        """The metadata this stage's outputs carry (schema label and fingerprint included);
        a fanned-out stage's shard outputs and manifest carry the same."""
        return self._metadata(ref, records)

    @property
    def store(self) -> Store:
        """The store this handler uses (resolved now if not yet)."""
        return self._resolve().store

    def configured(
        self, *, store: Store | None = None, settings: Settings | None = None
    ) -> StageRuntime:
        """A copy of this runtime that uses ``store`` and/or ``settings``; this one is unchanged.

        How the local runner, the CLI and ``ceap_stage.testing.run_stage`` configure a handler
        they run in-process: nothing is read from or written to the environment for what
        is given. Given ``settings``, the copy never resolves again; given only ``store``, the rest
        is resolved as for this runtime.

        Example:
            >>> import tempfile
            >>> from ceap_stage import LocalStore, stage
            >>> from ceap_stage._settings import Settings
            >>> @stage
            ... def handler(data: dict) -> dict:
            ...     return data
            >>> quiet = Settings(store_url="file:///tmp/ceap", metrics_enabled=False)
            >>> handler.runtime.configured(settings=quiet).store
            LocalStore('/tmp/ceap')
        """
        clone = copy.copy(self)
        if store is not None:
            clone._store = store
        if settings is not None:
            clone._settings = settings
        clone._resolved = None
        clone._token = None
        clone._lock = threading.Lock()
        return clone

    def using_store(self, store: Store) -> StageRuntime:
        """A copy of this runtime that uses ``store`` (same as ``configured(store=store)``)."""
        return self.configured(store=store)

    # -- one invocation ---------------------------------------------------------------------

    def invoke(self, event: object, lambda_context: Any = None) -> dict[str, Any]:
        """Run the stage for one event; return the result pointer (docs/contract.md section 4)."""
        started = time.perf_counter()
        resolved = self._resolve()
        observer = resolved.observer
        stats = InvocationStats()
        ctx: ExecutionContext | None = None
        try:
            ev = parse_event(event, configured_bucket=resolved.bucket, configured_stage=self.name)
            ctx = observer.bind(
                ExecutionContext(
                    execution_id=ev.execution_id,
                    current_stage=ev.current_stage,
                    previous_stage=ev.previous_stage,
                    workflow_bucket=ev.workflow_bucket,
                    workflow_name=ev.workflow_name,
                    retry_count=ev.retry_count,
                    redrive_count=ev.redrive_count,
                    lambda_context=lambda_context,
                    logger=observer.logger,
                ),
                lambda_context,
            )
            observer.started(ctx)
            if isinstance(event, Mapping) and "ceapPhase" in event:
                # One phase of a fanned-out stage (docs/contract.md section 7).
                from ._fanout import run_phase

                with observer.span("fan_out", ctx):
                    pointer = run_phase(self, resolved.io, event, ev=ev, ctx=ctx, stats=stats)
            else:
                with observer.span("read_input", ctx):
                    t = time.perf_counter()
                    data, batch = self._read_input(resolved.io, ev, ctx, stats)
                    stats.read_ms = elapsed_ms(t)
                with observer.span("process", ctx):
                    t = time.perf_counter()
                    result = (
                        self.spec.fn(data, ctx) if self.spec.pass_context else self.spec.fn(data)
                    )
                    stats.process_ms = elapsed_ms(t)
                with observer.span("write_output", ctx):
                    t = time.perf_counter()
                    # A next stage that reads one JSON document only (a Kotlin CEAP stage) asks
                    # for it through the event (docs/contract.md section 9).
                    single = self.single_document or ev.output_format == "json"
                    if batch is not None and batch.reject:
                        self._write_rejected(resolved.io, ctx, batch, stats)
                    pointer = self._write_output(resolved.io, ctx, result, stats, single)
                    if batch is not None and batch.reject:
                        pointer["rejected"] = len(batch.rejected)
                        pointer["batchItemFailures"] = batch.batch_item_failures
                    stats.write_ms = elapsed_ms(t)
        except CeapStageError as exc:
            if ctx is not None:
                exc.add_context(execution_id=ctx.execution_id, stage=ctx.current_stage)
            stats.total_ms = elapsed_ms(started)
            observer.failed(ctx, exc, stats)
            raise
        except BaseException as exc:
            stats.total_ms = elapsed_ms(started)
            observer.failed(ctx, exc, stats)
            raise
        stats.total_ms = elapsed_ms(started)
        observer.finished(ctx, stats)
        return pointer

    def _validate_input(
        self, value: Any, ctx: ExecutionContext, key: str | None, *, text: bytes | None = None
    ) -> Any:
        """Validate the decoded input (``text``, when given, is its JSON; see json_validator)."""
        try:
            return self._validate(value, text)
        except ValidationError as exc:
            raise InputValidationError(
                f"the input fails the model {model_name(self.spec.input_model)}: "
                f"{describe_validation_error(exc)}",
                bucket=ctx.workflow_bucket if key else None,
                key=key,
            ) from None

    def _read_input(
        self, io: StageIO, ev: StageEvent, ctx: ExecutionContext, stats: InvocationStats
    ) -> tuple[Any, QueueBatch | None]:
        """The validated input, and the queue batch it came from (if it did)."""
        upstream = upstream_refs(ctx.workflow_bucket, ev.execution_id, ev.previous_stage)
        if not upstream:
            stats.input_format = "initialData"
            batch = self._queue_batch(ev)
            if batch is not None:
                stats.input_format = "sqsBatch"
                return self._batch_value(batch), batch
            if self._validate_item is not None:
                return initial_records(
                    self._initial_value(ev),
                    self._validate_item,
                    model_name(self.spec.input_model),
                ), None
            return self._validate_input(self._initial_value(ev), ctx, None), None
        return self._read_upstream(io, ev, ctx, stats, upstream), None

    def _read_upstream(
        self,
        io: StageIO,
        ev: StageEvent,
        ctx: ExecutionContext,
        stats: InvocationStats,
        upstream: tuple[OutputRef, ...],
    ) -> Any:
        (ref,) = upstream  # one upstream on the wire today (previousStage)
        stats.input_key = ref.key
        missing = f"the previous stage {ref.stage!r} has no output"
        if self._validate_item is not None:
            return io.records(
                ref,
                validate=self._validate_item,
                label=model_name(self.spec.input_model),
                stats=stats,
                missing=missing,
            )
        try:
            result = io.read(ref, parse_json=self.spec.input_adapter.validate_json, missing=missing)
            stats.input_bytes = result.size
            stats.input_format = result.format
            if result.validated:
                return result.value
            return self._validate_input(result.value, ctx, ref.key, text=result.text)
        except ValidationError as exc:
            raise InputValidationError(
                f"the input fails the model {model_name(self.spec.input_model)}: "
                f"{describe_validation_error(exc)}{_written_by(io, ref.bucket, ref.key)}",
                bucket=ref.bucket,
                key=ref.key,
            ) from None
        except InputValidationError as exc:
            if exc.detail.startswith("the input fails the model"):
                exc.detail += _written_by(io, ref.bucket, ref.key)
            raise

    def _initial_value(self, ev: StageEvent) -> Any:
        spec = self.spec
        if not ev.has_initial_data:
            try:
                spec.input_adapter.validate_python(None)
            except ValidationError:
                raise ContextResolutionError(
                    "the event of a first stage (no previousStage) has no initialData"
                ) from None
            return None
        data = ev.initial_data
        if isinstance(data, str) and spec.input_model is not str:
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise InputValidationError(
                    f"initialData is a string but not JSON ({exc.msg})"
                ) from None
        return data

    def _queue_batch(self, ev: StageEvent) -> QueueBatch | None:
        """The SQS records of ``initialData``, decoded and validated one by one (section 8)."""
        if not ev.has_initial_data:
            return None
        data = ev.initial_data
        if isinstance(data, str) and self.spec.input_model is not str:
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError:
                return None  # _initial_value reports it
        if not is_queue_batch(data):
            return None
        # The queue batch code is imported by the first batch: most stages never read one.
        from ._batch import decode_batch, item_model

        batch = decode_batch(
            data,
            self.spec,
            # Built at the first batch (and cached): a stage that reads no queue never pays.
            adapter_for(item_model(self.spec)).validate_python,
            reject=self.on_invalid_record == "reject",
        )
        spec = self.spec
        if not spec.accepts_records and len(batch.values) + len(batch.rejected) != 1:
            raise InputValidationError(
                f"initialData is a batch of {len(data)} SQS records but the input model "
                f"{model_name(spec.input_model)} takes one record; use a list model"
            )
        return batch

    def _batch_value(self, batch: QueueBatch) -> Any:
        """What the stage function receives: the valid records as its model wants them."""
        spec = self.spec
        if spec.input_item is not UNSET:
            return iter(batch.values)
        if spec.input_is_list:
            return spec.input_adapter.validate_python(batch.values)
        if not batch.values:  # the one record was rejected: nothing to call the stage with
            (rejected,) = batch.rejected
            raise InputValidationError(
                f"SQS record 0 (messageId {rejected.message_id}) {rejected.error}; the input "
                f"model {model_name(spec.input_model)} takes one record, so nothing is left"
            )
        return batch.values[0]

    def _write_rejected(
        self, io: StageIO, ctx: ExecutionContext, batch: QueueBatch, stats: InvocationStats
    ) -> None:
        ref = OutputRef(ctx.workflow_bucket, ctx.execution_id, ctx.current_stage)
        io.write_rejected(ref, [r.as_json() for r in batch.rejected])
        stats.extra["rejected"] = len(batch.rejected)

    # -- output -----------------------------------------------------------------------------

    def _write_output(
        self,
        io: StageIO,
        ctx: ExecutionContext,
        result: Any,
        stats: InvocationStats,
        single_document: bool,
    ) -> dict[str, Any]:
        spec = self.spec
        adapter = spec.output_adapter
        ref = OutputRef(ctx.workflow_bucket, ctx.execution_id, ctx.current_stage)
        if self._out_item is not None:
            return self._write_stream(io, ctx, ref, result, stats, single_document=single_document)
        output_format: Format = "json" if single_document else self.output_format
        try:
            value = adapter.validate_python(result)
            if output_format == "jsonl":
                body = encode_jsonl(adapter.dump_python(value, mode="json", by_alias=True))
            else:
                body = adapter.dump_json(value, by_alias=True)
        except ValidationError as exc:
            raise OutputValidationError(
                f"the stage returned a value that fails the output model "
                f"{model_name(spec.output_model)}: {describe_validation_error(exc)}",
                bucket=ref.bucket,
                key=ref.key,
            ) from None
        except PydanticSerializationError:
            raise OutputValidationError(
                f"the stage returned a value that cannot be serialised as "
                f"{model_name(spec.output_model)}",
                bucket=ref.bucket,
                key=ref.key,
            ) from None
        records = len(value) if isinstance(value, (list, tuple, set, frozenset)) else 1
        metadata = self._metadata(ref, records)
        if single_document:
            if len(body) > self.max_document_bytes:
                raise OutputValidationError(
                    f"the output is {len(body)} bytes, larger than the {self.max_document_bytes} "
                    "bytes one JSON document may hold, and this stage writes one JSON document "
                    "(outputFormat json: the next stage reads no JSON Lines or manifest)",
                    bucket=ref.bucket,
                    key=ref.key,
                )
        elif len(body) > self.max_single_object_bytes and isinstance(value, (list, tuple)):
            # Too large for one object: JSON Lines parts, then the manifest.
            writer = PartWriter(io.store, ref, part_bytes=self.part_bytes)
            try:
                for record in adapter.dump_python(value, mode="json", by_alias=True):
                    writer.add(dumps_line(record))
            except BaseException:
                writer.abort()
                raise
            put = writer.commit(records, metadata=metadata, write_once=self.write_once)
            return self._pointer(ctx, stats, put, "manifest", records)
        put = io.write_bytes(
            ref, body, output_format, metadata=metadata, write_once=self.write_once
        )
        return self._pointer(ctx, stats, put, output_format, records)

    def _fingerprint(self) -> str:
        # Computed at the first write (a JSON Schema is not free), then kept.
        if self._schema_fingerprint is None:
            self._schema_fingerprint = schema_fingerprint(self.spec.output_adapter)
        return self._schema_fingerprint

    def _metadata(self, ref: OutputRef, records: int) -> dict[str, str]:
        return output_metadata(
            ref,
            records,
            schema=self._schema_label,
            extra={FINGERPRINT_KEY: self._fingerprint()},
        )

    def _write_stream(
        self,
        io: StageIO,
        ctx: ExecutionContext,
        ref: OutputRef,
        result: Any,
        stats: InvocationStats,
        *,
        single_document: bool,
    ) -> dict[str, Any]:
        assert self._out_item is not None
        label = model_name(self.spec.output_model)
        if isinstance(result, (str, bytes, bytearray, Mapping)) or not isinstance(result, Iterable):
            raise OutputValidationError(
                f"the stage returned a {type(result).__name__}, not an iterable of records, "
                f"for the output model {label}",
                bucket=ref.bucket,
                key=ref.key,
            )
        try:
            put, fmt, records = write_record_stream(
                io.store,
                ref,
                encode_records(result, self._out_item, label),
                as_document=single_document or self.output_format == "json",
                part_bytes=self.part_bytes,
                metadata=lambda count: self._metadata(ref, count),
                write_once=self.write_once,
                max_document_bytes=self.max_document_bytes if single_document else None,
            )
        except OutputValidationError as exc:
            exc.add_context(bucket=ref.bucket, key=ref.key)
            raise
        return self._pointer(ctx, stats, put, fmt, records)

    def _pointer(
        self,
        ctx: ExecutionContext,
        stats: InvocationStats,
        put: PutResult,
        fmt: str,
        records: int,
    ) -> dict[str, Any]:
        bucket, key = ctx.workflow_bucket, ctx.output_key
        stats.records = records
        stats.output_key = key
        stats.output_bytes = put.bytes
        stats.output_format = fmt
        return {
            "status": "SUCCESS",
            "stage": ctx.current_stage,
            "recordsProcessed": records,
            "executionId": ctx.execution_id,
            "output": {
                "bucket": bucket,
                "key": key,
                "bytes": put.bytes,
                "sha256": put.sha256,
                "format": fmt,
            },
        }
