"""Fault injection against a real S3 server: moto over HTTP behind :class:`FaultProxy`.

S3Store turns botocore's own retries off (``total_max_attempts=1``) and retries with its
:class:`RetryPolicy`, which has no shared retry quota: every call gets the full policy however
many faults came before it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel

from ceap_stage import ExecutionContext, LocalStore, S3Store, Store, TransientStorageError, stage
from ceap_stage._observability import Observer
from ceap_stage._s3 import RetryPolicy
from tests.conftest import FAKE_REGION, create_bucket, s3_client
from tests.reliability.conftest import FAST_RETRY, FaultProxy, proxied_store


class Order(BaseModel):
    order_id: str
    amount: float
    tags: list[str]


class Scored(BaseModel):
    order_id: str
    score: float
    execution_id: str


def make_score_stage(store: Store):
    @stage(name="Score", store=store, observer=Observer())
    def score(orders: list[Order], ctx: ExecutionContext) -> list[Scored]:
        return [
            Scored(order_id=o.order_id, score=o.amount * len(o.tags), execution_id=ctx.execution_id)
            for o in orders
        ]

    return score


def orders_for(n: int) -> bytes:
    rng = random.Random(n)
    return orjson.dumps(
        [
            {"order_id": f"o-{n}-{i}", "amount": rng.randint(1, 500) / 4, "tags": ["a"] * (i % 3)}
            for i in range(rng.randint(1, 8))
        ]
    )


def event(execution_id: str, bucket: str) -> dict[str, str]:
    return {
        "executionId": execution_id,
        "currentStage": "Score",
        "previousStage": "Filter",
        "workflowBucket": bucket,
    }


def seed_inputs(endpoint: str, bucket: str, executions: int) -> None:
    client = s3_client(endpoint)
    for n in range(executions):
        client.put_object(
            Bucket=bucket,
            Key=f"executions/run-{n:04d}/Filter/output.json",
            Body=orders_for(n),
            ContentType="application/json",
        )


def outputs(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    keys = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="executions/"
        )
        for obj in page.get("Contents", [])
        if obj["Key"].endswith("/Score/output.json")
    ]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_30_percent_faults_200_runs_all_succeed_byte_identical(
    moto_server: str, fault_proxy: FaultProxy, tmp_path: Path
):
    executions = 200
    bucket = create_bucket(s3_client(moto_server))
    seed_inputs(moto_server, bucket, executions)

    # GIVEN a fault-free reference run (a local store holding the same inputs)
    local = LocalStore(tmp_path)
    for n in range(executions):
        local.put("ref", f"executions/run-{n:04d}/Filter/output.json", orders_for(n))
    clean = make_score_stage(local)
    reference = [clean(event(f"run-{n:04d}", "ref")) for n in range(executions)]

    # WHEN the same runs go to moto through a proxy failing 30% of requests (503, 500, dropped)
    fault_proxy.rate = 0.3
    faulty = make_score_stage(proxied_store(fault_proxy))
    results = [faulty(event(f"run-{n:04d}", bucket)) for n in range(executions)]

    # THEN every run succeeded, with the same pointers and byte-identical outputs
    assert fault_proxy.faults >= 100, fault_proxy.counts  # the faults really happened
    assert {"503", "500", "drop"} <= set(fault_proxy.counts)
    for got, want in zip(results, reference, strict=True):
        assert got["status"] == "SUCCESS"
        assert got["output"]["sha256"] == want["output"]["sha256"]
        assert got["recordsProcessed"] == want["recordsProcessed"]
    written = outputs(moto_server, bucket)
    assert len(written) == executions
    for n in range(executions):
        key = f"executions/run-{n:04d}/Score/output.json"
        assert written[key] == local.get("ref", key).body  # type: ignore[union-attr]


def test_no_retry_quota_the_last_calls_retry_like_the_first(
    moto_server: str, fault_proxy: FaultProxy
):
    # botocore's standard/adaptive modes share one retry quota per client; once drained, the
    # client stops retrying. S3Store's policy keeps retrying: hundreds of faults in, a call that
    # fails several times in a row still succeeds.
    bucket = create_bucket(s3_client(moto_server))
    patient = RetryPolicy(max_attempts=40, base_delay=0.001, max_delay=0.002, max_elapsed=10)
    store = proxied_store(fault_proxy, patient)  # one store, one client, all along
    fault_proxy.rate = 0.5
    for n in range(100):
        store.put(bucket, f"warm/{n}", b"x")
    assert fault_proxy.faults >= 100
    fault_proxy.rate = 0.7  # most attempts fail now
    before = fault_proxy.faults
    for n in range(10):
        store.put(bucket, f"late/{n}", b"late")
    assert fault_proxy.faults - before >= 10  # the late calls were retried, many times
    assert [store.get(bucket, f"late/{n}").body for n in range(10)] == [b"late"] * 10  # type: ignore[union-attr]


def test_botocore_retries_are_off_in_the_client(moto_server: str):
    store = S3Store(endpoint_url=moto_server, region_name=FAKE_REGION)
    assert store.client.meta.config.retries["total_max_attempts"] == 1  # type: ignore[attr-defined]


def test_100_percent_faults_every_run_raises_transient_and_writes_nothing(
    moto_server: str, fault_proxy: FaultProxy
):
    executions = 40
    bucket = create_bucket(s3_client(moto_server))
    seed_inputs(moto_server, bucket, executions)
    policy = RetryPolicy(max_attempts=6, base_delay=0.002, max_delay=0.02, max_elapsed=0.5)
    failing = make_score_stage(proxied_store(fault_proxy, retry=policy))
    fault_proxy.rate = 1.0

    for n in range(executions):
        started = time.monotonic()
        with pytest.raises(TransientStorageError) as info:
            failing(event(f"run-{n:04d}", bucket))
        elapsed = time.monotonic() - started
        # The bound: max_elapsed, plus one back-off and one (here quick) attempt, with slack for
        # a loaded machine.
        assert elapsed < policy.max_elapsed + policy.max_delay + 2.0
        assert info.value.retryable
        assert info.value.execution_id == f"run-{n:04d}"
        assert info.value.stage == "Score"
        assert "attempts" in info.value.detail

    assert outputs(moto_server, bucket) == {}
    assert fault_proxy.counts["forwarded"] == 0
    # Each run gave up on its read: never more than max_attempts requests per run.
    assert executions * 2 <= fault_proxy.faults <= executions * policy.max_attempts


def test_writes_fail_after_the_read_succeeded_leave_no_output(
    moto_server: str, fault_proxy: FaultProxy
):
    # The read goes through; every write then fails: no output.json, a retryable error.
    bucket = create_bucket(s3_client(moto_server))
    seed_inputs(moto_server, bucket, 1)
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001, max_elapsed=1.0)
    store = proxied_store(fault_proxy, retry=policy)
    score = make_score_stage(store)

    real_put = store.put

    def put_through_outage(*args, **kwargs):
        fault_proxy.rate = 1.0
        return real_put(*args, **kwargs)

    store.put = put_through_outage  # type: ignore[method-assign]
    with pytest.raises(TransientStorageError):
        score(event("run-0000", bucket))
    assert outputs(moto_server, bucket) == {}


def test_a_body_cut_mid_stream_is_resumed_with_a_range_request(
    moto_server: str, fault_proxy: FaultProxy
):
    # A streaming read whose connection drops half-way through the body resumes where it was.
    bucket = create_bucket(s3_client(moto_server))
    body = b"".join(orjson.dumps({"n": n, "pad": "x" * 50}) + b"\n" for n in range(20_000))
    s3_client(moto_server).put_object(Bucket=bucket, Key="big.jsonl", Body=body)
    store = S3Store(
        endpoint_url=fault_proxy.endpoint_url,
        region_name=FAKE_REGION,
        retry=FAST_RETRY,
        expected_bucket_owner="111122223333",
    )
    gets: list[dict[str, object]] = []
    store.client.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: gets.append(dict(params))
    )
    fault_proxy.kinds = ("truncate",)
    fault_proxy.rate = 0.5
    for _ in range(3):
        opened = store.open_object(bucket, "big.jsonl")
        assert opened is not None
        with opened:
            assert opened.stream.read() == body
    assert fault_proxy.counts["truncate"] >= 1
    resumed = [g for g in gets if "Range" in g]
    assert resumed  # the rest was fetched, not the whole object again
    assert all(str(g["Range"]).startswith("bytes=") and g["IfMatch"] for g in resumed)
    assert all(g["ExpectedBucketOwner"] == "111122223333" for g in gets)


def test_the_default_policy_bound_is_the_documented_one():
    policy = RetryPolicy()
    ceilings = [min(policy.max_delay, policy.base_delay * 2 ** (n - 1)) for n in range(1, 8)]
    assert round(sum(ceilings), 2) == 5.15  # docs/reliability.md
    for attempt, ceiling in enumerate(ceilings, start=1):
        assert all(0 <= policy.delay(attempt) <= ceiling for _ in range(200))
    assert (policy.max_attempts, policy.max_elapsed, policy.max_delay) == (8, 10.0, 2.0)


class Row(BaseModel):
    n: int
    text: str


def test_a_streaming_stage_with_partitioned_output_survives_faults(
    moto_server: str, fault_proxy: FaultProxy, tmp_path: Path
):
    # Input read in chunks (bodies cut mid-way, resumed), output written as parts + manifest,
    # every request at risk: the result equals a fault-free run's, and no stale part remains.
    client = s3_client(moto_server)
    bucket = create_bucket(client)
    body = b"".join(orjson.dumps({"n": n, "text": "t" * 40}) + b"\n" for n in range(6000))
    key = "executions/run-stream/Load/output.json"
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    local = LocalStore(tmp_path)
    local.put(bucket, key, body, content_type="application/x-ndjson")

    def make(store: Store):
        @stage(name="Copy", store=store, observer=Observer(), part_bytes=32 * 1024)
        def copy(rows: Iterator[Row]) -> Iterator[Row]:
            for row in rows:
                yield Row(n=row.n * 3, text=row.text.upper())

        return copy

    ev = {
        "executionId": "run-stream",
        "currentStage": "Copy",
        "previousStage": "Load",
        "workflowBucket": bucket,
    }
    want = make(local)(ev)
    fault_proxy.kinds = ("503", "500", "drop", "truncate")
    fault_proxy.rate = 0.3
    got = make(proxied_store(fault_proxy))(ev)
    got_again = make(proxied_store(fault_proxy))(ev)  # a retry of the same stage

    assert got == want == got_again
    assert fault_proxy.faults >= 5
    listed = {
        o["Key"]
        for o in client.list_objects_v2(Bucket=bucket, Prefix="executions/run-stream/Copy/")[
            "Contents"
        ]
    }
    assert listed == set(local.list_keys(bucket, "executions/run-stream/Copy/"))
    for k in listed:
        assert client.get_object(Bucket=bucket, Key=k)["Body"].read() == local.get(bucket, k).body  # type: ignore[union-attr]
