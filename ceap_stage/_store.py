"""Storage behind one small interface: :class:`Store`, and :class:`LocalStore` on a directory.

A store holds objects addressed by ``(bucket, key)``, exactly as S3 does. Stores raise only the
contract's errors (:class:`StorageError`, :class:`TransientStorageError`,
:class:`OutputConflictError`); a missing object is ``None``, not an error, because only the caller
knows whether that is an :class:`InputNotFoundError`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, BinaryIO, NamedTuple
from urllib.parse import unquote, urlparse

import orjson

from ._errors import OutputConflictError, StorageError
from ._formats import JSON

if TYPE_CHECKING:
    from ._settings import Settings

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "OpenedObject",
    "PutResult",
    "Store",
    "StoredObject",
    "store_for",
    "store_from_url",
]

_BAD_SEGMENTS = frozenset({"", ".", ".."})
_SEP = os.sep
#: The metadata of an object that has none: one shared, read-only empty mapping.
_NO_METADATA: Mapping[str, str] = MappingProxyType({})


class StoredObject(NamedTuple):
    """An object read from a store."""

    body: bytes
    content_type: str | None = None
    metadata: Mapping[str, str] = _NO_METADATA


class OpenedObject(NamedTuple):
    """An object opened for streaming reads: its body as a stream, and what is known about it.

    Returned by :meth:`Store.open_object`. Close it when done (it is a context manager).

    Example:
        >>> import tempfile
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> _ = store.put("bucket", "k.jsonl", b"1\\n2\\n", content_type="application/x-ndjson")
        >>> with store.open_object("bucket", "k.jsonl") as opened:
        ...     opened.content_type, opened.size, opened.stream.read()
        ('application/x-ndjson', 4, b'1\\n2\\n')
    """

    stream: BinaryIO
    content_type: str | None = None
    #: The object's size in bytes, when the store knows it without reading.
    size: int | None = None

    def __enter__(self) -> OpenedObject:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the stream (and its connection)."""
        self.stream.close()


class ObjectInfo(NamedTuple):
    """What a store knows about an object without reading its body (:meth:`Store.head`).

    Example:
        >>> import tempfile
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> _ = store.put("bucket", "k.jsonl", b"1\\n", content_type="application/x-ndjson")
        >>> info = store.head("bucket", "k.jsonl")
        >>> info.size, info.content_type
        (2, 'application/x-ndjson')
    """

    size: int
    content_type: str | None = None
    metadata: Mapping[str, str] = _NO_METADATA
    last_modified: datetime | None = None


class PutResult(NamedTuple):
    """What a write produced: its size and SHA-256 (hex)."""

    bytes: int
    sha256: str


class Store(ABC):
    """Where stage outputs live. Implement these methods to add a backend.

    Implementations translate their backend's errors into :class:`StorageError` (lasting) or
    :class:`TransientStorageError` (worth retrying) at one place, and never log payloads.
    """

    @abstractmethod
    def get(self, bucket: str, key: str) -> StoredObject | None:
        """Read a whole object, or return None when it does not exist."""

    @abstractmethod
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
        """Write an object atomically: readers see the old object or the whole new one.

        Args:
            if_none_match: Write only if no object exists at ``key``; otherwise raise
                :class:`OutputConflictError` (S3 ``If-None-Match: *``).
        """

    @abstractmethod
    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        """Delete objects; keys that do not exist are ignored."""

    def open(self, bucket: str, key: str) -> BinaryIO | None:
        """Open an object for streaming reads (None when it does not exist).

        The stream of :meth:`open_object`, for callers that need only the bytes.
        """
        opened = self.open_object(bucket, key)
        return None if opened is None else opened.stream

    def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        """Open an object for streaming reads, with its Content-Type and size (None: missing).

        Streaming stages read their input through this. The default reads the whole object;
        :class:`LocalStore` and ``S3Store`` stream.
        """
        obj = self.get(bucket, key)
        if obj is None:
            return None
        return OpenedObject(io.BytesIO(obj.body), obj.content_type, len(obj.body))

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Size, Content-Type, metadata and last-modified time, without the body (None: missing).

        The default reads the whole object; :class:`LocalStore` and ``S3Store`` do not.
        """
        obj = self.get(bucket, key)
        if obj is None:
            return None
        return ObjectInfo(len(obj.body), obj.content_type, obj.metadata)

    def get_range(self, bucket: str, key: str, start: int, stop: int | None = None) -> bytes | None:
        """Bytes ``start`` to ``stop`` (exclusive; None: the end) of an object (None: missing).

        A range past the end gives fewer bytes (or none). The default reads the whole object;
        :class:`LocalStore` seeks and ``S3Store`` sends a ``Range`` header.
        """
        obj = self.get(bucket, key)
        if obj is None:
            return None
        return obj.body[start:stop]

    def list_prefixes(self, bucket: str, prefix: str) -> list[str]:
        """The distinct "directories" just below ``prefix`` (S3's common prefixes), sorted.

        Each ends with ``/``; objects directly under ``prefix`` are not listed. The default
        lists every key; :class:`LocalStore` reads one directory and ``S3Store`` asks S3 with a
        ``/`` delimiter, so listing executions does not list every object.
        """
        found = set()
        for key in self.list_keys(bucket, prefix):
            head, sep, _ = key[len(prefix) :].partition("/")
            if sep:
                found.add(f"{prefix}{head}/")
        return sorted(found)

    def uri(self, bucket: str, key: str) -> str:
        """A URL for the object that Spark and humans understand."""
        return f"s3://{bucket}/{key}"


_TEMP_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)
_TEMP_COUNTER = itertools.count()


def _create_temp(directory: str, name: str) -> tuple[int, str]:
    """Create a new empty file ``.{name}.{pid}.{n}.tmp`` in ``directory``, like ``mkstemp``.

    ``O_EXCL`` makes the name ours; the process id and a counter make a clash (a file left by a
    crashed process with the same id) rare, and a clash just moves on to the next number. Cheaper
    than ``tempfile.mkstemp``, which every invocation would pay.
    """
    pid = os.getpid()
    for _ in range(1000):
        tmp = f"{directory}{_SEP}.{name}.{pid}.{next(_TEMP_COUNTER)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
#: The most one read() or write() system call is asked to move (Linux moves < 2 GiB at once).
_MAX_IO = 1 << 30


def _read_file(file: str) -> bytes:
    """A whole file's bytes, in one ``read`` system call for the usual file.

    What ``open(file, "rb").read()`` does, without building a buffered file object, which
    costs more than the read itself for a small stage output.
    """
    fd = os.open(file, _READ_FLAGS)
    try:
        size = os.fstat(fd).st_size
        first = os.read(fd, min(size + 1, _MAX_IO))
        if len(first) == size:
            return first
        chunks = [first]
        while chunk := os.read(fd, _MAX_IO):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_all(fd: int, body: bytes) -> None:
    """Write all of ``body`` to ``fd`` (one ``write`` may take less than it is given)."""
    view = memoryview(body)
    written = os.write(fd, view[:_MAX_IO])
    while written < len(body):
        written += os.write(fd, view[written : written + _MAX_IO])


def sha256_hex(body: bytes) -> str:
    """The SHA-256 of ``body`` as lowercase hex."""
    return hashlib.sha256(body).hexdigest()


class LocalStore(Store):
    """A directory that mirrors the S3 layout: ``s3://bucket/key`` is ``{root}/bucket/key``.

    Writes are atomic (a temporary file renamed into place). A Content-Type other than
    ``application/json`` is kept in a hidden ``.{name}.ceap-meta`` file beside the object, so a
    JSON Lines output with a single record is not mistaken for a document; a file without one is
    recognised by content.

    >>> import tempfile
    >>> store = LocalStore(tempfile.mkdtemp())
    >>> store.put("bucket", "executions/r/S/output.json", b"[1]").bytes
    3
    >>> store.get("bucket", "executions/r/S/output.json").body
    b'[1]'
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self._root = str(self.root).rstrip(_SEP)  # "" for the file system root

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, bucket: str, key: str) -> Path:
        """The file that holds ``s3://bucket/key``.

        Raises:
            StorageError: The bucket or key would resolve outside the store's root.
        """
        return Path(self._file(bucket, key))

    def _file(self, bucket: str, key: str) -> str:
        # path() as a string: every invocation reads and writes through here, and pathlib's
        # parsing costs more than the rest of a small read.
        parts = key.split("/")
        if (
            bucket in _BAD_SEGMENTS
            or not _BAD_SEGMENTS.isdisjoint(parts)
            or "\\" in bucket
            or "\x00" in bucket
            or "\\" in key
            or "\x00" in key
        ):
            raise StorageError(
                "the bucket or key would leave the local store's root", bucket=bucket, key=key
            )
        if _SEP == "/":  # POSIX: the key's separators are the file system's
            return f"{self._root}/{bucket}/{key}"
        return os.path.join(self._root, bucket, *parts)

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.ceap-meta")

    @staticmethod
    def _meta_file(file: str) -> str:
        directory, _, name = file.rpartition(_SEP)
        return f"{directory}{_SEP}.{name}.ceap-meta"

    def get(self, bucket: str, key: str) -> StoredObject | None:
        file = self._file(bucket, key)
        try:
            body = _read_file(file)
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(
                f"could not read the local file ({exc.strerror})", bucket=bucket, key=key
            ) from exc
        meta_file = self._meta_file(file)
        if not os.access(meta_file, os.F_OK):  # the usual case; cheaper than a failed open()
            return StoredObject(body)
        try:
            with open(meta_file, "rb") as handle:
                meta = orjson.loads(handle.read())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return StoredObject(body)
        return StoredObject(body, meta.get("contentType"), meta.get("metadata", {}))

    def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        path = self.path(bucket, key)
        try:
            stream = path.open("rb")
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(
                f"could not read the local file ({exc.strerror})", bucket=bucket, key=key
            ) from exc
        try:
            meta = orjson.loads(self._meta_path(path).read_bytes())
            content_type = meta.get("contentType")
        except (FileNotFoundError, orjson.JSONDecodeError):
            content_type = None
        return OpenedObject(stream, content_type, os.fstat(stream.fileno()).st_size)

    def _content_type(self, file: str) -> tuple[str | None, Mapping[str, str]]:
        try:
            with open(self._meta_file(file), "rb") as handle:
                meta = orjson.loads(handle.read())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None, {}
        return meta.get("contentType"), meta.get("metadata", {})

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        file = self._file(bucket, key)
        try:
            st = os.stat(file)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(file):
            return None
        content_type, metadata = self._content_type(file)
        modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
        return ObjectInfo(st.st_size, content_type, metadata, modified)

    def get_range(self, bucket: str, key: str, start: int, stop: int | None = None) -> bytes | None:
        file = self._file(bucket, key)
        try:
            with open(file, "rb") as handle:
                handle.seek(start)
                return handle.read() if stop is None else handle.read(max(0, stop - start))
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(
                f"could not read the local file ({exc.strerror})", bucket=bucket, key=key
            ) from exc

    def list_prefixes(self, bucket: str, prefix: str) -> list[str]:
        directory, _, start = prefix.rpartition("/")
        base = self.path(bucket, directory) if directory else self.root / bucket
        lead = f"{directory}/" if directory else ""
        try:
            with os.scandir(base) as entries:
                names = [e.name for e in entries if e.is_dir() and e.name.startswith(start)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        # A directory whose objects were all deleted is not a prefix (S3 has no directories).
        return sorted(f"{lead}{n}/" for n in names if self.list_keys(bucket, f"{lead}{n}/"))

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
        file = self._file(bucket, key)
        try:
            try:
                self._write_object(file, body, content_type, metadata, if_none_match)
            except FileExistsError:
                if not if_none_match or not os.path.isfile(file):
                    raise
                raise OutputConflictError(
                    "an object already exists and write-once is on", bucket=bucket, key=key
                ) from None
        except OSError as exc:
            raise StorageError(
                f"could not write the local file ({exc.strerror})", bucket=bucket, key=key
            ) from exc
        return PutResult(len(body), sha256_hex(body))

    def _write_object(
        self,
        file: str,
        body: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None,
        exclusive: bool,
    ) -> None:
        """The object, after its sidecar (a Content-Type other than JSON) or none."""
        meta_file = self._meta_file(file)
        if content_type != JSON:
            self._write_atomic(
                meta_file,
                orjson.dumps({"contentType": content_type, "metadata": dict(metadata or {})}),
            )
        elif os.access(meta_file, os.F_OK):  # rare: the key held another content type
            with contextlib.suppress(FileNotFoundError):
                os.unlink(meta_file)
        self._write_atomic(file, body, exclusive=exclusive)

    @staticmethod
    def _write_atomic(path: str | Path, body: bytes, *, exclusive: bool = False) -> None:
        directory, _, name = os.fspath(path).rpartition(_SEP)
        try:
            fd, tmp = _create_temp(directory, name)
        except FileNotFoundError:
            # The directory does not exist yet (a stage's first write): create it. Cheaper
            # than looking before every write, which mostly finds it.
            os.makedirs(directory, exist_ok=True)
            fd, tmp = _create_temp(directory, name)
        try:
            try:
                _write_all(fd, body)
            finally:
                os.close(fd)
            if exclusive:
                os.link(tmp, path)  # fails with FileExistsError: an atomic create-if-absent
                os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        base = self.root / bucket
        directory = prefix.rpartition("/")[0]
        start = self.path(bucket, directory) if directory else base
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.startswith("."):
                    continue
                key = Path(dirpath, name).relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        for key in keys:
            path = self.path(bucket, key)
            path.unlink(missing_ok=True)
            self._meta_path(path).unlink(missing_ok=True)

    def uri(self, bucket: str, key: str) -> str:
        return self.path(bucket, key).as_uri()


def store_for(settings: Settings) -> Store:
    """A new store as ``settings`` describe it: ``store_url``, and on S3 the owner and KMS key.

    Each call makes a new store (on S3, with its own client, created on its first use).

    Example:
        >>> from ceap_stage._settings import Settings
        >>> store_for(Settings(store_url="file:///tmp/ceap"))
        LocalStore('/tmp/ceap')
    """
    return store_from_url(settings.store_url, settings=settings)


def store_from_url(url: str | None, *, settings: Settings | None = None) -> Store:
    """The store a ``CEAP_STORE`` value names: ``file:///dir`` or ``s3://`` (or unset) for S3.

    Args:
        url: The value.
        settings: The S3 options of an S3 store (default: resolved from the environment).

    >>> store_from_url("file:///tmp/ceap")
    LocalStore('/tmp/ceap')
    """
    if not url or url.startswith("s3:"):
        from ._s3 import S3Store  # Deferred for import time: only S3 users pay for botocore.

        return S3Store(settings=settings)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        host = "" if parsed.netloc == "localhost" else parsed.netloc  # file://.ceap is relative
        return LocalStore(unquote(host + parsed.path))
    if not parsed.scheme:
        return LocalStore(url)
    raise StorageError(f"CEAP_STORE must be file:///path or s3://, not a {parsed.scheme}: URL")
