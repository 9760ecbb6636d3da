"""Idempotent re-runs and ``write_once`` (S3 conditional writes, ``If-None-Match: *``) on moto."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from ceap_stage import ExecutionContext, OutputConflictError, S3Store, stage
from ceap_stage._observability import Observer
from tests.conftest import FAKE_REGION, create_bucket, s3_client


class Item(BaseModel):
    sku: str
    price: float


class Priced(BaseModel):
    sku: str
    price: float
    execution_id: str


def make_stage(store: S3Store, *, write_once: bool, markup: float = 1.0):
    @stage(name="Price", store=store, observer=Observer(), write_once=write_once)
    def price(items: list[Item], ctx: ExecutionContext) -> list[Priced]:
        return [
            Priced(sku=i.sku, price=round(i.price * markup, 2), execution_id=ctx.execution_id)
            for i in items
        ]

    return price


def event(bucket: str, retry_count: int = 0) -> dict[str, Any]:
    return {
        "executionId": "run-idem",
        "currentStage": "Price",
        "previousStage": "Load",
        "workflowBucket": bucket,
        "retryCount": retry_count,
    }


KEY = "executions/run-idem/Price/output.json"


@pytest.fixture
def bucket(moto_server: str) -> str:
    client = s3_client(moto_server)
    name = create_bucket(client)
    client.put_object(
        Bucket=name,
        Key="executions/run-idem/Load/output.json",
        Body=b'[{"sku": "a", "price": 1.5}, {"sku": "b", "price": 20}]',
        ContentType="application/json",
    )
    return name


def store_for(moto_server: str) -> tuple[S3Store, list[dict[str, Any]]]:
    """A store, and the parameters of every PutObject it sends."""
    store = S3Store(endpoint_url=moto_server, region_name=FAKE_REGION)
    puts: list[dict[str, Any]] = []
    store.client.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: puts.append(dict(params))
    )
    return store, puts


def test_a_rerun_writes_the_same_output(moto_server: str, bucket: str):
    client = s3_client(moto_server)
    store, _ = store_for(moto_server)
    handler = make_stage(store, write_once=False)
    first = handler(event(bucket))
    body = client.get_object(Bucket=bucket, Key=KEY)["Body"].read()
    again = handler(event(bucket, retry_count=1))  # a Step Functions retry
    redriven = make_stage(S3Store(endpoint_url=moto_server), write_once=False)(event(bucket))
    assert first == again == redriven
    assert client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == body
    assert first["output"]["sha256"] == again["output"]["sha256"]


def test_write_once_sends_if_none_match_and_treats_identical_output_as_done(
    moto_server: str, bucket: str
):
    client = s3_client(moto_server)
    store, puts = store_for(moto_server)
    handler = make_stage(store, write_once=True)
    first = handler(event(bucket))
    written = client.head_object(Bucket=bucket, Key=KEY)

    second = handler(event(bucket, retry_count=1))

    assert second == first
    assert [p.get("IfNoneMatch") for p in puts] == ["*", "*"]
    after = client.head_object(Bucket=bucket, Key=KEY)
    assert after["ETag"] == written["ETag"]
    assert after["LastModified"] == written["LastModified"]  # S3 refused the second write


def test_write_once_with_different_content_raises_and_keeps_the_existing_output(
    moto_server: str, bucket: str
):
    client = s3_client(moto_server)
    store, _ = store_for(moto_server)
    make_stage(store, write_once=True)(event(bucket))
    existing = client.get_object(Bucket=bucket, Key=KEY)["Body"].read()

    with pytest.raises(OutputConflictError) as info:
        make_stage(store, write_once=True, markup=2.0)(event(bucket))

    error = info.value
    assert not error.retryable
    assert (error.execution_id, error.stage, error.bucket, error.key) == (
        "run-idem",
        "Price",
        bucket,
        KEY,
    )
    assert "write_once" in str(error)
    assert client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == existing


def test_without_write_once_a_rerun_with_other_data_replaces_the_output(
    moto_server: str, bucket: str
):
    client = s3_client(moto_server)
    store, puts = store_for(moto_server)
    make_stage(store, write_once=False)(event(bucket))
    make_stage(store, write_once=False, markup=2.0)(event(bucket))
    assert all("IfNoneMatch" not in p for p in puts)
    body = client.get_object(Bucket=bucket, Key=KEY)["Body"].read()
    assert b'"price":40.0' in body
