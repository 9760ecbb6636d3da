"""Reading the previous stage's output into a DataFrame and writing one as parts + manifest.

PySpark is imported inside the functions, never at module import, so ``import ceap_stage.glue``
works in a Python-shell job without Spark.

Records are never quoted. Spark's ``FAILFAST`` mode fails a task on the first record that does
not fit the schema, and its exception (logged by the executor, the task scheduler and the writer,
at ERROR and WARN, in every executor's log) quotes the record's values. So a schema read is made
in ``PERMISSIVE`` mode with a column for the text of a record that does not fit, which nothing
shows (:class:`_SchemaRead`): the check counts such records in a pass where nothing fails inside
Spark, and only then one more pass names the fields at fault. Once the check passed, the files
are read again plainly (every record fits); unchecked (``validate=False``), the returned
DataFrame fails a task on such a record with a message of our own (ids and keys only).

Order is kept end to end. Reading, each part (and a JSON document or JSON Lines file) is one
file read on its own, whose splits Spark keeps in file order, and the parts are concatenated in
manifest order with ``union``. Writing, Spark writes one ``part-NNNNN-...`` file per partition
(more with ``max_records_per_file``, numbered ``-cNNN``); the manifest lists them by partition
number, then file number, which is the DataFrame's order.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ceap_stage._errors import InputValidationError
from ceap_stage._formats import JSONL, Manifest, ManifestPart
from ceap_stage._store import LocalStore, Store

from ._args import GlueArgs
from ._metrics import tagged_write
from ._output import GlueOutput, attempt_prefix, commit_manifest, default_store, new_attempt_id
from ._shell import fetch_input

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

__all__ = ["read_input", "write_output"]

# part-00003-<uuid>-c001.json (the -cNNN suffix numbers the files of one task).
_DATA_PART = re.compile(r"part-(\d+)(?:-.*?)?(?:-c(\d+))?\.json")
_MALFORMED = ("Malformed records are detected", "MALFORMED_RECORD_IN_PARSING", "BadRecordException")
_CORRUPT = "_corrupt_record"
# A schema read's column for the text of a record that does not fit (never a user's field).
_UNREADABLE = "__ceap_unreadable_record"
# The field at fault of an unreadable record ("" when none is identified), and its key.
_FAULT = "__ceap_field_at_fault"
_FAULT_KEY = "__ceap_key_at_fault"
# What a task that meets an unreadable record fails with: the read's token and the key, no value.
_GUARD = "ceap-stage: a record does not match the schema"
_GUARD_FACTS = re.compile(re.escape(_GUARD) + r" \(read ([0-9a-f]+)\) in \[(.*?)\]")
# The latest schema reads by token, so a failure met later can name the fields at fault.
_READS: OrderedDict[str, _SchemaRead] = OrderedDict()
_KEPT_READS = 64


def local_session(master: str, app_name: str, conf: Mapping[str, str]) -> SparkSession:
    """A quiet local SparkSession (``getOrCreate``): no UI, no progress bar, ERROR logs.

    The local runner's Glue steps and the ``spark`` pytest fixture get theirs here, each with
    its own ``conf`` (shuffle partitions, time zone).
    """
    from pyspark.sql import SparkSession

    builder: Any = SparkSession.builder.master(master).appName(app_name)
    builder = builder.config("spark.ui.enabled", "false")
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    for name, value in conf.items():
        builder = builder.config(name, value)
    session: SparkSession = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _schema_mismatch_error(
    args: GlueArgs,
    *,
    records: int | None = None,
    fields: Sequence[str] = (),
    key: str | None = None,
    schema_fields: Sequence[str] = (),
) -> InputValidationError:
    """The error for input that does not fit the schema: counts, field names and keys only."""
    who = "a record" if records is None else f"{records} record{'' if records == 1 else 's'}"
    if fields:
        has = "has" if records in (None, 1) else "have"
        named = ", ".join(fields)
        detail = (
            f"{who} {has} a value that cannot be read as its field's type "
            f"(field{'s' if len(fields) > 1 else ''} {named})"
        )
    else:
        detail = f"{who} cannot be read as a JSON object of the schema's fields"
    facts = args.error_facts()
    if key is not None:
        facts["key"] = key
    return InputValidationError(
        f"the input does not match the schema: {detail}{_first_stage_hint(args, schema_fields)}",
        **facts,
    )


def _first_stage_hint(args: GlueArgs, schema_fields: Sequence[str]) -> str:
    """For a first stage whose schema does not read ``body``: the likely cause of a mismatch."""
    if not args.is_first_stage or "body" in schema_fields:
        return ""
    return (
        "; a first stage reads the execution input as staged, the queue's records "
        "(messageId, body, ...), whose messages are JSON text in `body` (see docs/glue.md)"
    )


def _mismatch_error(exc: BaseException, args: GlueArgs) -> InputValidationError | None:
    """The contract error for a Spark failure caused by input that does not fit the schema.

    Recognises the helper's own guard: the error names the part's key and, when the read is
    still known, the records and fields at fault (found by one more pass over the input, only
    now that the job has failed). For a read made elsewhere in ``FAILFAST`` mode, Spark's
    malformed-record errors are recognised by their class only. None for any other failure.
    """
    text = str(exc)
    found = _GUARD_FACTS.search(text)
    if found is not None:
        token, key = found.groups()
        read = _READS.get(token)
        if read is None:
            return _schema_mismatch_error(args, key=key)
        return read.error(args)
    if any(marker in text for marker in _MALFORMED):
        return _schema_mismatch_error(args)
    return None


def _check_records(value: Any, args: GlueArgs, what: str) -> None:
    records = value if isinstance(value, list) else [value]
    if not all(isinstance(r, dict) for r in records):
        raise InputValidationError(
            f"the {what} input holds values that are not JSON objects; DataFrame rows need objects",
            **args.error_facts(),
        )


def read_input(
    spark: SparkSession,
    args: GlueArgs,
    *,
    schema: StructType | str | None = None,
    store: Store | None = None,
    validate: bool = True,
) -> DataFrame:
    """Read the previous stage's output into a DataFrame, whatever its format.

    Accepts a JSON document (an array of objects, or one object: one row), JSON Lines, or a
    manifest whose parts are read in manifest order (a part outside the previous stage's parts
    prefix, missing, or of another size than the manifest says is refused). Rows keep the
    input's order.

    Args:
        spark: The session to read with.
        args: The job's arguments (:func:`resolve_args`).
        schema: A ``StructType`` or DDL string. Without one Spark infers the schema. With one,
            values are read in ``FAILFAST`` mode: a value that cannot be read as its field's type
            is an :class:`~ceap_stage.InputValidationError`, and so is a null (or missing) value
            in a ``NOT NULL`` field. Fields the schema does not name are dropped.
        store: Where the input lives (default: ``CEAP_STORE``, else S3).
        validate: With a schema, check every record now (one extra pass over the input) so a
            mismatch fails here; with ``False`` it fails when the DataFrame is first computed.

    Returns:
        The input as a DataFrame (an empty one for empty input).

    Raises:
        InputNotFoundError: The previous stage wrote no ``output.json``.
        InputValidationError: The input is not valid JSON / JSON Lines / manifest (parts
            included), holds values that are not objects, or does not match ``schema``.

    Example:
        >>> df = read_input(spark, args, schema="customer_id STRING, events LONG")  # doctest: +SKIP
    """
    from pyspark.sql.types import StructType

    store = store or default_store()
    bucket, key = args.input_bucket, args.input_key
    fmt, value, facts = fetch_input(args, store)

    struct: StructType | None
    if schema is None or isinstance(schema, StructType):
        struct = schema
    else:  # a DDL string; an empty DataFrame parses it without running a job
        struct = spark.createDataFrame([], schema).schema

    # (Spark path, key) of each file to read, in order.
    files: list[tuple[str, str]]
    multi_line = False
    if isinstance(value, Manifest):
        paths = _check_parts(spark, store, bucket, value, facts)
        files = [(path, part.key) for path, part in zip(paths, value.parts, strict=True)]
    else:
        _check_records(value, args, fmt)
        files = [] if fmt == "json" and value == [] else [(store.uri(bucket, key), key)]
        multi_line = fmt == "json"
    if not files:
        return spark.createDataFrame([], struct or StructType([]))

    if struct is None:  # Spark infers the schema (of all the parts at once)
        if not isinstance(value, Manifest):
            return spark.read.json(files[0][0], multiLine=multi_line)
        paths = [path for path, _ in files]
        inferred = spark.read.json(paths).schema
        df = _concat([spark.read.schema(inferred).json(path) for path in paths])
        if _CORRUPT in df.columns:
            raise InputValidationError("a manifest part is not valid JSON Lines", **facts)
        return df
    if not struct.fields:  # nothing to check a record against
        return _concat([spark.read.schema(struct).json(p, multiLine=multi_line) for p, _ in files])

    read = _SchemaRead(spark, struct, files, multi_line)
    if not validate:
        return read.guarded()
    read.validate(args)
    # Every record fits (the check read these same files, and stage outputs are never changed
    # in place): a plain read spares each later computation the guard and its text column.
    checked = spark.read.schema(struct).option("mode", "FAILFAST")
    return _concat([checked.json(path, multiLine=multi_line) for path, _ in files])


def _concat(frames: Sequence[DataFrame]) -> DataFrame:
    return functools.reduce(lambda a, b: a.union(b), frames)


def _quoted(name: str) -> str:
    return "`{}`".format(name.replace("`", "``"))


class _SchemaRead:
    """The files of one read with a schema, read so that no record's value reaches Spark's logs.

    Each file is read in ``PERMISSIVE`` mode with a column for the text of a record that does not
    fit (filled by Spark, never shown). :meth:`validate` counts such records in one pass where
    nothing fails inside Spark; :meth:`guarded` is the DataFrame handed out, whose tasks fail
    on such a record with the guard's message (this read's token and the file's key). Only when
    a record does not fit does :meth:`error` make one more pass to name the fields at fault.
    """

    def __init__(
        self,
        spark: SparkSession,
        struct: StructType,
        files: Sequence[tuple[str, str]],
        multi_line: bool,
    ) -> None:
        from pyspark.sql.types import StringType, StructField, StructType

        self.struct = struct
        self.fields = [field.name for field in struct.fields]
        with_text = StructType([*struct.fields, StructField(_UNREADABLE, StringType(), True)])
        reader = (
            spark.read.schema(with_text)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", _UNREADABLE)
        )
        self.reads = [(reader.json(path, multiLine=multi_line), key) for path, key in files]
        self.spark = spark
        self.files = files
        self.multi_line = multi_line
        self.token = uuid.uuid4().hex
        _READS[self.token] = self
        while len(_READS) > _KEPT_READS:
            _READS.popitem(last=False)

    def _columns(self) -> list[Any]:
        from pyspark.sql import functions as F

        return [F.col(_quoted(name)) for name in self.fields]

    def guarded(self) -> DataFrame:
        """The schema's fields; a task that computes a record that does not fit fails with the
        guard's message, which holds no value."""
        from pyspark.sql import functions as F

        # Spark refuses a JSON scan of the unreadable column alone (a count(), say), so the
        # guard also asks about the first field, keeping it in every scan.
        first = self._columns()[0]
        frames = []
        for raw, key in self.reads:
            message = F.lit(f"{_GUARD} (read {self.token}) in [{key}]")
            guard = (
                F.when(F.col(_UNREADABLE).isNotNull(), F.raise_error(message))
                .when(first.isNull(), F.lit(True))
                .otherwise(F.lit(True))
            )
            frames.append(raw.where(guard).select(*self._columns()))
        return _concat(frames)

    def validate(self, args: GlueArgs) -> None:
        """One pass over every field of every record, counting the records that do not fit and
        the nulls in ``NOT NULL`` fields. Nothing fails inside Spark, so Spark logs nothing."""
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        aggregates = [F.count(F.col(_UNREADABLE)).alias("unreadable")]
        required = [f.name for f in self.struct.fields if not f.nullable]
        if required:
            nulls = [F.col(_quoted(name)).isNull() for name in required]
            missing = functools.reduce(lambda a, b: a | b, nulls)
            aggregates.append(F.count(F.when(missing, 1)).alias("missing"))
        observation = Observation("ceap-validate")
        every = _concat([raw.select(*self._columns(), _UNREADABLE) for raw, _ in self.reads])
        every.observe(observation, *aggregates).write.format("noop").mode("overwrite").save()
        seen = observation.get
        if seen["unreadable"]:
            raise self.error(args)
        lacking = int(seen.get("missing", 0))
        if lacking:
            records = f"{lacking} record{'' if lacking == 1 else 's'}"
            lack = "lacks" if lacking == 1 else "lack"
            raise InputValidationError(
                f"the input does not match the schema: {records} {lack} a value for a "
                f"NOT NULL field ({', '.join(required)})"
                f"{_first_stage_hint(args, self.fields)}",
                **args.error_facts(),
            )

    def error(self, args: GlueArgs) -> InputValidationError:
        """The error for this read's records that do not fit: how many, the fields at fault and
        the first file's key. One pass over the input (a failure path only)."""
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        observation = Observation("ceap-diagnose")
        if self.multi_line:
            frames = [self._document_faults(path, key) for path, key in self.files]
        else:
            frames = [
                raw.select(
                    *self._columns(),
                    _fault(self.struct).alias(_FAULT),
                    F.lit(key).alias(_FAULT_KEY),
                )
                for raw, key in self.reads
            ]
        fault = F.col(_FAULT)
        _concat(frames).observe(
            observation,
            F.count(fault).alias("unreadable"),
            # A JSON text: an array does not come back through py4j as a list.
            F.to_json(F.collect_set(F.when(fault != "", fault))).alias("fields"),
            F.min(F.when(fault.isNotNull(), F.col(_FAULT_KEY))).alias("key"),
        ).write.format("noop").mode("overwrite").save()
        seen = observation.get
        fields = sorted(orjson.loads(seen["fields"]), key=self.fields.index)
        return _schema_mismatch_error(
            args,
            records=int(seen["unreadable"]) or None,
            fields=fields,
            key=seen["key"] or self.files[0][1],
            schema_fields=self.fields,
        )

    def _document_faults(self, path: str, key: str) -> DataFrame:
        """The field at fault of each record of a JSON document that does not fit.

        In multi-line mode one record that does not fit makes Spark give the whole document as
        the unreadable text of every row, so the document is read again as text, split into its
        records' JSON texts (an object is one record), and each is checked on its own; only the
        records with a field at fault are kept.
        """
        from pyspark.sql import functions as F

        text = F.col("value")
        records = F.coalesce(F.from_json(text, "array<string>"), F.array(text))
        split = self.spark.read.text(path, wholetext=True).select(
            F.explode(records).alias(_UNREADABLE)
        )
        blanks = [F.lit(None).cast(f.dataType).alias(f.name) for f in self.struct.fields]
        faults = split.select(
            *blanks, _fault(self.struct).alias(_FAULT), F.lit(key).alias(_FAULT_KEY)
        )
        return faults.where(F.col(_FAULT) != "")


def _fault(struct: StructType) -> Any:
    """The field at fault of a record that does not fit, ``""`` when none is found, null for a
    record that fits.

    Each field is read again from the record's text on its own (``PERMISSIVE``: a value that
    does not fit gives null); the first field present in the text whose value does not read is
    the one at fault.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    text = F.col(_UNREADABLE)
    options = {"mode": "PERMISSIVE"}
    as_text = StructType([StructField(f.name, StringType(), True) for f in struct.fields])
    present = F.from_json(text, as_text, options)
    checks = []
    for field in struct.fields:
        alone = StructType([StructField(field.name, field.dataType, True)])
        unread = F.from_json(text, alone, options)[field.name].isNull()
        checks.append(F.when(present[field.name].isNotNull() & unread, F.lit(field.name)))
    return F.when(text.isNotNull(), F.coalesce(*checks, F.lit("")))


def _list_files(spark: SparkSession, store: Store, bucket: str, directory: str) -> dict[str, int]:
    """The files directly in the ``directory`` key prefix (name to size).

    A :class:`LocalStore` directory is listed with ``os.scandir``; anything else through
    Hadoop's FileSystem, the one Spark reads and writes with (``s3://`` on Glue), whose listing
    gives the sizes. A missing directory has no files.
    """
    if isinstance(store, LocalStore):
        try:
            with os.scandir(store.path(bucket, directory)) as entries:
                return {e.name: e.stat().st_size for e in entries if e.is_file()}
        except (FileNotFoundError, NotADirectoryError):
            return {}
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(store.uri(bucket, directory))
    fs = path.getFileSystem(conf)
    if not fs.exists(path):
        return {}
    return {
        str(status.getPath().getName()): int(status.getLen())
        for status in fs.listStatus(path)
        if status.isFile()
    }


def _data_parts(
    spark: SparkSession, store: Store, bucket: str, directory: str
) -> list[tuple[str, int]]:
    """The data files Spark wrote in ``directory`` as ``(name, bytes)``, in DataFrame order
    (``_SUCCESS`` and checksum files are left out)."""
    found = []
    for name, size in _list_files(spark, store, bucket, directory).items():
        match = _DATA_PART.fullmatch(name)
        if match is not None:
            found.append(((int(match.group(1)), int(match.group(2) or 0), name), size))
    found.sort()
    return [(order[2], size) for order, size in found]


def _check_parts(
    spark: SparkSession, store: Store, bucket: str, manifest: Manifest, facts: dict[str, Any]
) -> list[str]:
    """Each part exists with the size the manifest gives; returns the parts' Spark paths.

    One listing per directory of parts (usually one), not one request per part.
    """
    listings: dict[str, dict[str, int]] = {}
    paths = []
    for part in manifest.parts:
        directory, _, name = part.key.rpartition("/")
        if directory not in listings:
            listings[directory] = _list_files(spark, store, bucket, directory)
        size = listings[directory].get(name)
        if size is None:
            raise InputValidationError(
                "the manifest names a part that does not exist", **{**facts, "key": part.key}
            )
        if size != part.bytes:
            raise InputValidationError(
                f"a manifest part has {size} bytes, the manifest says {part.bytes}",
                **{**facts, "key": part.key},
            )
        paths.append(store.uri(bucket, part.key))
    return paths


def _write_columnless(df: DataFrame, args: GlueArgs, store: Store, attempt: str) -> GlueOutput:
    records = df.count()
    parts = []
    if records:
        key = f"{attempt_prefix(args, attempt)}part-00000.json"
        put = store.put(args.output_bucket, key, b"{}\n" * records, content_type=JSONL)
        parts.append(ManifestPart(key, put.bytes))
    return commit_manifest(store, args, attempt, parts, records)


def write_output(
    df: DataFrame,
    args: GlueArgs,
    *,
    store: Store | None = None,
    order_by: str | Sequence[str] | None = None,
    max_records_per_file: int | None = None,
) -> GlueOutput:
    """Write a DataFrame as JSON Lines parts, then the manifest at ``output.json``.

    Parts go to ``executions/{id}/{stage}/parts/{attempt}/`` (a new attempt id per call), one or
    more per partition, uncompressed, with null fields written as ``null``. The manifest lists
    them in partition order with their sizes and the record count, and is written last: it is the
    commit marker. Then the parts of earlier attempts are deleted, so a rerun never leaves stale
    parts behind a manifest.

    Args:
        df: The stage's output. Its row order (partition by partition) is the output's order.
        args: The job's arguments (:func:`resolve_args`).
        store: Where to write (default: ``CEAP_STORE``, else S3).
        order_by: Sort the output by these columns first (a global ``orderBy``), for a
            deterministic order after shuffles.
        max_records_per_file: Split a partition into files of at most this many records.

    Returns:
        The manifest's location, the record count and the parts.

    Raises:
        InputValidationError: The input read with a schema does not match it.
        StorageError: The store refused the manifest.

    Example:
        >>> out = write_output(df.groupBy("customer_id").count(), args,
        ...                    order_by="customer_id")  # doctest: +SKIP
        >>> out.key  # doctest: +SKIP
        'executions/run-1/Enrich/output.json'
    """
    store = store or default_store()
    attempt = new_attempt_id()
    prefix = attempt_prefix(args, attempt)
    directory = store.uri(args.output_bucket, prefix.rstrip("/"))
    if not df.schema.fields:
        # Spark refuses to write a DataFrame without columns (e.g. read from empty input); its
        # rows, if any, are empty objects.
        return _write_columnless(df, args, store, attempt)
    if order_by is not None:
        df = df.orderBy(*([order_by] if isinstance(order_by, str) else order_by))
    writer = df.write.option("compression", "none").option("ignoreNullFields", "false")
    if max_records_per_file is not None:
        writer = writer.option("maxRecordsPerFile", max_records_per_file)
    spark = df.sparkSession
    mismatch: InputValidationError | None = None
    try:
        with tagged_write(spark) as tag:
            writer.json(directory)
    except Exception as exc:
        mismatch = _mismatch_error(exc, args)
        if mismatch is None:
            raise
    if mismatch is not None:  # raised here: Spark's error is neither chained nor kept as context
        raise mismatch
    # List first: Spark's row count reaches its status store through the listener bus,
    # usually while we list.
    files = _data_parts(spark, store, args.output_bucket, prefix.rstrip("/"))
    parts = [ManifestPart(prefix + name, size) for name, size in files]
    records = tag.rows()
    if records is None:  # Spark did not tell: count the written lines (one per record)
        paths = [store.uri(args.output_bucket, part.key) for part in parts]
        records = spark.read.text(paths).count() if paths else 0
    return commit_manifest(store, args, attempt, parts, records)
