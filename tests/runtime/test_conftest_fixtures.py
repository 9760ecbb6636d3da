"""The shared fixtures of tests/conftest.py do what they promise."""

from __future__ import annotations

import os

from tests.conftest import create_bucket, new_bucket_name


def test_fake_credentials_and_no_inherited_configuration():
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "CEAP_STORE" not in os.environ
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_moto_server_is_a_real_http_s3_on_loopback(moto_server, moto_server_client):
    assert moto_server.startswith("http://127.0.0.1:")
    bucket = create_bucket(moto_server_client)
    moto_server_client.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert moto_server_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_moto_bucket_is_fresh_each_time(moto_bucket, moto_server_client):
    assert moto_server_client.list_objects_v2(Bucket=moto_bucket).get("KeyCount") == 0
    assert new_bucket_name() != new_bucket_name()
