"""The Spark side: read any format into a DataFrame, write parts + manifest, hand off to Lambda.

Runs on one real local PySpark session (``local[1]``) shared by the module (see conftest).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from pydantic import BaseModel

from ceap_stage import (
    InputNotFoundError,
    InputValidationError,
    LocalStore,
    PutResult,
    Store,
    StoredObject,
)
from ceap_stage._formats import JSON, JSONL, MANIFEST, Manifest, ManifestPart
from ceap_stage.glue import (
    GlueArgs,
    glue_job,
    read_input,
    resolve_args,
    spark_path,
    write_output,
)

from ._lambda import (
    Event,
    ingest_stage,
    lambda_event,
    manifest_of,
    output_of,
    put_jsonl,
    put_output,
    report_stage,
)
from .conftest import BUCKET, RUN, job_argv

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

pytestmark = pytest.mark.spark

SCHEMA = "customer_id STRING, kind STRING, seq LONG"


def events(n: int, customers: int = 5) -> list[dict[str, Any]]:
    kinds = ("view", "click", "purchase")
    return [
        {"customer_id": f"c-{i % customers:02d}", "kind": kinds[i % 3], "seq": i} for i in range(n)
    ]


def glue_args(current: str = "Aggregate", previous: str | None = "Ingest") -> GlueArgs:
    return resolve_args(job_argv(current, previous))


def rows(df: DataFrame) -> list[dict[str, Any]]:
    return [r.asDict(recursive=True) for r in df.collect()]


def stage_keys(store: LocalStore, stage_name: str) -> list[str]:
    return store.list_keys(BUCKET, f"executions/{RUN}/{stage_name}/parts/")


# -- end to end --------------------------------------------------------------------------------


def test_lambda_to_glue_to_lambda_keeps_records_and_order(
    spark: SparkSession, store: LocalStore
) -> None:
    from pyspark.sql import functions as F

    source = events(40)
    ingest_stage(store)(lambda_event("Ingest", None, initialData=source))

    # The Glue stage: read the Lambda's JSON, enrich it, write parts + manifest.
    args = glue_args("Enrich", "Ingest")
    df = read_input(spark, args, schema=SCHEMA, store=store)
    enriched = df.withColumn("score", F.col("seq") * 10).repartition(3)
    out = write_output(enriched, args, store=store, order_by="seq", max_records_per_file=7)

    # The next Lambda stage reads the manifest.
    result = report_stage(store, list[dict[str, Any]])(lambda_event("Report", "Enrich"))
    report = output_of(store, "Report")

    assert report == [{**e, "score": e["seq"] * 10} for e in source]
    assert result["recordsProcessed"] == 40
    assert out.records == 40
    assert len(out.parts) >= 6  # 40 records, at most 7 per file
    manifest = manifest_of(store, "Enrich")
    assert manifest.records == 40
    assert manifest.parts == out.parts
    prefix = f"executions/{RUN}/Enrich/parts/{out.attempt}/"
    for part in manifest.parts:
        assert part.key.startswith(prefix)
        assert part.key.rsplit("/", 1)[1].startswith("part-")
        assert part.key.endswith(".json")
        assert store.path(BUCKET, part.key).stat().st_size == part.bytes
    # Only data parts (no _SUCCESS, no checksum files) are in the manifest.
    assert sorted(p.key for p in manifest.parts) == sorted(
        k for k in stage_keys(store, "Enrich") if not k.endswith("_SUCCESS")
    )


def test_aggregates_reach_the_next_lambda_typed_and_sorted(
    spark: SparkSession, store: LocalStore
) -> None:
    from pyspark.sql import functions as F

    class Aggregate(BaseModel):
        customer_id: str
        events: int
        purchases: int
        last_seq: int

    ingest_stage(store)(lambda_event("Ingest", None, initialData=events(60, customers=7)))
    args = glue_args("Aggregate", "Ingest")
    df = read_input(spark, args, schema=SCHEMA, store=store)
    aggregated = df.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("events"),
        F.sum(F.when(F.col("kind") == "purchase", 1).otherwise(0)).alias("purchases"),
        F.max("seq").alias("last_seq"),
    )
    write_output(aggregated, args, store=store, order_by="customer_id")

    report_stage(store, list[Aggregate])(lambda_event("Report", "Aggregate"))
    report = output_of(store, "Report")

    assert [r["customer_id"] for r in report] == [f"c-{i:02d}" for i in range(7)]
    by_customer = {r["customer_id"]: r for r in report}
    expected_events = {f"c-{c:02d}": len(range(c, 60, 7)) for c in range(7)}
    assert {c: r["events"] for c, r in by_customer.items()} == expected_events
    assert by_customer["c-00"]["last_seq"] == 56
    purchases = sum(1 for e in events(60, customers=7) if e["kind"] == "purchase")
    assert sum(r["purchases"] for r in report) == purchases


def test_partition_order_is_the_output_order(spark: SparkSession, store: LocalStore) -> None:
    df = spark.range(0, 100, numPartitions=4).withColumnRenamed("id", "n")
    args = glue_args("Numbers", "Ingest")

    out = write_output(df, args, store=store, max_records_per_file=10)
    report_stage(store)(lambda_event("Report", "Numbers"))

    assert [r["n"] for r in output_of(store, "Report")] == list(range(100))
    assert len(out.parts) == 12  # 4 partitions of 25 records, files of at most 10


def test_null_fields_are_written_as_null(spark: SparkSession, store: LocalStore) -> None:
    class WithNote(BaseModel):
        id: int
        note: str | None  # required: the field must be present, even as null

    df = spark.createDataFrame([(1, "a"), (2, None)], "id LONG, note STRING")
    write_output(df, glue_args("Notes", "Ingest"), store=store)
    report_stage(store, list[WithNote])(lambda_event("Report", "Notes"))

    assert output_of(store, "Report") == [{"id": 1, "note": "a"}, {"id": 2, "note": None}]


# -- input formats -----------------------------------------------------------------------------


def _write_parts(store: LocalStore, stage_name: str, chunks: list[list[dict[str, Any]]]) -> None:
    parts = []
    for index, chunk in enumerate(chunks):
        key = f"executions/{RUN}/{stage_name}/parts/lambda/part-{index:05d}.jsonl"
        body = b"".join(orjson.dumps(r) + b"\n" for r in chunk)
        store.put(BUCKET, key, body, content_type=JSONL)
        parts.append(ManifestPart(key, len(body)))
    manifest = Manifest(records=sum(len(c) for c in chunks), parts=tuple(parts))
    put_output(store, stage_name, manifest.to_bytes(), MANIFEST)


@pytest.mark.parametrize("schema", [None, SCHEMA])
@pytest.mark.parametrize("fmt", ["json", "jsonl", "jsonl-no-content-type", "manifest"])
def test_each_input_format_reads_in_order(
    spark: SparkSession, store: LocalStore, fmt: str, schema: str | None
) -> None:
    source = events(30)
    if fmt == "json":
        put_output(store, "Ingest", orjson.dumps(source), JSON)
    elif fmt == "jsonl":
        put_jsonl(store, "Ingest", source)
    elif fmt == "jsonl-no-content-type":
        path = store.path(BUCKET, f"executions/{RUN}/Ingest/output.json")
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\n".join(orjson.dumps(r) for r in source) + b"\n")
    else:
        # Sizes chosen so a reader that lets Spark order the files by size would reorder them.
        _write_parts(store, "Ingest", [source[:2], source[2:25], source[25:]])

    df = read_input(spark, glue_args(), schema=schema, store=store)

    assert rows(df.select("customer_id", "kind", "seq")) == source


def test_a_single_json_object_is_one_row(spark: SparkSession, store: LocalStore) -> None:
    put_output(
        store, "Ingest", orjson.dumps({"customer_id": "c-1", "kind": "view", "seq": 7}), JSON
    )

    df = read_input(spark, glue_args(), store=store)

    assert rows(df) == [{"customer_id": "c-1", "kind": "view", "seq": 7}]


def test_the_glue_output_is_a_valid_input_for_another_glue_stage(
    spark: SparkSession, store: LocalStore
) -> None:
    put_jsonl(store, "Ingest", events(12))
    first = read_input(spark, glue_args("Enrich", "Ingest"), store=store)
    write_output(first.repartition(3), glue_args("Enrich", "Ingest"), store=store, order_by="seq")

    again = read_input(spark, glue_args("Aggregate", "Enrich"), schema=SCHEMA, store=store)

    assert rows(again) == events(12)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"[]", JSON), (b"", JSONL), (Manifest(records=0, parts=()).to_bytes(), MANIFEST)],
    ids=["json", "jsonl", "manifest"],
)
@pytest.mark.parametrize("schema", [None, SCHEMA])
def test_empty_input_gives_an_empty_dataframe_and_empty_output(
    spark: SparkSession, store: LocalStore, body: bytes, content_type: str, schema: str | None
) -> None:
    put_output(store, "Ingest", body, content_type)
    args = glue_args()

    df = read_input(spark, args, schema=schema, store=store)
    out = write_output(df, args, store=store)
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert df.count() == 0
    if schema is not None:
        assert df.columns == ["customer_id", "kind", "seq"]
    assert out.records == 0
    assert manifest_of(store, "Aggregate").records == 0
    assert output_of(store, "Report") == []


# -- input errors ------------------------------------------------------------------------------


def test_missing_input_is_input_not_found(spark: SparkSession, store: LocalStore) -> None:
    with pytest.raises(InputNotFoundError) as info:
        read_input(spark, glue_args(), store=store)

    assert info.value.execution_id == RUN
    assert info.value.stage == "Aggregate"
    assert info.value.key == f"executions/{RUN}/Ingest/output.json"


def test_a_type_mismatch_against_the_schema_is_input_validation(
    spark: SparkSession, store: LocalStore
) -> None:
    bad = [*events(3), {"customer_id": "c-9", "kind": "view", "seq": "secret-not-a-number"}]
    put_jsonl(store, "Ingest", bad)

    with pytest.raises(InputValidationError) as info:
        read_input(spark, glue_args(), schema=SCHEMA, store=store)

    message = str(info.value)
    assert "does not match the schema: 1 record has a value" in message
    assert "(field seq)" in message
    assert RUN in message
    assert "Aggregate" in message
    assert f"executions/{RUN}/Ingest/output.json" in message
    assert "secret-not-a-number" not in message
    assert info.value.__cause__ is None


def test_a_null_in_a_not_null_field_is_input_validation(
    spark: SparkSession, store: LocalStore
) -> None:
    put_jsonl(store, "Ingest", [*events(2), {"customer_id": "c-9", "kind": "view"}])

    with pytest.raises(InputValidationError, match="1 record lacks a value for a NOT NULL"):
        read_input(spark, glue_args(), schema=f"{SCHEMA} NOT NULL", store=store)
    # Nullable, the same input reads fine.
    assert read_input(spark, glue_args(), schema=SCHEMA, store=store).count() == 3


def test_an_unvalidated_mismatch_fails_at_write(spark: SparkSession, store: LocalStore) -> None:
    put_jsonl(store, "Ingest", [*events(2), {"customer_id": "c", "kind": "v", "seq": "x"}])
    args = glue_args()

    df = read_input(spark, args, schema=SCHEMA, store=store, validate=False)
    with pytest.raises(InputValidationError, match=r"does not match the schema.*\(field seq\)"):
        write_output(df, args, store=store)

    assert store.get(BUCKET, args.output_key) is None
    # Columns that do not touch the bad value compute, as with Spark's own lazy reads.
    assert rows(df.select("customer_id")) == [{"customer_id": c} for c in ("c-00", "c-01", "c")]


def test_every_unreadable_record_is_counted_with_its_fields(
    spark: SparkSession, store: LocalStore
) -> None:
    good = {"kind": "view", "seq": 1, "weight": 0.5}
    bad = [
        {**good, "weight": "heavy"},
        good,
        {**good, "seq": "one"},
        {**good, "seq": {"n": 2}, "kind": ["view"]},  # an array is read as its JSON text
        good,
    ]
    put_jsonl(store, "Ingest", bad)

    with pytest.raises(InputValidationError) as info:
        read_input(spark, glue_args(), schema="kind STRING, seq LONG, weight DOUBLE", store=store)

    assert "3 records have a value that cannot be read" in str(info.value)
    assert "(fields seq, weight)" in str(info.value)  # in schema order
    assert info.value.key == f"executions/{RUN}/Ingest/output.json"


def test_a_record_that_is_not_an_object_is_named_as_such(
    spark: SparkSession, store: LocalStore
) -> None:
    _write_parts(store, "Ingest", [events(2)])
    part = manifest_of(store, "Ingest").parts[0]
    broken = b'{"customer_id": "c"}\n{broken\n'
    store.path(BUCKET, part.key).write_bytes(broken.ljust(part.bytes - 1) + b"\n")

    with pytest.raises(InputValidationError, match="1 record cannot be read as a JSON object"):
        read_input(spark, glue_args(), schema=SCHEMA, store=store)


def test_a_mismatch_in_a_json_document_is_input_validation(
    spark: SparkSession, store: LocalStore
) -> None:
    bad = [*events(2), {"customer_id": "c-9", "kind": "view", "seq": "secret"}]
    put_output(store, "Ingest", orjson.dumps(bad), JSON)
    args = glue_args()

    with pytest.raises(InputValidationError, match="does not match the schema") as validated:
        read_input(spark, args, schema=SCHEMA, store=store)
    lazy = read_input(spark, args, schema=SCHEMA, store=store, validate=False)
    with pytest.raises(InputValidationError, match="does not match the schema") as written:
        write_output(lazy, args, store=store)

    for info in (validated, written):
        assert info.value.key == f"executions/{RUN}/Ingest/output.json"
        assert "secret" not in str(info.value)
    assert store.get(BUCKET, args.output_key) is None


def _read_and_write(
    spark: SparkSession, store: LocalStore, args: GlueArgs, *, validate: bool
) -> None:
    """Read the input with ``SCHEMA`` (checked at once or not), then write it: a mismatch
    surfaces at the read (``validate=True``) or at the write."""
    df = read_input(spark, args, schema=SCHEMA, store=store, validate=validate)
    write_output(df, args, store=store)


@pytest.mark.parametrize("validate", [True, False])
def test_a_json_document_counts_the_records_that_do_not_fit_and_their_fields(
    spark: SparkSession, store: LocalStore, jvm_log: Callable[[], str], validate: bool
) -> None:
    """In multi-line mode one record that does not fit makes Spark give up on the whole
    document; the error still counts only the records at fault, as for JSON Lines."""
    sentinel = "sentinel-7d2a-do-not-log"
    good = {"customer_id": "c", "kind": "view", "seq": 1}
    records = [good, {**good, "seq": sentinel}, good, {**good, "seq": [sentinel]}, good]
    key = put_output(store, "Ingest", orjson.dumps(records), JSON)
    args = glue_args()

    with pytest.raises(InputValidationError) as info:
        _read_and_write(spark, store, args, validate=validate)

    message = str(info.value)
    assert "2 records have a value that cannot be read as its field's type (field seq)" in message
    assert info.value.key == key
    assert sentinel not in message
    assert sentinel not in jvm_log()
    assert store.get(BUCKET, args.output_key) is None


def test_a_json_document_of_one_record_is_checked_as_one(
    spark: SparkSession, store: LocalStore
) -> None:
    put_output(store, "Ingest", orjson.dumps({"customer_id": "c", "kind": 1, "seq": "x"}), JSON)

    with pytest.raises(InputValidationError, match=r"1 record has a value .*\(field seq\)"):
        read_input(spark, glue_args(), schema=SCHEMA, store=store)


@pytest.mark.parametrize("schema", ["order_id STRING, amount DOUBLE NOT NULL", "amount DOUBLE"])
def test_a_first_stage_mismatch_says_it_reads_the_queue_records(
    spark: SparkSession, store: LocalStore, schema: str
) -> None:
    """A first stage reads the staged execution input: SQS records whose message is in ``body``."""
    record = {"messageId": "m1", "body": orjson.dumps({"order_id": "o1", "amount": 3}).decode()}
    batch = [record, {**record, "messageId": "m2", "amount": "secret"}]
    key = put_output(store, "initial", orjson.dumps(batch), JSON)
    args = glue_args(previous=None)

    with pytest.raises(InputValidationError) as info:
        read_input(spark, args, schema=schema, store=store)

    message = str(info.value)
    assert "the queue's records (messageId, body, ...)" in message
    assert "JSON text in `body`" in message
    assert "secret" not in message
    assert info.value.key == key
    assert store.get(BUCKET, args.output_key) is None


def test_a_first_stage_that_reads_body_gets_no_hint(spark: SparkSession, store: LocalStore) -> None:
    put_output(store, "initial", orjson.dumps([{"messageId": "m1", "body": 3, "n": "x"}]), JSON)

    with pytest.raises(InputValidationError) as info:
        read_input(spark, glue_args(previous=None), schema="body STRING, n INT", store=store)

    assert "(field n)" in str(info.value)
    assert "queue's records" not in str(info.value)


@pytest.mark.parametrize("validate", [True, False])
def test_a_mismatch_in_a_manifest_part_names_the_part(
    spark: SparkSession, store: LocalStore, validate: bool
) -> None:
    bad = {"customer_id": "c-9", "kind": "view", "seq": "secret"}
    _write_parts(store, "Ingest", [events(3), [*events(2), bad], events(1)])
    part = manifest_of(store, "Ingest").parts[1]
    args = glue_args()

    with pytest.raises(InputValidationError) as info:
        _read_and_write(spark, store, args, validate=validate)

    assert info.value.key == part.key
    assert info.value.bucket == BUCKET
    assert info.value.stage == "Aggregate"
    assert "(field seq)" in str(info.value)
    assert store.get(BUCKET, args.output_key) is None


def test_no_record_value_reaches_spark_logs_our_logs_or_the_error(
    spark: SparkSession, store: LocalStore, jvm_log: Callable[[], str], capsys: Any
) -> None:
    """Spark's FAILFAST errors quote the record (in executor, scheduler and writer logs, in the
    exception); the helper's reads keep every value of a record that does not fit out of all
    of them, and still name the stage, the key and the field."""
    sentinel = "sentinel-4c1f9e-do-not-log"
    bad = {"customer_id": f"{sentinel}-id", "kind": sentinel, "seq": f"{sentinel}-seq"}
    key = put_jsonl(store, "Ingest", [*events(3), bad])
    args = glue_args()
    argv = job_argv()
    errors: list[BaseException] = []

    with pytest.raises(InputValidationError) as validated:  # checked at once
        read_input(spark, args, schema=SCHEMA, store=store)
    errors.append(validated.value)
    lazy = read_input(spark, args, schema=SCHEMA, store=store, validate=False)
    with pytest.raises(InputValidationError) as written:  # checked while written
        write_output(lazy, args, store=store)
    errors.append(written.value)
    # In the job's own code, then reported by the job.
    with pytest.raises(SystemExit) as job_exit, glue_job(argv, store=store) as job:
        job.read_input(SCHEMA, validate=False).collect()
    cause = job_exit.value.__cause__
    assert isinstance(cause, InputValidationError)
    errors += [job_exit.value, cause]
    spark_log = jvm_log()
    ours = capsys.readouterr()

    assert "Exception in task" in spark_log  # the capture sees what tasks fail with
    assert "does not match the schema" in spark_log
    assert sentinel not in spark_log
    assert sentinel not in ours.out + ours.err
    assert '"error":"InputValidationError"' in ours.out
    for error in errors:
        assert sentinel not in str(error)
        assert "(field seq)" in str(error)
        assert "stage=Aggregate" in str(error)
        assert key in str(error)
    assert store.get(BUCKET, args.output_key) is None

    # The control: Spark's own FAILFAST read of the same input quotes the record in its logs.
    failfast = spark.read.schema(SCHEMA).option("mode", "FAILFAST")
    with pytest.raises(Exception, match=sentinel):
        failfast.json(spark_path(BUCKET, key, store)).collect()
    assert sentinel in jvm_log()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"[1, 2]", JSON), (b'"text"', JSON), (b'{"a": 1}\n[2]\n', JSONL), (b"{not json", JSON)],
)
def test_values_that_are_not_records_are_refused(
    spark: SparkSession, store: LocalStore, body: bytes, content_type: str
) -> None:
    put_output(store, "Ingest", body, content_type)

    with pytest.raises(InputValidationError) as info:
        read_input(spark, glue_args(), store=store)

    assert info.value.key == f"executions/{RUN}/Ingest/output.json"


def test_a_manifest_part_outside_the_stage_prefix_is_refused(
    spark: SparkSession, store: LocalStore
) -> None:
    put_jsonl(store, "Other", events(3))
    stolen = ManifestPart(f"executions/{RUN}/Other/output.json", 10)
    put_output(store, "Ingest", Manifest(records=3, parts=(stolen,)).to_bytes(), MANIFEST)

    with pytest.raises(InputValidationError, match="outside the stage's parts prefix"):
        read_input(spark, glue_args(), store=store)


def test_a_corrupt_manifest_part_is_refused(spark: SparkSession, store: LocalStore) -> None:
    _write_parts(store, "Ingest", [events(2)])
    part = manifest_of(store, "Ingest").parts[0]
    corrupt = b'{"customer_id": "c"}\n{broken\n'
    store.path(BUCKET, part.key).write_bytes(corrupt.ljust(part.bytes - 1) + b"\n")

    with pytest.raises(InputValidationError, match="not valid JSON Lines"):
        read_input(spark, glue_args(), store=store)


def test_a_missing_or_resized_part_is_refused(spark: SparkSession, store: LocalStore) -> None:
    _write_parts(store, "Ingest", [events(2), events(3)])
    first, second = manifest_of(store, "Ingest").parts
    store.path(BUCKET, second.key).write_bytes(b"{}\n")

    with pytest.raises(InputValidationError, match="the manifest says") as resized:
        read_input(spark, glue_args(), store=store)
    store.delete(BUCKET, [first.key])
    with pytest.raises(InputValidationError, match="does not exist") as missing:
        read_input(spark, glue_args(), store=store)

    assert resized.value.key == second.key
    assert missing.value.key == first.key
    assert missing.value.execution_id == RUN


# -- reruns ------------------------------------------------------------------------------------


def test_a_rerun_after_a_failed_attempt_leaves_no_stale_parts(
    spark: SparkSession, store: LocalStore
) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    put_jsonl(store, "Ingest", events(20))
    args = glue_args()
    df = read_input(spark, args, schema=SCHEMA, store=store)

    def explode_at_15(seq: int) -> int:
        if seq == 15:
            raise RuntimeError("boom")
        return seq

    failing = df.repartition(4, "seq").withColumn(
        "checked", F.udf(explode_at_15, LongType())("seq")
    )
    with pytest.raises(Exception, match="boom"):
        write_output(failing, args, store=store)
    assert store.get(BUCKET, args.output_key) is None  # a failed stage writes no output.json
    # What a crashed driver could leave behind: a whole attempt without a manifest.
    crashed = f"{args.parts_prefix}19700101T000000Z-crashed/part-00000-x-c000.json"
    store.put(BUCKET, crashed, b'{"customer_id": "stale", "kind": "view", "seq": -1}\n')

    out = write_output(df, args, store=store)
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert output_of(store, "Report") == events(20)
    keys = [k for k in stage_keys(store, "Aggregate") if not k.endswith("_SUCCESS")]
    assert sorted(keys) == sorted(p.key for p in out.parts)
    parts_dir = store.path(BUCKET, args.parts_prefix.rstrip("/"))
    assert [p.name for p in parts_dir.iterdir()] == [out.attempt]


def test_a_redrive_replaces_the_earlier_output(spark: SparkSession, store: LocalStore) -> None:
    args = glue_args()
    first = write_output(spark.range(0, 10).withColumnRenamed("id", "n"), args, store=store)
    second = write_output(spark.range(100, 103).withColumnRenamed("id", "n"), args, store=store)
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert first.attempt != second.attempt
    assert output_of(store, "Report") == [{"n": 100}, {"n": 101}, {"n": 102}]
    assert all(second.attempt in k for k in stage_keys(store, "Aggregate"))


def test_a_failed_rerun_keeps_the_committed_output_readable(
    spark: SparkSession, store: LocalStore
) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    args = glue_args()
    write_output(spark.range(0, 5).withColumnRenamed("id", "n"), args, store=store)

    def fail(n: int) -> int:
        raise RuntimeError("boom")

    broken = spark.range(0, 5).withColumn("n", F.udf(fail, LongType())("id"))
    with pytest.raises(Exception, match="boom"):
        write_output(broken, args, store=store)
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert output_of(store, "Report") == [{"n": n} for n in range(5)]


# -- paths -------------------------------------------------------------------------------------


def test_local_store_paths_are_file_urls(store: LocalStore, tmp_path: Path) -> None:
    url = spark_path(BUCKET, "executions/r/S/output.json", store)

    assert url == (tmp_path / "store" / BUCKET / "executions/r/S/output.json").as_uri()


def test_s3_paths_are_used_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CEAP_STORE", raising=False)

    assert spark_path(BUCKET, "executions/r/S/output.json") == (
        f"s3://{BUCKET}/executions/r/S/output.json"
    )


def test_ceap_store_selects_the_local_store(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEAP_STORE", (tmp_path / "env-store").as_uri())
    local = LocalStore(tmp_path / "env-store")
    put_jsonl(local, "Ingest", events(4))
    args = glue_args()

    write_output(read_input(spark, args), args)

    assert manifest_of(local, "Aggregate").records == 4


def test_event_model_round_trip(spark: SparkSession, store: LocalStore) -> None:
    """The report stage validates the Glue output with the same model the first stage used."""
    ingest_stage(store)(lambda_event("Ingest", None, initialData=events(5)))
    args = glue_args("Copy", "Ingest")
    write_output(read_input(spark, args, schema=SCHEMA, store=store), args, store=store)

    report_stage(store, list[Event])(lambda_event("Report", "Copy"))

    assert output_of(store, "Report") == events(5)


# -- the record count --------------------------------------------------------------------------


def test_the_count_comes_from_the_writer_and_the_description_is_restored(
    spark: SparkSession, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ceap_stage.glue import _metrics

    counted: list[int | None] = []
    rows = _metrics.WriteTag.rows

    def recording(self: _metrics.WriteTag, **options: float) -> int | None:
        counted.append(rows(self, **options))
        return counted[-1]

    monkeypatch.setattr(_metrics.WriteTag, "rows", recording)
    spark.sparkContext.setLocalProperty("spark.job.description", "the user's own")
    try:
        out = write_output(
            spark.range(0, 1234, numPartitions=3),
            glue_args(),
            store=store,
            max_records_per_file=500,
        )
        assert spark.sparkContext.getLocalProperty("spark.job.description") == "the user's own"
    finally:
        spark.sparkContext._jsc.setLocalProperty("spark.job.description", None)

    assert counted == [1234]  # read from Spark's own write metrics, no second pass
    assert out.records == 1234


def test_without_spark_metrics_the_written_lines_are_counted(
    spark: SparkSession, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ceap_stage.glue import _metrics

    monkeypatch.setattr(_metrics.WriteTag, "rows", lambda self, **_: None)
    args = glue_args()

    out = write_output(spark.range(0, 321, numPartitions=2), args, store=store)
    empty = write_output(spark.range(0), glue_args("Empty", "Ingest"), store=store)
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert out.records == 321
    assert manifest_of(store, "Aggregate").records == 321
    assert len(output_of(store, "Report")) == 321
    assert empty.records == 0


def test_an_unknown_status_store_gives_no_count(spark: SparkSession) -> None:
    from ceap_stage.glue._metrics import WriteTag

    tag = WriteTag(spark)  # never used for a write: nothing carries its description

    started = time.monotonic()
    assert tag.rows(timeout=5.0, find_timeout=0.05) is None
    assert time.monotonic() - started < 2.0  # a write that never ran is not waited for


# -- stores other than LocalStore (the S3 code path: Hadoop listing, store clean-up) -----------


class UriStore(Store):
    """A store that is not a ``LocalStore`` but whose objects Spark can reach by URI, as with S3
    on Glue: the helper must list through Hadoop and clean up through the store API."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner

    def get(self, bucket: str, key: str) -> StoredObject | None:
        return self.inner.get(bucket, key)

    def put(self, bucket: str, key: str, body: bytes, **options: Any) -> PutResult:
        return self.inner.put(bucket, key, body, **options)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        return self.inner.list_keys(bucket, prefix)

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        self.inner.delete(bucket, keys)

    def uri(self, bucket: str, key: str) -> str:
        return self.inner.uri(bucket, key)


def test_the_generic_store_path_lists_through_hadoop_and_cleans_up(
    spark: SparkSession, store: LocalStore
) -> None:
    generic = UriStore(store)
    _write_parts(store, "Ingest", [events(3), events(40)[3:40]])
    args = glue_args()

    first = write_output(read_input(spark, args, store=generic), args, store=generic)
    second = write_output(
        read_input(spark, args, schema=SCHEMA, store=generic).repartition(2),
        args,
        store=generic,
        order_by="seq",
    )
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert first.records == second.records == 40
    assert output_of(store, "Report") == events(40)
    remaining = stage_keys(store, "Aggregate")
    assert not any(first.attempt in k for k in remaining)
    assert [p.key for p in second.parts] == [k for k in remaining if not k.endswith("_SUCCESS")]


def test_parts_are_ordered_by_partition_then_file_number(
    spark: SparkSession, store: LocalStore
) -> None:
    from ceap_stage.glue._spark import _data_parts

    directory = f"executions/{RUN}/Aggregate/parts/a1"
    names = [
        "part-100000-u-c000.json",  # a 6-digit partition number sorts after 99999
        "part-99999-u-c000.json",
        "part-00001-u-c001.json",
        "part-00001-u-c000.json",
        "part-00000-u-c000.json",
        "_SUCCESS",
        ".part-00000-u-c000.json.crc",
        "part-00002-u-c000.json.gz",
    ]
    for name in names:
        store.put(BUCKET, f"{directory}/{name}", b"{}\n")

    for generic in (store, UriStore(store)):
        assert [n for n, _ in _data_parts(spark, generic, BUCKET, directory)] == [
            "part-00000-u-c000.json",
            "part-00001-u-c000.json",
            "part-00001-u-c001.json",
            "part-99999-u-c000.json",
            "part-100000-u-c000.json",
        ]
