"""S3Store: checksums and metadata, the lazy per-handler client, and error translation.

In-process ``mock_aws`` for the behaviour of S3 itself; the fault proxy in front of the moto
HTTP server for what moto cannot do (throttling, 5xx, access denied, timeouts).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from moto import mock_aws

from ceap_stage import (
    ConfigurationError,
    OutputConflictError,
    S3Store,
    StorageError,
    TransientStorageError,
    stage,
)
from ceap_stage._models import schema_fingerprint
from ceap_stage._s3 import RetryPolicy, translate_error
from tests.conftest import create_bucket, free_port, s3_client

from ._faults import Fault, fault_proxy
from ._helpers import BUCKET, RUN, Scored, key_of, make_event

FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002, max_elapsed=5.0)
KEY = key_of("Score")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = s3_client()
        client.create_bucket(Bucket=BUCKET)
        yield client


def _capture_put_params(store: S3Store) -> list[dict[str, Any]]:
    captured: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **kwargs: Any) -> None:
        captured.append(dict(params))

    store.client.meta.events.register("provide-client-params.s3.PutObject", hook)
    return captured


# -- writes: checksum, content type, metadata -------------------------------------------------


def test_put_sends_a_sha256_checksum_content_type_and_metadata(s3: Any):
    store = S3Store()
    captured = _capture_put_params(store)
    body = b'{"a":1}\n'
    result = store.put(
        BUCKET, KEY, body, content_type="application/x-ndjson", metadata={"ceap-records": "1"}
    )
    digest = hashlib.sha256(body).digest()
    assert result.sha256 == digest.hex()
    assert result.bytes == len(body)
    ((params,),) = [captured]
    assert params["ChecksumSHA256"] == base64.b64encode(digest).decode()
    assert params["ContentType"] == "application/x-ndjson"
    assert params["Metadata"] == {"ceap-records": "1"}
    assert "IfNoneMatch" not in params
    assert "ExpectedBucketOwner" not in params
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["ContentType"] == "application/x-ndjson"
    assert head["Metadata"] == {"ceap-records": "1"}


def test_a_stage_output_carries_metadata_naming_execution_stage_schema_and_records(s3: Any):
    @stage(store=S3Store())
    def handler(data: dict[str, Any]) -> list[Scored]:
        return [Scored(user_id="u", score=1), Scored(user_id="v", score=2)]

    handler(make_event(previous_stage=None, initial_data={}))
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {
        "ceap-execution-id": RUN,
        "ceap-stage": "Score",
        "ceap-schema": "list[Scored]",
        "ceap-schema-fingerprint": schema_fingerprint(list[Scored]),
        "ceap-records": "2",
    }


def test_expected_bucket_owner_and_kms_key_from_the_environment(
    s3: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CEAP_EXPECTED_BUCKET_OWNER", "123456789012")
    monkeypatch.setenv("CEAP_SSE_KMS_KEY_ID", "alias/ceap")
    store = S3Store()
    captured = _capture_put_params(store)
    store.put(BUCKET, KEY, b"[]")
    (params,) = captured
    assert params["ExpectedBucketOwner"] == "123456789012"
    assert params["ServerSideEncryption"] == "aws:kms"
    assert params["SSEKMSKeyId"] == "alias/ceap"


def test_write_once_uses_if_none_match(s3: Any):
    store = S3Store()
    captured = _capture_put_params(store)
    store.put(BUCKET, KEY, b"[1]", if_none_match=True)
    assert captured[0]["IfNoneMatch"] == "*"
    with pytest.raises(OutputConflictError, match="already exists") as info:
        store.put(BUCKET, KEY, b"[2]", if_none_match=True)
    assert info.value.key == KEY
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"[1]"


# -- reads, listing, deleting -------------------------------------------------------------------


def test_get_open_list_and_delete(s3: Any):
    store = S3Store()
    assert store.get(BUCKET, KEY) is None
    assert store.open(BUCKET, KEY) is None
    for index in (1, 0):
        s3.put_object(Bucket=BUCKET, Key=f"executions/r/S/parts/part-{index}.jsonl", Body=b"1\n")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"[]", ContentType="application/json")
    obj = store.get(BUCKET, KEY)
    assert obj is not None
    assert (obj.body, obj.content_type) == (b"[]", "application/json")
    stream = store.open(BUCKET, KEY)
    assert stream is not None
    assert stream.read() == b"[]"
    assert store.list_keys(BUCKET, "executions/r/S/parts/") == [
        "executions/r/S/parts/part-0.jsonl",
        "executions/r/S/parts/part-1.jsonl",
    ]
    store.delete(BUCKET, ["executions/r/S/parts/part-0.jsonl", "executions/missing"])
    assert store.list_keys(BUCKET, "executions/r/") == ["executions/r/S/parts/part-1.jsonl"]
    assert store.uri(BUCKET, KEY) == f"s3://{BUCKET}/{KEY}"


@pytest.mark.parametrize("action", ["get", "put", "list_keys"])
def test_a_missing_bucket_is_a_lasting_storage_error(s3: Any, action: str):
    store = S3Store(retry=FAST)
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: store.get("no-such-bucket-here", KEY),
        "put": lambda: store.put("no-such-bucket-here", KEY, b"[]"),
        "list_keys": lambda: store.list_keys("no-such-bucket-here", "executions/"),
    }
    with pytest.raises(StorageError, match="NoSuchBucket") as info:
        calls[action]()
    assert not isinstance(info.value, TransientStorageError)
    assert info.value.bucket == "no-such-bucket-here"
    assert "bucket no-such-bucket-here does not exist (NoSuchBucket)" in str(info.value)


# -- the client: lazy, one per handler, reused ------------------------------------------------


@pytest.fixture
def client_count(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every S3 client created during the test (the real ones, counted, from botocore)."""
    created: list[Any] = []
    real = botocore.session.Session.create_client

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = real(self, *args, **kwargs)
        created.append(client)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    return created


def test_no_client_until_the_first_call(s3: Any, client_count: list[Any]):
    store = S3Store()
    assert store._client is None
    assert client_count == []

    @stage
    def handler(data: dict[str, Any]) -> dict[str, Any]:
        return data

    assert handler.runtime._resolved is None
    assert client_count == []
    handler(make_event(previous_stage=None, initial_data={}))
    assert len(client_count) == 1


def test_one_client_per_handler_reused_across_warm_invocations(s3: Any, client_count: list[Any]):
    @stage
    def first(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @stage
    def second(data: dict[str, Any]) -> dict[str, Any]:
        return data

    for run in ("run-1", "run-2", "run-3"):
        first(make_event(execution_id=run, previous_stage=None, initial_data={}))
    assert len(client_count) == 1
    store = first.runtime.store
    assert isinstance(store, S3Store)
    assert store.client is client_count[0]

    second(make_event(execution_id="run-4", previous_stage=None, initial_data={}))
    assert len(client_count) == 2
    other = second.runtime.store
    assert isinstance(other, S3Store)
    assert other.client is not store.client


def test_an_injected_client_is_used(s3: Any, client_count: list[Any]):
    client = s3_client()
    client_count.clear()
    store = S3Store(client)
    store.put(BUCKET, KEY, b"[]")
    assert store.client is client
    assert client_count == []


# -- error translation ------------------------------------------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_client_error("AccessDenied", 403), StorageError),
        (_client_error("NoSuchBucket", 404), StorageError),
        (_client_error("InvalidObjectState", 403), StorageError),
        (_client_error("SlowDown", 503), TransientStorageError),
        (_client_error("ServiceUnavailable", 503), TransientStorageError),
        (_client_error("InternalError", 500), TransientStorageError),
        (_client_error("RequestTimeout", 400), TransientStorageError),
        (_client_error("", 502), TransientStorageError),
        (_client_error("TooManyRequests", 429), TransientStorageError),
        (_client_error("PreconditionFailed", 412), OutputConflictError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), TransientStorageError),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), TransientStorageError),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), TransientStorageError),
        (ConnectionResetError(104, "reset"), TransientStorageError),
        (ValueError("unexpected"), StorageError),
    ],
)
def test_translate_error(error: Exception, expected: type[Exception]):
    translated = translate_error(error, bucket=BUCKET, key=KEY, action="write")
    assert type(translated) is expected
    assert (translated.bucket, translated.key) == (BUCKET, KEY)


@pytest.fixture
def proxied(moto_server: str) -> Iterator[Any]:
    """The fault proxy in front of the moto server, with the test bucket created."""
    client = s3_client(moto_server)
    try:
        client.head_bucket(Bucket=BUCKET)
    except ClientError:
        create_bucket(client, BUCKET)
    with fault_proxy(moto_server) as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("code", "status"),
    [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503)],
)
def test_throttling_and_5xx_become_transient_after_the_retry_policy(proxied: Any, code, status):
    proxied.faults.append(Fault("PUT", "/throttled/", status=status, code=code))
    store = S3Store(endpoint_url=proxied.endpoint_url, retry=FAST)
    with pytest.raises(TransientStorageError, match=f"kept failing \\({code}\\)") as info:
        store.put(BUCKET, "throttled/output.json", b"[]")
    assert "3 attempts" in str(info.value)
    assert info.value.retryable is True
    assert proxied.count("PUT", "/throttled/") == 3  # the policy's attempts, no more


def test_a_transient_failure_that_clears_succeeds(proxied: Any):
    proxied.faults.append(Fault("PUT", "/flaky/", times=2))
    store = S3Store(endpoint_url=proxied.endpoint_url, retry=FAST)
    store.put(BUCKET, "flaky/output.json", b"[1]")
    assert proxied.count("PUT", "/flaky/") == 3
    assert s3_client(proxied.upstream).get_object(Bucket=BUCKET, Key="flaky/output.json")[
        "Body"
    ].read() == (b"[1]")


def test_access_denied_is_lasting_and_not_retried(proxied: Any):
    proxied.faults.append(Fault("GET", "/denied/", status=403, code="AccessDenied"))
    store = S3Store(endpoint_url=proxied.endpoint_url, retry=FAST)
    with pytest.raises(StorageError, match="S3 refused the read \\(AccessDenied\\)") as info:
        store.get(BUCKET, "denied/output.json")
    assert not isinstance(info.value, TransientStorageError)
    assert proxied.count("GET", "/denied/") == 1


def test_a_read_timeout_is_transient(proxied: Any):
    proxied.faults.append(Fault("GET", "/slow/", delay=1.0))
    store = S3Store(
        endpoint_url=proxied.endpoint_url,
        retry=RetryPolicy(max_attempts=2, base_delay=0.001),
        read_timeout=0.2,
    )
    with pytest.raises(TransientStorageError, match="ReadTimeoutError"):
        store.get(BUCKET, "slow/output.json")


def test_an_unreachable_endpoint_is_transient():
    store = S3Store(endpoint_url=f"http://127.0.0.1:{free_port()}", retry=FAST, connect_timeout=1)
    with pytest.raises(TransientStorageError, match="EndpointConnectionError"):
        store.get(BUCKET, KEY)


def test_the_retry_policy_gives_up_after_max_elapsed(proxied: Any):
    proxied.faults.append(Fault("GET", "/elapsed/", delay=0.2))
    policy = RetryPolicy(max_attempts=100, base_delay=0.001, max_delay=0.001, max_elapsed=1.0)
    store = S3Store(endpoint_url=proxied.endpoint_url, retry=policy)
    assert store.client is not None  # created up front: only the calls count
    started = time.monotonic()
    with pytest.raises(TransientStorageError, match="SlowDown"):
        store.get(BUCKET, "elapsed/output.json")
    # Each attempt takes >= 0.2 s: the policy stops after the attempt that crosses 1 s (about
    # 5 attempts), long before its 100.
    assert 2 <= proxied.count("GET", "/elapsed/") <= 8
    assert time.monotonic() - started < 5


def test_retry_delays_are_bounded_full_jitter():
    policy = RetryPolicy(base_delay=0.1, max_delay=0.3)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.3), (10, 0.3)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range


def test_missing_credentials_and_region_say_what_to_set():
    from botocore.exceptions import NoCredentialsError, NoRegionError

    no_credentials = translate_error(NoCredentialsError(), bucket=BUCKET, key=None, action="list")
    assert type(no_credentials) is StorageError
    assert "no AWS credentials found" in str(no_credentials)
    assert "AWS_PROFILE" in str(no_credentials)
    no_region = translate_error(NoRegionError(), bucket=BUCKET, key=KEY, action="read")
    assert "no AWS region is set (set AWS_DEFAULT_REGION or AWS_PROFILE" in str(no_region)
    assert "does not read AWS_REGION" in str(no_region)
    assert (no_region.bucket, no_region.key) == (BUCKET, KEY)


def test_client_options_are_refused_beside_an_injected_client(s3: Any):
    with pytest.raises(ConfigurationError, match="endpoint_url and region_name configure a client"):
        S3Store(s3, endpoint_url="http://127.0.0.1:1", region_name="eu-west-1")
    with pytest.raises(ConfigurationError, match=r"must be an S3 client .* not str"):
        S3Store(client="not a client")  # type: ignore[arg-type]
    assert S3Store(s3)._client is s3  # a boto3 client as it is
