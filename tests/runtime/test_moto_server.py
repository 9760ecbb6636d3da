"""Integration: real stages against moto's S3 server over HTTP (boto3 with an endpoint URL)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from ceap_stage import (
    ExecutionContext,
    InputNotFoundError,
    InputValidationError,
    OutputConflictError,
    OutputValidationError,
    S3Store,
    StorageError,
    TransientStorageError,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage._formats import Manifest, ManifestPart, encode_jsonl
from ceap_stage._s3 import RetryPolicy
from tests.conftest import new_bucket_name

from ._faults import Fault, fault_proxy
from ._helpers import RUN, Event, Scored, Total, assert_facts, key_of, make_event

SECRET = "s3cr3t-user@example.com"
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


def _sqs(body: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "messageId": f"m-{index}",
        "body": orjson.dumps(body).decode(),
        "eventSource": "aws:sqs",
    }


@stage(name="Ingest")
def ingest(events: list[Event], ctx: ExecutionContext) -> list[Event]:
    """First stage: keep events with a positive weight."""
    return [e for e in events if e.weight > 0]


class ScoreStage(WorkflowLambdaHandler[list[Event], list[Scored]]):
    name = "Score"
    output_format = "jsonl"

    def process(self, data: list[Event], ctx: ExecutionContext) -> list[Scored]:
        factor = {"view": 1.0, "click": 3.0, "share": 5.0}
        return [Scored(user_id=e.user_id, score=e.weight * factor[e.kind]) for e in data]


@stage(name="Total")
def total(scored: list[Scored]) -> Total:
    """Last stage: aggregate."""
    return Total(users=len({s.user_id for s in scored}), score=sum(s.score for s in scored))


def _pipeline_events() -> list[dict[str, Any]]:
    return [
        {"user_id": "u1", "kind": "view", "weight": 2.0},
        {"user_id": "u2", "kind": "click", "weight": 1.0},
        {"user_id": "u1", "kind": "share", "weight": 1.0},
        {"user_id": "u3", "kind": "view", "weight": 0.0},
    ]


def test_a_three_stage_pipeline_over_http(moto_server: str, moto_server_client: Any):
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    batch = [_sqs(e, i) for i, e in enumerate(_pipeline_events())]

    # Each handler gets its own store (and client), as separate Lambda functions would.
    first = stage(name="Ingest", store=S3Store(endpoint_url=moto_server))(ingest.fn)(
        make_event(current_stage="Ingest", previous_stage=None, bucket=bucket, initial_data=batch)
    )
    second = ScoreStage(store=S3Store(endpoint_url=moto_server))(
        make_event(current_stage="Score", previous_stage="Ingest", bucket=bucket)
    )
    third = stage(name="Total", store=S3Store(endpoint_url=moto_server))(total.fn)(
        make_event(current_stage="Total", previous_stage="Score", bucket=bucket)
    )

    assert first["recordsProcessed"] == 3
    assert second["recordsProcessed"] == 3
    assert second["output"]["format"] == "jsonl"
    assert third["recordsProcessed"] == 1
    for pointer in (first, second, third):
        obj = moto_server_client.get_object(Bucket=bucket, Key=pointer["output"]["key"])
        body = obj["Body"].read()
        assert pointer["output"]["bytes"] == len(body)
        assert pointer["output"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert obj["Metadata"]["ceap-execution-id"] == RUN
        assert obj["Metadata"]["ceap-stage"] == pointer["stage"]
    scored = moto_server_client.get_object(Bucket=bucket, Key=key_of("Score"))
    assert scored["ContentType"] == "application/x-ndjson"
    final = moto_server_client.get_object(Bucket=bucket, Key=key_of("Total"))["Body"].read()
    assert orjson.loads(final) == {"users": 2, "score": 2.0 + 3.0 + 5.0}
    listing = moto_server_client.list_objects_v2(Bucket=bucket, Prefix=f"executions/{RUN}/")
    assert sorted(o["Key"] for o in listing["Contents"]) == sorted(
        [key_of("Ingest"), key_of("Score"), key_of("Total")]
    )


def test_aws_endpoint_url_is_honoured_by_the_default_store(
    moto_server: str, moto_server_client: Any, monkeypatch: pytest.MonkeyPatch
):
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)

    @stage
    def handler(data: dict[str, Any]) -> dict[str, Any]:
        return {"seen": sorted(data)}

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # read at the first invocation
    handler(make_event(previous_stage=None, bucket=bucket, initial_data={"b": 1, "a": 2}))
    store = handler.runtime.store
    assert isinstance(store, S3Store)
    assert store.client.meta.endpoint_url == moto_server
    body = moto_server_client.get_object(Bucket=bucket, Key=key_of("Score"))["Body"].read()
    assert orjson.loads(body) == {"seen": ["a", "b"]}


def test_a_manifest_input_over_http(moto_server: str, moto_server_client: Any):
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    events = _pipeline_events()
    parts = []
    for index, chunk in enumerate((events[:1], events[1:])):
        key = f"executions/{RUN}/Ingest/parts/part-{index:05d}.jsonl"
        body = encode_jsonl(chunk)
        moto_server_client.put_object(Bucket=bucket, Key=key, Body=body)
        parts.append(ManifestPart(key, len(body)))
    moto_server_client.put_object(
        Bucket=bucket,
        Key=key_of("Ingest"),
        Body=Manifest(records=4, parts=tuple(parts)).to_bytes(),
        ContentType="application/vnd.ceap.manifest+json",
    )
    result = ScoreStage(store=S3Store(endpoint_url=moto_server))(
        make_event(current_stage="Score", previous_stage="Ingest", bucket=bucket)
    )
    assert result["recordsProcessed"] == 4


def test_write_once_over_http(moto_server: str, moto_server_client: Any):
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    handler = stage(store=S3Store(endpoint_url=moto_server), write_once=True)(total.fn)
    moto_server_client.put_object(
        Bucket=bucket, Key=key_of("Filter"), Body=b'[{"user_id": "a", "score": 1}]'
    )
    first = handler(make_event(bucket=bucket))
    assert handler(make_event(bucket=bucket)) == first  # identical: done
    moto_server_client.put_object(
        Bucket=bucket, Key=key_of("Filter"), Body=b'[{"user_id": "b", "score": 2}]'
    )
    with pytest.raises(OutputConflictError):
        handler(make_event(bucket=bucket))
    body = moto_server_client.get_object(Bucket=bucket, Key=key_of("Score"))["Body"].read()
    assert orjson.loads(body) == {"users": 1, "score": 1.0}


# -- docs/contract.md section 5 over HTTP -------------------------------------------------------


def _score(events: list[Event]) -> list[Scored]:
    return [Scored(user_id=e.user_id, score=e.weight) for e in events]


def _assert_no_output(client: Any, bucket: str) -> None:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=f"executions/{RUN}/Score/")
    assert listing.get("KeyCount", 0) == 0


def test_errors_over_http(moto_server: str, moto_server_client: Any):
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    handler = stage(store=S3Store(endpoint_url=moto_server, retry=FAST))(_score)
    filter_key = key_of("Filter")

    with pytest.raises(InputNotFoundError) as not_found:
        handler(make_event(bucket=bucket))
    assert_facts(not_found.value, execution_id=RUN, stage="Score", bucket=bucket, key=filter_key)

    moto_server_client.put_object(
        Bucket=bucket, Key=filter_key, Body=b'[{"user_id": "' + SECRET.encode() + b'"}]'
    )
    with pytest.raises(InputValidationError) as invalid:
        handler(make_event(bucket=bucket))
    assert_facts(invalid.value, execution_id=RUN, stage="Score", bucket=bucket, key=filter_key)
    assert SECRET not in str(invalid.value)

    @stage(store=S3Store(endpoint_url=moto_server))
    def bad_output(events: list[Event]) -> list[Scored]:
        return [{"user_id": SECRET}]  # type: ignore[list-item]

    moto_server_client.put_object(
        Bucket=bucket, Key=filter_key, Body=b'[{"user_id": "u", "kind": "view"}]'
    )
    with pytest.raises(OutputValidationError) as output_invalid:
        bad_output(make_event(bucket=bucket))
    assert_facts(
        output_invalid.value, execution_id=RUN, stage="Score", bucket=bucket, key=key_of("Score")
    )
    assert SECRET not in str(output_invalid.value)

    class Boom(RuntimeError):
        pass

    @stage(store=S3Store(endpoint_url=moto_server))
    def raises(events: list[Event]) -> list[Scored]:
        raise Boom("own error")

    with pytest.raises(Boom, match="own error"):
        raises(make_event(bucket=bucket))
    _assert_no_output(moto_server_client, bucket)


def test_a_missing_bucket_over_http_is_a_lasting_storage_error(moto_server: str):
    handler = stage(store=S3Store(endpoint_url=moto_server, retry=FAST))(_score)
    bucket = new_bucket_name("ceap-missing")
    with pytest.raises(StorageError, match="NoSuchBucket") as info:
        handler(make_event(previous_stage=None, bucket=bucket, initial_data=[]))
    assert type(info.value) is StorageError
    assert_facts(info.value, execution_id=RUN, stage="Score", bucket=bucket, key=key_of("Score"))


def test_throttled_output_write_over_http_is_transient_and_writes_nothing(
    moto_server: str, moto_server_client: Any
):
    bucket = new_bucket_name()
    moto_server_client.create_bucket(Bucket=bucket)
    moto_server_client.put_object(
        Bucket=bucket, Key=key_of("Filter"), Body=b'[{"user_id": "u", "kind": "view"}]'
    )
    with fault_proxy(moto_server) as proxy:
        proxy.faults.append(Fault("PUT", "/Score/output.json", status=503, code="SlowDown"))
        handler = stage(store=S3Store(endpoint_url=proxy.endpoint_url, retry=FAST))(_score)
        with pytest.raises(TransientStorageError, match="SlowDown") as info:
            handler(make_event(bucket=bucket))
        assert proxy.count("GET", "/Filter/output.json") == 1  # the input was read for real
        assert proxy.count("PUT", "/Score/output.json") == 3
    assert info.value.retryable
    assert_facts(info.value, execution_id=RUN, stage="Score", bucket=bucket, key=key_of("Score"))
    _assert_no_output(moto_server_client, bucket)
