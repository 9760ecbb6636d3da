"""Reading the previous stage's output into a DataFrame and writing one as parts + manifest.

PySpark is imported inside the functions, never at module import, so ``import ceap_stage.glue``
works in a Python-shell job without Spark.

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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

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


def _mismatch(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker in text for marker in _MALFORMED)


def _schema_mismatch_error(args: GlueArgs) -> InputValidationError:
    return InputValidationError(
        "the input does not match the schema: a record has a value that cannot be read as "
        "the schema's type (mode FAILFAST)",
        **args.error_facts(),
    )


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
    reader = spark.read.option("mode", "FAILFAST") if struct is not None else spark.read

    df: DataFrame
    if isinstance(value, Manifest):
        paths = _check_parts(spark, store, bucket, value, facts)
        if not paths:
            return spark.createDataFrame([], struct or StructType([]))
        read_schema = struct if struct is not None else spark.read.json(paths).schema
        frames = [reader.schema(read_schema).json(path) for path in paths]
        df = functools.reduce(lambda a, b: a.union(b), frames)
        if struct is None and _CORRUPT in df.columns:
            raise InputValidationError("a manifest part is not valid JSON Lines", **facts)
    else:
        _check_records(value, args, fmt)
        if fmt == "json" and value == []:
            return spark.createDataFrame([], struct or StructType([]))
        if struct is not None:
            reader = reader.schema(struct)
        df = reader.json(store.uri(bucket, key), multiLine=fmt == "json")

    if struct is not None and validate:
        _validate(df, struct, args)
    return df


def _validate(df: DataFrame, struct: StructType, args: GlueArgs) -> None:
    """One pass over every column (FAILFAST parsing), counting nulls in ``NOT NULL`` fields."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    required = [f.name for f in struct.fields if not f.nullable]
    observation = Observation("ceap-validate") if required else None
    if observation is not None:
        missing = functools.reduce(
            lambda a, b: a | b,
            [F.col("`{}`".format(name.replace("`", "``"))).isNull() for name in required],
        )
        df = df.observe(observation, F.count(F.when(missing, 1)).alias("missing"))
    try:
        df.write.format("noop").mode("overwrite").save()
    except Exception as exc:
        if _mismatch(exc):
            raise _schema_mismatch_error(args) from None
        raise
    lacking = int(observation.get["missing"]) if observation is not None else 0
    if lacking:
        raise InputValidationError(
            f"the input does not match the schema: {lacking} records lack a value for a "
            f"NOT NULL field ({', '.join(required)})",
            **args.error_facts(),
        )


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
    try:
        with tagged_write(spark) as tag:
            writer.json(directory)
    except Exception as exc:
        if _mismatch(exc):
            raise _schema_mismatch_error(args) from None
        raise
    # List first: Spark's row count reaches its status store through the listener bus,
    # usually while we list.
    files = _data_parts(spark, store, args.output_bucket, prefix.rstrip("/"))
    parts = [ManifestPart(prefix + name, size) for name, size in files]
    records = tag.rows()
    if records is None:  # Spark did not tell: count the written lines (one per record)
        paths = [store.uri(args.output_bucket, part.key) for part in parts]
        records = spark.read.text(paths).count() if paths else 0
    return commit_manifest(store, args, attempt, parts, records)
