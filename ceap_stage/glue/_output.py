"""A Glue job's output: its attempt (the writer id of its parts) and the commit.

Each run writes its parts under ``executions/{id}/{stage}/parts/{attempt}/``, with a fresh attempt
id as its writer id, and commits them with the stage I/O layer's one protocol
(:func:`ceap_stage._io.commit_manifest`, the same as a Lambda stage's): the manifest
(``output.json``) is written last, then parts it does not reference are deleted. A run that fails
before the manifest leaves the previous ``output.json`` and its parts untouched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ceap_stage._formats import ManifestPart
from ceap_stage._io import OutputRef, output_metadata
from ceap_stage._io import commit_manifest as _commit
from ceap_stage._settings import Settings, resolve_settings
from ceap_stage._store import Store, store_for

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


def output_ref(args: GlueArgs) -> OutputRef:
    """The output a job writes."""
    return OutputRef(args.output_bucket, args.execution_id, args.current_stage)


def attempt_prefix(args: GlueArgs, attempt: str) -> str:
    """The prefix of one attempt's parts: ``executions/{id}/{stage}/parts/{attempt}/``."""
    return output_ref(args).writer_prefix(attempt)


def commit_manifest(
    store: Store, args: GlueArgs, attempt: str, parts: Sequence[ManifestPart], records: int
) -> GlueOutput:
    """Write the manifest (the commit marker), then delete parts it does not reference.

    Raises:
        StorageError: The store refused the manifest.
    """
    ref = output_ref(args)
    metadata = output_metadata(ref, records, extra={"ceap-attempt": attempt})
    manifest, put = _commit(store, ref, parts, records, metadata=metadata)
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
