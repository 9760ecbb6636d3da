"""Committing a partitioned output: the manifest written last, then stale attempts removed.

Each run writes its parts under ``executions/{id}/{stage}/parts/{attempt}/``, with a fresh attempt
id, and only those parts go into the manifest. Once the manifest (``output.json``, the commit
marker) is written, the parts of earlier attempts under the stage's parts prefix are deleted. A
run that fails before the manifest leaves the previous ``output.json`` and its parts untouched.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ceap_stage._formats import MANIFEST, Manifest, ManifestPart
from ceap_stage._runtime import _meta_value
from ceap_stage._settings import Settings, resolve_settings
from ceap_stage._store import LocalStore, Store, store_for

from ._args import GlueArgs

__all__ = ["GlueOutput", "commit_manifest", "default_store", "new_attempt_id", "spark_path"]


def default_store(settings: Settings | None = None) -> Store:
    """The store the settings name (``CEAP_STORE``): a :class:`~ceap_stage.LocalStore` or S3.

    Args:
        settings: The job's settings (default: resolved from the environment now).

    Example:
        >>> from ceap_stage._settings import Settings
        >>> default_store(Settings(store_url="file:///tmp/ceap"))
        LocalStore('/tmp/ceap')
    """
    return store_for(settings or resolve_settings())


def spark_path(bucket: str, key: str, store: Store | None = None) -> str:
    """The path Spark reads or writes for ``s3://bucket/key`` under ``store``.

    With a :class:`~ceap_stage.LocalStore` (``CEAP_STORE=file:///root``) it is the local file's
    ``file://`` URL; on S3 (AWS Glue) it is ``s3://bucket/key`` as it is.

    Example:
        >>> from ceap_stage import LocalStore
        >>> spark_path("wf-bucket", "executions/r/S/output.json", LocalStore("/data"))
        'file:///data/wf-bucket/executions/r/S/output.json'
    """
    return (store or default_store()).uri(bucket, key.rstrip("/"))


def new_attempt_id() -> str:
    """A fresh, time-ordered id for one write attempt (a path segment under ``parts/``).

    Example:
        >>> len(new_attempt_id().split("-"))
        2
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class GlueOutput:
    """What a Glue stage wrote: the manifest's location, record count and parts.

    Example:
        >>> out = GlueOutput("run-1", "Enrich", "wf-bucket", "executions/run-1/Enrich/output.json",
        ...                  2, (ManifestPart("executions/run-1/Enrich/parts/a/part-0.json", 40),),
        ...                  "a", 120)
        >>> out.total_bytes, out.to_result()["recordsProcessed"]
        (40, 2)
    """

    execution_id: str
    stage: str
    bucket: str
    key: str
    records: int
    parts: tuple[ManifestPart, ...]
    attempt: str
    manifest_bytes: int
    manifest_sha256: str = ""

    @property
    def total_bytes(self) -> int:
        """The size of all parts together."""
        return sum(p.bytes for p in self.parts)

    def to_result(self) -> dict[str, Any]:
        """The pointer a Lambda stage returns (docs/contract.md section 4), format ``manifest``."""
        return {
            "status": "SUCCESS",
            "stage": self.stage,
            "recordsProcessed": self.records,
            "executionId": self.execution_id,
            "output": {
                "bucket": self.bucket,
                "key": self.key,
                "bytes": self.manifest_bytes,
                "sha256": self.manifest_sha256,
                "format": "manifest",
            },
        }


def attempt_prefix(args: GlueArgs, attempt: str) -> str:
    """The prefix of one attempt's parts: ``executions/{id}/{stage}/parts/{attempt}/``."""
    return f"{args.parts_prefix}{attempt}/"


def commit_manifest(
    store: Store, args: GlueArgs, attempt: str, parts: Sequence[ManifestPart], records: int
) -> GlueOutput:
    """Write the manifest (the commit marker), then delete parts of earlier attempts.

    Raises:
        StorageError: The store refused the manifest or the clean-up.
    """
    manifest = Manifest(records=records, parts=tuple(parts))
    put = store.put(
        args.output_bucket,
        args.output_key,
        manifest.to_bytes(),
        content_type=MANIFEST,
        metadata={
            "ceap-execution-id": _meta_value(args.execution_id),
            "ceap-stage": _meta_value(args.current_stage),
            "ceap-records": str(records),
            "ceap-attempt": attempt,
        },
    )
    _delete_stale(store, args, attempt)
    return GlueOutput(
        execution_id=args.execution_id,
        stage=args.current_stage,
        bucket=args.output_bucket,
        key=args.output_key,
        records=records,
        parts=manifest.parts,
        attempt=attempt,
        manifest_bytes=put.bytes,
        manifest_sha256=put.sha256,
    )


def _delete_stale(store: Store, args: GlueArgs, attempt: str) -> None:
    if isinstance(store, LocalStore):
        # One pass over the directory: also removes what a store listing skips (Spark's hidden
        # .part-*.crc checksum files) and the emptied attempt directories.
        root = store.path(args.output_bucket, args.parts_prefix.rstrip("/"))
        if root.is_dir():
            for child in root.iterdir():
                if child.name == attempt:
                    continue
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        return
    keep = attempt_prefix(args, attempt)
    stale = [
        k for k in store.list_keys(args.output_bucket, args.parts_prefix) if k[: len(keep)] != keep
    ]
    store.delete(args.output_bucket, stale)
