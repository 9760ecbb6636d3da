"""A store wrapper that counts requests and the bytes read through it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

from ceap_stage._formats import JSON
from ceap_stage._store import ObjectInfo, OpenedObject, PutResult, Store, StoredObject

__all__ = ["CountingStore"]


class _CountingStream:
    def __init__(self, stream: BinaryIO, owner: CountingStore, key: str) -> None:
        self._stream = stream
        self._owner = owner
        self._key = key

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._owner._read(self._key, len(data))
        return data

    def close(self) -> None:
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class CountingStore(Store):
    """Wraps a store; counts each request by verb and the body bytes read through it.

    For measures that count rather than time: ``ceap-stage show --head 10`` reads little,
    listing executions makes a number of requests that grows with the executions, not the
    objects.

    Args:
        inner: The store that serves the requests.

    Example:
        >>> import tempfile
        >>> from ceap_stage import LocalStore
        >>> store = CountingStore(LocalStore(tempfile.mkdtemp()))
        >>> _ = store.put("bucket", "k.json", b"[1, 2]")
        >>> store.get("bucket", "k.json").body, store.bytes_read, store.requests["get"]
        (b'[1, 2]', 6, 1)
        >>> dict(store.bytes_read_by_key)
        {'k.json': 6}
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        #: Requests made, by verb (``get``, ``head``, ``list_prefixes``, ...).
        self.requests: Counter[str] = Counter()
        #: Body bytes read (whole objects, ranges and streams as they are read).
        self.bytes_read = 0
        #: The same, by key.
        self.bytes_read_by_key: Counter[str] = Counter()

    def _read(self, key: str, size: int) -> None:
        self.bytes_read += size
        self.bytes_read_by_key[key] += size

    def __repr__(self) -> str:
        return f"CountingStore({self.inner!r})"

    @property
    def total_requests(self) -> int:
        """Every request made so far."""
        return sum(self.requests.values())

    def get(self, bucket: str, key: str) -> StoredObject | None:
        self.requests["get"] += 1
        obj = self.inner.get(bucket, key)
        if obj is not None:
            self._read(key, len(obj.body))
        return obj

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
        self.requests["put"] += 1
        return self.inner.put(
            bucket,
            key,
            body,
            content_type=content_type,
            metadata=metadata,
            if_none_match=if_none_match,
        )

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        self.requests["list_keys"] += 1
        return self.inner.list_keys(bucket, prefix)

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        self.requests["delete"] += 1
        self.inner.delete(bucket, keys)

    def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        self.requests["open"] += 1
        opened = self.inner.open_object(bucket, key)
        if opened is None:
            return None
        stream: Any = _CountingStream(opened.stream, self, key)
        return OpenedObject(stream, opened.content_type, opened.size)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        self.requests["head"] += 1
        return self.inner.head(bucket, key)

    def get_range(self, bucket: str, key: str, start: int, stop: int | None = None) -> bytes | None:
        self.requests["get_range"] += 1
        data = self.inner.get_range(bucket, key, start, stop)
        if data is not None:
            self._read(key, len(data))
        return data

    def list_prefixes(self, bucket: str, prefix: str) -> list[str]:
        self.requests["list_prefixes"] += 1
        return self.inner.list_prefixes(bucket, prefix)

    def uri(self, bucket: str, key: str) -> str:
        return self.inner.uri(bucket, key)
