"""Fixtures of the runtime tests: the same scenario on a LocalStore and on S3 (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ceap_stage import LocalStore, Store

from ._helpers import BUCKET

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class Backend:
    """A store plus raw access to what it holds, to arrange inputs and inspect outputs."""

    name: str
    store: Store
    bucket: str
    root: Path | None = None
    client: S3Client | None = None

    def put_raw(self, key: str, body: bytes, content_type: str | None = None) -> None:
        """Write an object as another system would (no ceap-stage code involved)."""
        if self.client is not None:
            extra = {"ContentType": content_type} if content_type else {}
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)  # type: ignore[arg-type]
            return
        assert self.root is not None
        path = self.root / self.bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        if content_type is not None and content_type != "application/json":
            meta = path.with_name(f".{path.name}.ceap-meta")
            meta.write_text(f'{{"contentType": "{content_type}"}}')

    def read(self, key: str) -> bytes | None:
        """The raw bytes at ``key``, or None."""
        if self.client is not None:
            from botocore.exceptions import ClientError

            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError:
                return None
        assert self.root is not None
        path = self.root / self.bucket / key
        return path.read_bytes() if path.is_file() else None

    def all_keys(self) -> list[str]:
        """Every key in the bucket (sidecars excluded)."""
        if self.client is not None:
            listing = self.client.list_objects_v2(Bucket=self.bucket)
            return sorted(o["Key"] for o in listing.get("Contents", []))
        assert self.root is not None
        base = self.root / self.bucket
        return sorted(
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


@pytest.fixture(params=["local", "mock_aws"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The same test on a LocalStore and on S3 (moto in-process)."""
    if request.param == "local":
        (tmp_path / BUCKET).mkdir()
        yield Backend("local", LocalStore(tmp_path), BUCKET, root=tmp_path)
        return
    from moto import mock_aws

    from ceap_stage import S3Store
    from tests.conftest import s3_client

    with mock_aws():
        client = s3_client()
        client.create_bucket(Bucket=BUCKET)
        yield Backend("mock_aws", S3Store(), BUCKET, client=client)
