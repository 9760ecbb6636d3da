"""The S3 store, and the one place where botocore's errors become the contract's errors.

Retries: the client is built with botocore retries off and :class:`RetryPolicy` retries
transient failures itself (exponential backoff with full jitter, bounded attempts and elapsed
time). botocore's ``standard`` and ``adaptive`` modes share one retry quota per client that a
sustained fault rate drains, after which they stop retrying at all; a policy of our own keeps
retrying every call the same way and gives up within a bounded, documented time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar, cast

from ._errors import (
    CeapStageError,
    ConfigurationError,
    OutputConflictError,
    StorageError,
    TransientStorageError,
)
from ._formats import JSON
from ._settings import Settings, resolve_settings
from ._store import ObjectInfo, OpenedObject, PutResult, Store, StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["RetryPolicy", "S3Store", "translate_error"]

T = TypeVar("T")

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT = frozenset({"PreconditionFailed", "412"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "ConditionalRequestConflict",
        "500",
        "502",
        "503",
        "504",
    }
)


class RetryPolicy(NamedTuple):
    """How :class:`S3Store` retries transient S3 failures.

    Attempt ``n`` (from 1) that fails transiently sleeps ``uniform(0, min(max_delay,
    base_delay * 2 ** (n - 1)))`` before the next, until ``max_attempts`` calls were made or
    ``max_elapsed`` seconds passed; then :class:`TransientStorageError` is raised. With the defaults
    a call gives up after at most 8 attempts and at most 5.15 s of back-off in all; no retry
    starts after 10 s, so a call never takes longer than ``max_elapsed + max_delay`` plus one
    attempt's connect and read timeouts (10 + 2 + 5 + 30 = 47 s with ``S3Store``'s defaults).
    See docs/reliability.md.

    Args:
        max_attempts: Calls in all, the first included.
        base_delay: Back-off ceiling of the first retry, in seconds.
        max_delay: Back-off ceiling of any retry, in seconds.
        max_elapsed: No retry starts after this many seconds since the first attempt.

    Example:
        >>> from ceap_stage import RetryPolicy, S3Store
        >>> store = S3Store(retry=RetryPolicy(max_attempts=3, max_elapsed=2.0))
        >>> store.retry.max_attempts
        3
    """

    max_attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 2.0
    max_elapsed: float = 10.0

    def delay(self, attempt: int) -> float:
        """The back-off after failed attempt ``attempt`` (1-based), with full jitter."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def _is_transient_botocore(exc: Exception) -> bool:
    from botocore import exceptions as bce

    return isinstance(
        exc,
        (
            bce.ConnectionError,  # EndpointConnectionError, ConnectionClosedError, timeouts...
            bce.HTTPClientError,
            bce.ResponseStreamingError,
            bce.IncompleteReadError,
            bce.ReadTimeoutError,
            bce.ConnectTimeoutError,
        ),
    ) or (isinstance(exc, OSError) and not isinstance(exc, PermissionError))


#: What to set when botocore finds no credentials or no region (by the exception's class name).
_SETUP_HINTS: Final = {
    "NoCredentialsError": ": no AWS credentials found (set AWS_PROFILE or the "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables, or run `aws configure`)",
    "NoRegionError": ": no AWS region is set (set AWS_DEFAULT_REGION or AWS_PROFILE; boto3 "
    "does not read AWS_REGION)",
}


def translate_error(exc: Exception, *, bucket: str, key: str | None, action: str) -> CeapStageError:
    """Map a botocore exception to the contract's error (the one translation boundary).

    Args:
        exc: What botocore raised.
        bucket: The bucket of the call.
        key: The key (or prefix) of the call.
        action: A few words naming the call, for the message ("read", "write", ...).
    """
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _CONFLICT or status == 412:
            return OutputConflictError(
                "an object already exists and write-once is on", bucket=bucket, key=key
            )
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return TransientStorageError(
                f"S3 {action} kept failing ({code or status}) after retries", bucket=bucket, key=key
            )
        if code == "NoSuchBucket":
            return StorageError(
                f"S3 refused the {action}: bucket {bucket} does not exist (NoSuchBucket)",
                bucket=bucket,
                key=key,
            )
        return StorageError(f"S3 refused the {action} ({code or status})", bucket=bucket, key=key)
    if _is_transient_botocore(exc):
        return TransientStorageError(
            f"S3 {action} kept failing ({type(exc).__name__}) after retries",
            bucket=bucket,
            key=key,
        )
    reason = _SETUP_HINTS.get(type(exc).__name__, f" ({type(exc).__name__})")
    return StorageError(f"S3 {action} failed{reason}", bucket=bucket, key=key)


def _is_not_found(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in _NOT_FOUND


class S3Store(Store):
    """Objects in Amazon S3 (or anything that speaks its API).

    The S3 client is created on first use (never at import), from a botocore session of its own
    (boto3 is not imported: its resource layer and transfer manager cost cold-start time and the
    store needs neither), and reused by this store; pass ``client=`` to inject one (a boto3
    client is fine). ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_S3`` are honoured by botocore
    itself; ``endpoint_url=`` overrides them.

    Args:
        client: A boto3 S3 client to use instead of creating one.
        endpoint_url: Endpoint for the created client (e.g. a local S3 server).
        region_name: Region for the created client.
        expected_bucket_owner: Account id sent as ``ExpectedBucketOwner`` on every call
            (default: ``settings``', else ``CEAP_EXPECTED_BUCKET_OWNER``).
        sse_kms_key_id: KMS key for SSE-KMS on writes (default: ``settings``', else
            ``CEAP_SSE_KMS_KEY_ID``).
        settings: Where the two defaults above come from (default: resolved from the
            environment, see :func:`~ceap_stage._settings.resolve_settings`).
        retry: How transient failures are retried (see :class:`RetryPolicy`).
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for a response.

    Raises:
        ConfigurationError: ``client=`` together with ``endpoint_url=`` or ``region_name=``
            (options of a client the store creates), or a ``client=`` that is not an S3 client.

    >>> store = S3Store(endpoint_url="http://127.0.0.1:5000")  # no client is created yet
    """

    def __init__(
        self,
        client: S3Client | None = None,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        expected_bucket_owner: str | None = None,
        sse_kms_key_id: str | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        settings: Settings | None = None,
    ) -> None:
        if client is not None:
            given = [
                n for n, v in (("endpoint_url", endpoint_url), ("region_name", region_name)) if v
            ]
            if given:
                raise ConfigurationError(
                    f"S3Store: {' and '.join(given)} configure a client the store creates; with "
                    "client= the client is used as it is (create it with those options instead)"
                )
            if not callable(getattr(client, "get_object", None)):
                raise ConfigurationError(
                    f"S3Store: client= must be an S3 client (botocore or boto3), not "
                    f"{type(client).__name__}"
                )
        self._client = client
        self._endpoint_url = endpoint_url
        self._region_name = region_name
        if settings is None and not (expected_bucket_owner and sse_kms_key_id):
            settings = resolve_settings()
        self.expected_bucket_owner = expected_bucket_owner or (
            settings.expected_bucket_owner if settings is not None else None
        )
        self.sse_kms_key_id = sse_kms_key_id or (
            settings.sse_kms_key_id if settings is not None else None
        )
        self.retry = retry or RetryPolicy()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store(endpoint_url={self._endpoint_url!r})"

    @property
    def client(self) -> S3Client:
        """The S3 client (botocore's), created on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    # botocore, not boto3: the same client without boto3's resource layer and
                    # S3 transfer manager, which would add ~30 ms of imports to every cold start.
                    import botocore.session
                    from botocore.config import Config

                    config = Config(
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        connect_timeout=self._connect_timeout,
                        read_timeout=self._read_timeout,
                        max_pool_connections=32,
                    )
                    client = botocore.session.Session().create_client(
                        "s3",
                        endpoint_url=self._endpoint_url,
                        region_name=self._region_name,
                        config=config,
                    )
                    self._client = cast("S3Client", client)
        return self._client

    def close(self) -> None:
        """Close the client's pooled HTTP connections (if a client was created).

        The store stays usable: its next call opens a new connection. Used after a SnapStart
        restore, so that restored environments never share a connection from the snapshot.
        """
        client = self._client
        if client is not None:
            client.close()

    def _owner(self) -> dict[str, Any]:
        owner = self.expected_bucket_owner
        return {"ExpectedBucketOwner": owner} if owner else {}

    def _call(self, action: str, bucket: str, key: str | None, call: Callable[[], T]) -> T:
        """Run ``call`` with the retry policy, translating every failure at this one place."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except CeapStageError:
                raise
            except Exception as exc:
                error = translate_error(exc, bucket=bucket, key=key, action=action)
                elapsed = time.monotonic() - started
                if (
                    not error.retryable
                    or attempt >= self.retry.max_attempts
                    or elapsed >= self.retry.max_elapsed
                ):
                    if error.retryable:
                        error.detail += f" ({attempt} attempts in {elapsed:.1f}s)"
                    raise error from exc
                time.sleep(self.retry.delay(attempt))

    def _get_object(self, bucket: str, key: str) -> Any:
        """One ``GetObject`` call (no retry here): the response, or None for a missing key."""
        try:
            return self.client.get_object(Bucket=bucket, Key=key, **self._owner())
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise

    def get(self, bucket: str, key: str) -> StoredObject | None:
        def call() -> StoredObject | None:
            # The body is read inside the retried call: a cut-off body is fetched again.
            response = self._get_object(bucket, key)
            if response is None:
                return None
            body = response["Body"].read()
            return StoredObject(body, response.get("ContentType"), response.get("Metadata", {}))

        return self._call("read", bucket, key, call)

    def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        """Open an object for streaming reads.

        The body is read as it is consumed. A transient failure in the middle of the body (a
        dropped connection, a truncated response) does not start over: the rest is fetched with a
        ranged ``GetObject`` pinned to the object's ETag, under the same :class:`RetryPolicy`.
        """

        response = self._call("read", bucket, key, lambda: self._get_object(bucket, key))
        if response is None:
            return None
        raw = _ResumableBody(self, bucket, key, response)
        return OpenedObject(
            io.BufferedReader(raw, buffer_size=1 << 20),
            response.get("ContentType"),
            response.get("ContentLength"),
        )

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str = JSON,
        metadata: Mapping[str, str] | None = None,
        if_none_match: bool = False,
    ) -> PutResult:
        digest = hashlib.sha256(body).digest()
        extra: dict[str, Any] = self._owner()
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if self.sse_kms_key_id:
            extra["ServerSideEncryption"] = "aws:kms"
            extra["SSEKMSKeyId"] = self.sse_kms_key_id
        if metadata:
            extra["Metadata"] = dict(metadata)

        def call() -> None:
            self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
                **extra,
            )

        self._call("write", bucket, key, call)
        return PutResult(len(body), digest.hex())

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        def call() -> ObjectInfo | None:
            try:
                r = self.client.head_object(Bucket=bucket, Key=key, **self._owner())
            except Exception as exc:
                if _is_not_found(exc):
                    return None
                raise
            return ObjectInfo(
                int(r.get("ContentLength", 0)),
                r.get("ContentType"),
                r.get("Metadata", {}),
                r.get("LastModified"),
            )

        return self._call("read", bucket, key, call)

    def get_range(self, bucket: str, key: str, start: int, stop: int | None = None) -> bytes | None:
        if stop is not None and stop <= start:
            return b"" if self.head(bucket, key) is not None else None
        span = f"bytes={start}-" if stop is None else f"bytes={start}-{stop - 1}"

        def call() -> bytes | None:
            from botocore.exceptions import ClientError

            try:
                response = self.client.get_object(
                    Bucket=bucket, Key=key, Range=span, **self._owner()
                )
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("InvalidRange", "416"):
                    return b""  # the range starts past the end
                if _is_not_found(exc):
                    return None
                raise
            body: bytes = response["Body"].read()
            return body

        return self._call("read", bucket, key, call)

    def list_prefixes(self, bucket: str, prefix: str) -> list[str]:
        def call() -> list[str]:
            found: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/", **self._owner())
            for page in pages:
                found.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
            return sorted(found)

        return self._call("list", bucket, prefix, call)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        def call() -> list[str]:
            keys: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, **self._owner()):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
            return sorted(keys)

        return self._call("list", bucket, prefix, call)

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        pending = list(keys)
        for start in range(0, len(pending), 1000):
            batch = [{"Key": k} for k in pending[start : start + 1000]]

            def call(batch: list[dict[str, str]] = batch) -> None:
                response = self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": batch, "Quiet": True},  # type: ignore[typeddict-item]
                    **self._owner(),
                )
                if response.get("Errors"):
                    raise StorageError(
                        f"S3 refused to delete {len(response['Errors'])} object(s)",
                        bucket=bucket,
                        key=response["Errors"][0].get("Key"),
                    )

            self._call("delete", bucket, batch[0]["Key"], call)


class _ResumableBody(io.RawIOBase):
    """A ``GetObject`` body that resumes with a ranged request after a transient read failure."""

    def __init__(self, store: S3Store, bucket: str, key: str, response: Any) -> None:
        super().__init__()
        self._store = store
        self._bucket = bucket
        self._key = key
        self._body: Any = response["Body"]
        self._etag: str | None = response.get("ETag")
        self._size: int | None = response.get("ContentLength")
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        started = time.monotonic()
        failures = 0
        while True:
            try:
                data = self._body.read(len(view))
            except Exception as exc:
                error = translate_error(exc, bucket=self._bucket, key=self._key, action="read")
                failures += 1
                policy = self._store.retry
                if (
                    not error.retryable
                    or failures >= policy.max_attempts
                    or time.monotonic() - started >= policy.max_elapsed
                ):
                    raise error from exc
                time.sleep(policy.delay(failures))
                self._reopen()
                continue
            if not data and self._size is not None and self._position < self._size:
                # The connection ended early without an error: fetch the rest.
                failures += 1
                if failures >= self._store.retry.max_attempts:
                    raise TransientStorageError(
                        f"S3 read ended after {self._position} of {self._size} bytes",
                        bucket=self._bucket,
                        key=self._key,
                    )
                self._reopen()
                continue
            n = len(data)
            view[:n] = data
            self._position += n
            return n

    def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        extra = self._store._owner()
        if self._etag:
            extra["IfMatch"] = self._etag

        def call() -> Any:
            from botocore.exceptions import ClientError

            try:
                return self._store.client.get_object(
                    Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-", **extra
                )["Body"]
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in _CONFLICT or code in _NOT_FOUND:
                    raise StorageError(
                        "the object changed or disappeared while it was being read",
                        bucket=self._bucket,
                        key=self._key,
                    ) from exc
                raise

        self._body = self._store._call("read", self._bucket, self._key, call)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()
