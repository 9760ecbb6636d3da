"""An :class:`S3Store` on moto's in-process S3, with a bucket of its own."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

from ceap_stage._s3 import S3Store

__all__ = ["MotoS3Store", "mock_s3_store"]

_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}
# A custom endpoint would send requests past moto's interception.
_ENDPOINTS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class MotoS3Store(S3Store):
    """An :class:`~ceap_stage.S3Store` with the name of the bucket made for it.

    The ``s3_store`` fixture yields one; :func:`~ceap_stage.testing.run_stage` uses its
    ``bucket`` as the workflow bucket.

    Args:
        bucket: The bucket this store was made with.
        **options: As for :class:`~ceap_stage.S3Store`.

    Example:
        >>> MotoS3Store("ceap-test-1").bucket
        'ceap-test-1'
    """

    def __init__(self, bucket: str, **options: Any) -> None:
        super().__init__(**options)
        self.bucket = bucket

    def __repr__(self) -> str:
        return f"MotoS3Store(bucket={self.bucket!r})"


@contextlib.contextmanager
def mock_s3_store(bucket: str | None = None) -> Iterator[MotoS3Store]:
    """Start moto's in-process AWS mock and yield a store with a fresh bucket.

    While the block runs, fake credentials are set and ``AWS_ENDPOINT_URL(_S3)`` unset (restored
    afterwards), so nothing can reach a real account.

    Args:
        bucket: The bucket name (default: ``ceap-test-`` and a random suffix).

    Raises:
        ModuleNotFoundError: moto is not installed (``pip install 'moto[s3]'``).

    Example:
        >>> with mock_s3_store("ceap-doc-bucket") as store:
        ...     store.put(store.bucket, "executions/r/S/output.json", b"[1]").bytes
        3
    """
    from moto import mock_aws

    saved = {name: os.environ.get(name) for name in (*_FAKE_CREDENTIALS, *_ENDPOINTS)}
    region_was_set = "AWS_DEFAULT_REGION" in os.environ
    try:
        os.environ.update(_FAKE_CREDENTIALS)
        for name in _ENDPOINTS:
            os.environ.pop(name, None)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            name = bucket or f"ceap-test-{uuid.uuid4().hex[:16]}"
            region = os.environ.get("AWS_REGION") or os.environ["AWS_DEFAULT_REGION"]
            store = MotoS3Store(name, region_name=region)
            if region == "us-east-1":
                store.client.create_bucket(Bucket=name)
            else:
                store.client.create_bucket(
                    Bucket=name,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
            yield store
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not region_was_set:
            os.environ.pop("AWS_DEFAULT_REGION", None)
