"""Security options: ExpectedBucketOwner on every S3 call, SSE-KMS, manifests kept inside their
stage's prefix, bucket pinning, and payload data kept out of logs, metrics, errors and results."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from ceap_stage import (
    ContextResolutionError,
    InputValidationError,
    OutputConflictError,
    OutputValidationError,
    S3Store,
    TransientStorageError,
    stage,
)
from ceap_stage._formats import JSONL, MANIFEST
from ceap_stage._observability import Observer, capture
from ceap_stage._s3 import RetryPolicy
from tests.conftest import FAKE_REGION, create_bucket, s3_client
from tests.reliability.conftest import FaultProxy

OWNER = "111122223333"
KMS_KEY = "arn:aws:kms:us-east-1:111122223333:key/0c5e1f4e-aaaa-bbbb-cccc-0123456789ab"
SENTINEL = "SENTINEL-5ec2e7-payload"


class Rec(BaseModel):
    n: int
    secret: str


def jsonl(count: int) -> bytes:
    return b"".join(orjson.dumps({"n": n, "secret": SENTINEL}) + b"\n" for n in range(count))


class CallLog:
    """Every S3 API call a botocore client makes, with its parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def attach(self, store: S3Store) -> CallLog:
        store.client.meta.events.register("provide-client-params.s3.*", self)
        return self

    def operations(self) -> set[str]:
        return {name for name, _ in self.calls}


def test_expected_bucket_owner_and_sse_kms_on_every_call(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
):
    client = s3_client(moto_server)
    bucket = create_bucket(client)
    client.put_object(
        Bucket=bucket, Key="executions/run-s/Prev/output.json", Body=jsonl(400), ContentType=JSONL
    )
    # GIVEN the options from the environment, read at first invocation (no store passed)
    monkeypatch.setenv("CEAP_EXPECTED_BUCKET_OWNER", OWNER)
    monkeypatch.setenv("CEAP_SSE_KMS_KEY_ID", KMS_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)

    def make(suffix: str):
        @stage(name="S", observer=Observer(), part_bytes=2048, write_once=True)
        def copy(records: Iterator[Rec]) -> Iterator[Rec]:
            for r in records:
                yield Rec(n=r.n, secret=r.secret + suffix)

        return copy

    handler = make("")
    store = handler.runtime.store
    assert isinstance(store, S3Store)
    log = CallLog().attach(store)
    event = {
        "executionId": "run-s",
        "currentStage": "S",
        "previousStage": "Prev",
        "workflowBucket": bucket,
    }

    # WHEN it reads (streaming), writes parts and a manifest, re-runs (write_once: done),
    # and a run with other data is refused (its parts deleted again)
    handler(event)
    handler(event)
    other = make("-changed")
    other.runtime._store = store
    with pytest.raises(OutputConflictError, match="write_once"):
        other(event)

    # THEN every call carried ExpectedBucketOwner, and every write SSE-KMS with the key
    assert {"GetObject", "PutObject", "ListObjectsV2", "DeleteObjects"} <= log.operations()
    for name, params in log.calls:
        assert params.get("ExpectedBucketOwner") == OWNER, name
        if name == "PutObject":
            assert params["ServerSideEncryption"] == "aws:kms"
            assert params["SSEKMSKeyId"] == KMS_KEY
    listed = client.list_objects_v2(Bucket=bucket, Prefix="executions/run-s/S/")["Contents"]
    assert len(listed) > 2  # the manifest and its parts
    for obj in listed:
        head = client.head_object(Bucket=bucket, Key=obj["Key"])
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == KMS_KEY


def test_a_manifest_pointing_at_another_execution_is_refused_without_reading_it(
    moto_server: str,
):
    client = s3_client(moto_server)
    bucket = create_bucket(client)
    foreign = "executions/someone-else/Prev/parts/p0.jsonl"
    client.put_object(Bucket=bucket, Key=foreign, Body=jsonl(1))
    manifest = {
        "ceap": "manifest/1",
        "format": "jsonl",
        "records": 1,
        "parts": [{"key": foreign, "bytes": len(jsonl(1))}],
    }
    client.put_object(
        Bucket=bucket,
        Key="executions/run-m/Prev/output.json",
        Body=orjson.dumps(manifest),
        ContentType=MANIFEST,
    )
    store = S3Store(endpoint_url=moto_server, region_name=FAKE_REGION)
    log = CallLog().attach(store)

    @stage(name="S", store=store, observer=Observer())
    def as_list(records: list[Rec]) -> int:
        return len(records)

    @stage(name="S", store=store, observer=Observer())
    def as_stream(records: Iterator[Rec]) -> int:
        return sum(1 for _ in records)

    event = {
        "executionId": "run-m",
        "currentStage": "S",
        "previousStage": "Prev",
        "workflowBucket": bucket,
    }
    for handler in (as_list, as_stream):
        with pytest.raises(InputValidationError, match="outside the stage's parts prefix"):
            handler(event)
    assert all(params.get("Key") != foreign for _, params in log.calls)
    assert "PutObject" not in log.operations()


def test_bucket_pinning_refuses_another_bucket_before_any_call(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CEAP_WORKFLOW_BUCKET", "ceap-pinned-bucket")
    store = S3Store(endpoint_url=moto_server, region_name=FAKE_REGION)
    log = CallLog().attach(store)

    @stage(name="S", store=store, observer=Observer())
    def anything(data: dict[str, Any]) -> dict[str, Any]:
        return data

    with pytest.raises(ContextResolutionError, match="never touches another bucket"):
        anything(
            {
                "executionId": "run-p",
                "currentStage": "S",
                "workflowBucket": "ceap-other-bucket",
                "initialData": {"secret": SENTINEL},
            }
        )
    assert log.calls == []


# -- no payload in logs, metrics, errors or results ---------------------------------------------


def test_a_payload_sentinel_never_reaches_logs_metrics_errors_or_results(
    moto_server: str,
    fault_proxy: FaultProxy,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")  # the finer steps too
    client = s3_client(moto_server)
    bucket = create_bucket(client)
    store = S3Store(endpoint_url=moto_server, region_name=FAKE_REGION)

    @stage(name="Good", store=store)  # the default observer: Powertools logs and EMF metrics
    def good(records: list[Rec]) -> list[Rec]:
        return records

    @stage(name="Bad", store=store)
    def bad(records: list[Rec]) -> list[int]:
        return [r.secret for r in records]  # type: ignore[misc]

    flaky_store = S3Store(
        endpoint_url=fault_proxy.endpoint_url,
        region_name=FAKE_REGION,
        retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001),
    )

    @stage(name="Flaky", store=flaky_store)
    def flaky(records: list[Rec]) -> list[Rec]:
        return records

    def ev(stage_name: str, **extra: Any) -> dict[str, Any]:
        return {
            "executionId": "run-leak",
            "currentStage": stage_name,
            "workflowBucket": bucket,
            "workflowName": "wf",
            **extra,
        }

    errors: list[BaseException] = []
    results: list[dict[str, Any]] = []
    with caplog.at_level(logging.DEBUG), capture() as captured:
        results.append(
            good(
                ev(
                    "Good",
                    initialData=[{"n": n, "secret": SENTINEL} for n in range(3)],
                )
            )
        )
        client.put_object(
            Bucket=bucket,
            Key="executions/run-leak/Prev/output.json",
            Body=b'[{"n": "' + SENTINEL.encode() + b'", "secret": "' + SENTINEL.encode() + b'"}]',
        )
        with pytest.raises(InputValidationError) as invalid:
            good(ev("Good", previousStage="Prev"))
        errors.append(invalid.value)
        with pytest.raises(OutputValidationError) as output_error:
            bad(ev("Bad", initialData=[{"n": 1, "secret": SENTINEL}]))
        errors.append(output_error.value)
        fault_proxy.rate = 1.0
        with pytest.raises(TransientStorageError) as transient:
            flaky(ev("Flaky", initialData=[{"n": 1, "secret": SENTINEL}]))
        errors.append(transient.value)

    out, err = capsys.readouterr()
    assert captured.lines  # the observer did log...
    assert captured.metrics  # ...and measure
    assert any(r.get("message") == "stage failed" for r in captured.records)
    for text in (out, err, *captured.lines, orjson.dumps(captured.metrics).decode()):
        assert SENTINEL not in text
    assert all(SENTINEL not in record.getMessage() for record in caplog.records)
    for error in errors:
        assert SENTINEL not in str(error)
        assert SENTINEL not in repr(error.args)
    assert SENTINEL not in orjson.dumps(results).decode()
