"""The Python-shell variant (no Spark): records in and out through the same stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from ceap_stage import (
    ContextResolutionError,
    InputNotFoundError,
    InputValidationError,
    LocalStore,
    OutputValidationError,
)
from ceap_stage._formats import JSON, JSONL, MANIFEST, Manifest
from ceap_stage.glue import (
    GlueArgs,
    glue_job,
    read_input_value,
    read_records,
    resolve_args,
    write_records,
)

from ._lambda import (
    ingest_stage,
    lambda_event,
    manifest_of,
    output_of,
    put_jsonl,
    put_output,
    report_stage,
)
from .conftest import BUCKET, RUN, job_argv

RECORDS = [{"customer_id": f"c-{i}", "events": i} for i in range(7)]


def shell_args(current: str = "Aggregate", previous: str | None = "Ingest") -> GlueArgs:
    return resolve_args(job_argv(current, previous))


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "manifest"])
def test_read_records_from_each_format(store: LocalStore, fmt: str) -> None:
    if fmt == "json":
        put_output(store, "Ingest", orjson.dumps(RECORDS), JSON)
    elif fmt == "jsonl":
        put_jsonl(store, "Ingest", RECORDS)
    else:
        write_records(RECORDS, shell_args("Ingest", None), store=store, records_per_part=3)

    assert read_records(shell_args(), store=store) == RECORDS


def test_a_single_object_is_a_value_not_records(store: LocalStore) -> None:
    put_output(store, "Ingest", b'{"total": 3}', JSON)

    assert read_input_value(shell_args(), store=store) == {"total": 3}
    with pytest.raises(InputValidationError, match="not a list of records"):
        read_records(shell_args(), store=store)


def test_missing_and_invalid_input(store: LocalStore) -> None:
    with pytest.raises(InputNotFoundError) as info:
        read_records(shell_args(), store=store)
    assert info.value.key == f"executions/{RUN}/Ingest/output.json"

    put_output(store, "Ingest", b'{"a": 1}\n{broken', JSONL)
    with pytest.raises(InputValidationError, match="line 2") as bad:
        read_records(shell_args(), store=store)
    assert bad.value.stage == "Aggregate"


def test_a_tampered_part_is_refused(store: LocalStore) -> None:
    out = write_records(RECORDS, shell_args("Ingest", None), store=store, records_per_part=3)
    store.path(BUCKET, out.parts[1].key).write_bytes(b'{"customer_id": "x"}\n')

    with pytest.raises(InputValidationError, match="bytes"):
        read_records(shell_args(), store=store)


def test_written_records_reach_the_next_lambda_in_order(store: LocalStore) -> None:
    ingest_stage(store)(
        lambda_event("Ingest", None, initialData=[{"customer_id": "a", "kind": "view", "seq": 1}])
    )
    args = shell_args()
    events = read_records(args, store=store)

    out = write_records(
        [*RECORDS, *({"customer_id": e["customer_id"], "events": 99} for e in events)],
        args,
        store=store,
        records_per_part=2,
    )
    report_stage(store)(lambda_event("Report", "Aggregate"))

    assert output_of(store, "Report") == [*RECORDS, {"customer_id": "a", "events": 99}]
    manifest = manifest_of(store, "Aggregate")
    assert manifest.records == 8
    assert len(manifest.parts) == 4
    assert out.to_result()["output"] == {
        "bucket": BUCKET,
        "key": f"executions/{RUN}/Aggregate/output.json",
        "bytes": out.manifest_bytes,
        "sha256": out.manifest_sha256,
        "format": "manifest",
    }
    for part in manifest.parts:
        obj = store.get(BUCKET, part.key)
        assert obj is not None
        assert obj.content_type == JSONL
        assert len(obj.body) == part.bytes


def test_pydantic_records_are_dumped_as_json(store: LocalStore) -> None:
    class Total(BaseModel):
        customer_id: str
        events: int

    write_records([Total(customer_id="c", events=2)], shell_args(), store=store)

    assert read_records(shell_args("Next", "Aggregate"), store=store) == [
        {"customer_id": "c", "events": 2}
    ]


def test_empty_output_is_a_manifest_without_parts(store: LocalStore) -> None:
    out = write_records([], shell_args(), store=store)

    assert out.records == 0
    assert manifest_of(store, "Aggregate") == Manifest(records=0, parts=())


def test_unserialisable_records_are_output_validation(store: LocalStore) -> None:
    with pytest.raises(OutputValidationError, match="cannot be serialised") as info:
        write_records([{"a": object()}], shell_args(), store=store)

    assert info.value.stage == "Aggregate"
    assert store.get(BUCKET, shell_args().output_key) is None


def test_a_rerun_after_a_failed_attempt_leaves_no_stale_parts(store: LocalStore) -> None:
    args = shell_args()

    def crashing() -> Iterator[dict[str, Any]]:
        yield from RECORDS[:4]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="source went away"):
        write_records(crashing(), args, store=store, records_per_part=2)
    leftovers = store.list_keys(BUCKET, args.parts_prefix)
    assert len(leftovers) == 2  # two parts flushed before the failure...
    assert store.get(BUCKET, args.output_key) is None  # ...but no manifest

    out = write_records(RECORDS, args, store=store, records_per_part=5)

    assert store.list_keys(BUCKET, args.parts_prefix) == [p.key for p in out.parts]
    assert read_records(shell_args("Next", "Aggregate"), store=store) == RECORDS


def test_records_per_part_must_be_positive(store: LocalStore) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        write_records(RECORDS, shell_args(), store=store, records_per_part=0)


# -- the job wrapper without Spark -------------------------------------------------------------


def test_shell_job_runs_and_logs_start_and_finish(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    put_jsonl(store, "Ingest", [{"customer_id": "secret-customer", "n": 1}])

    with glue_job(job_argv(), spark=False, store=store) as job:
        records = job.read_records()
        job.write_records([{"customers": len(records)}])

    assert read_records(shell_args("Next", "Aggregate"), store=store) == [{"customers": 1}]
    out = capsys.readouterr().out
    started, finished = log_lines(out)
    assert started["message"] == "glue stage started"
    assert started["runtime"] == "python-shell"
    assert finished["message"] == "glue stage finished"
    for line in (started, finished):
        assert line["execution_id"] == RUN
        assert line["stage"] == "Aggregate"
        assert line["level"] == "INFO"
        assert line["service"] == "ceap-stage"
        assert line["logger"] == "ceap_stage.glue"
    assert finished["records"] == 1
    assert finished["parts"] == 1
    assert finished["duration_ms"] >= 0
    assert "secret-customer" not in out
    with pytest.raises(RuntimeError, match="without Spark"):
        _ = job.spark


def test_shell_job_failure_exits_1_with_the_contract_error(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info, glue_job(job_argv(), spark=False, store=store) as job:
        job.read_records()

    assert info.value.code == 1
    assert isinstance(info.value.__cause__, InputNotFoundError)
    failed = log_lines(capsys.readouterr().out)[-1]
    assert failed["level"] == "ERROR"
    assert failed["error"] == "InputNotFoundError"
    assert failed["execution_id"] == RUN
    assert failed["stage"] == "Aggregate"
    assert failed["retryable"] is False


def test_a_user_error_is_logged_by_class_only(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info, glue_job(job_argv(), spark=False, store=store):
        raise ValueError("secret-payload-value")

    assert isinstance(info.value.__cause__, ValueError)
    out = capsys.readouterr().out
    assert log_lines(out)[-1]["error"] == "ValueError"
    assert "secret-payload-value" not in out


def test_bad_arguments_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info, glue_job(job_argv(execution_id="../x"), spark=False):
        pytest.fail("the body must not run")

    assert isinstance(info.value.__cause__, ContextResolutionError)
    failed = log_lines(capsys.readouterr().out)[-1]
    assert failed["error"] == "ContextResolutionError"
    assert "executionId must not contain" in failed["error_message"]


def test_manifest_content_type_and_metadata(store: LocalStore) -> None:
    write_records(RECORDS, shell_args(), store=store)

    obj = store.get(BUCKET, shell_args().output_key)
    assert obj is not None
    assert obj.content_type == MANIFEST
    assert obj.metadata["ceap-execution-id"] == RUN
    assert obj.metadata["ceap-stage"] == "Aggregate"
    assert obj.metadata["ceap-records"] == str(len(RECORDS))


# -- on S3 (moto) ------------------------------------------------------------------------------


def _shell_round_trip_on_s3(store: Any, client: Any, bucket: str) -> None:
    ingest = ingest_stage(store)
    ingest(
        {
            "executionId": RUN,
            "currentStage": "Ingest",
            "workflowBucket": bucket,
            "initialData": [{"customer_id": "c", "kind": "view", "seq": i} for i in range(5)],
        }
    )
    argv = job_argv("Aggregate", "Ingest", bucket=bucket)
    stale = f"executions/{RUN}/Aggregate/parts/19700101T000000Z-crashed/part-00000.jsonl"
    store.put(bucket, stale, b'{"stale": true}\n', content_type=JSONL)

    with glue_job(argv, spark=False, store=store) as job:
        events = job.read_records()
        job.write_records(({"seq": e["seq"]} for e in events), records_per_part=2)
    report_stage(store)(
        {
            "executionId": RUN,
            "currentStage": "Report",
            "previousStage": "Aggregate",
            "workflowBucket": bucket,
        }
    )

    head = client.head_object(Bucket=bucket, Key=f"executions/{RUN}/Aggregate/output.json")
    assert head["ContentType"] == MANIFEST
    report = client.get_object(Bucket=bucket, Key=f"executions/{RUN}/Report/output.json")
    assert orjson.loads(report["Body"].read()) == [{"seq": i} for i in range(5)]
    assert job.output is not None
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"executions/{RUN}/Aggregate/parts/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [p.key for p in job.output.parts]


def test_shell_job_on_a_moto_server(moto_server: str, moto_bucket: str) -> None:
    from ceap_stage import S3Store
    from tests.conftest import s3_client

    _shell_round_trip_on_s3(S3Store(endpoint_url=moto_server), s3_client(moto_server), moto_bucket)


def test_shell_job_on_in_process_moto() -> None:
    from moto import mock_aws

    from ceap_stage import S3Store
    from tests.conftest import create_bucket, s3_client

    with mock_aws():
        client = s3_client()
        _shell_round_trip_on_s3(S3Store(), client, create_bucket(client))
