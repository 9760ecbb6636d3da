"""The three formats of ``output.json`` (docs/contract.md section 3): decoding, sniffing, encoding.

=============================================  ==========  ===================================
Content-Type                                   format      holds
=============================================  ==========  ===================================
``application/json``                           ``json``    one JSON document
``application/x-ndjson``                       ``jsonl``   JSON Lines, one record per line
``application/vnd.ceap.manifest+json``         manifest    ``{"ceap": "manifest/1", ...}``
=============================================  ==========  ===================================

An object with no or another Content-Type is recognised by content: a JSON object whose ``ceap``
field is ``manifest/1`` is a manifest; text that parses as one JSON value is a document; anything
else is JSON Lines. This module knows nothing of stores or models: it turns bytes into Python values
and back, and raises :class:`InputValidationError` with messages free of payload content.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Final, Literal, NamedTuple

import orjson

from ._errors import InputValidationError

__all__ = [
    "CONTENT_TYPES",
    "JSON",
    "JSONL",
    "MANIFEST",
    "MANIFEST_VERSION",
    "Format",
    "Manifest",
    "ManifestPart",
    "decode",
    "encode_jsonl",
    "format_of_content_type",
    "iter_jsonl",
    "iter_jsonl_numbered",
    "iter_lines",
    "open_stream",
]

Format = Literal["json", "jsonl", "manifest"]
JSON: Final = "application/json"
JSONL: Final = "application/x-ndjson"
MANIFEST: Final = "application/vnd.ceap.manifest+json"
MANIFEST_VERSION: Final = "manifest/1"

CONTENT_TYPES: Final[dict[Format, str]] = {"json": JSON, "jsonl": JSONL, "manifest": MANIFEST}
_FORMATS: Final[dict[str, Format]] = {v: k for k, v in CONTENT_TYPES.items()}
_BOM: Final = codecs.BOM_UTF8


def format_of_content_type(content_type: str | None) -> Format | None:
    """The format a Content-Type names, or None when it names none of the three.

    >>> format_of_content_type("application/x-ndjson; charset=utf-8")
    'jsonl'
    """
    if not content_type:
        return None
    return _FORMATS.get(content_type.split(";", 1)[0].strip().lower())


class ManifestPart(NamedTuple):
    """One part file of a partitioned output."""

    key: str
    bytes: int


class Manifest(NamedTuple):
    """The commit marker of a partitioned output: the parts, in order, and the record count.

    >>> m = Manifest(records=2, parts=(ManifestPart("executions/r/S/parts/part-00000.jsonl", 20),))
    >>> Manifest.from_value(orjson.loads(m.to_bytes())) == m
    True
    """

    records: int
    parts: tuple[ManifestPart, ...]
    format: str = "jsonl"

    @property
    def total_bytes(self) -> int:
        """The size of all parts together."""
        return sum(p.bytes for p in self.parts)

    def to_bytes(self) -> bytes:
        """The manifest as written to ``output.json``."""
        return orjson.dumps(
            {
                "ceap": MANIFEST_VERSION,
                "format": self.format,
                "records": self.records,
                "parts": [{"key": p.key, "bytes": p.bytes} for p in self.parts],
            }
        )

    @classmethod
    def from_value(cls, value: object) -> Manifest:
        """Check a decoded manifest's structure.

        Raises:
            InputValidationError: The value is not a ``manifest/1`` document.
        """
        if not isinstance(value, dict) or value.get("ceap") != MANIFEST_VERSION:
            raise InputValidationError(f"the manifest is not a {MANIFEST_VERSION!r} object")
        if value.get("format", "jsonl") != "jsonl":
            raise InputValidationError("the manifest names a part format other than 'jsonl'")
        records = value.get("records")
        if isinstance(records, bool) or not isinstance(records, int) or records < 0:
            raise InputValidationError("the manifest's 'records' is not a non-negative integer")
        raw_parts = value.get("parts")
        if not isinstance(raw_parts, list):
            raise InputValidationError("the manifest's 'parts' is not a list")
        parts = []
        for index, raw in enumerate(raw_parts):
            key = raw.get("key") if isinstance(raw, dict) else None
            size = raw.get("bytes") if isinstance(raw, dict) else None
            if (
                not isinstance(key, str)
                or isinstance(size, bool)
                or not isinstance(size, int)
                or size < 0
            ):
                raise InputValidationError(
                    f"manifest part {index} needs a string 'key' and a non-negative 'bytes'"
                )
            parts.append(ManifestPart(key, size))
        return cls(records=records, parts=tuple(parts))

    def check_parts_under(self, prefix: str) -> None:
        """Refuse parts outside ``prefix`` (a manifest must not point at other data).

        Raises:
            InputValidationError: A part key is outside the prefix or has a ``.`` segment.
        """
        for index, part in enumerate(self.parts):
            rest = part.key[len(prefix) :] if part.key.startswith(prefix) else None
            segments = rest.split("/") if rest else None
            if not segments or any(s in ("", ".", "..") for s in segments):
                raise InputValidationError(
                    f"manifest part {index} points outside the stage's parts prefix {prefix!r}"
                )


def _utf8_problem(body: bytes) -> str | None:
    if body.startswith(_BOM):
        return "starts with a UTF-8 byte order mark, which JSON does not allow"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not valid UTF-8 (byte {exc.start})"
    return None


def iter_jsonl(lines: Iterable[bytes], *, first_line: int = 1) -> Iterator[Any]:
    """Decode JSON Lines, skipping blank lines.

    Raises:
        InputValidationError: A line is not one JSON value (the message gives its number).

    >>> list(iter_jsonl([b'{"a": 1}', b"", b"2"]))
    [{'a': 1}, 2]
    """
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problem = _utf8_problem(line) or f"is not valid JSON ({exc.msg})"
            raise InputValidationError(f"JSON Lines line {number} {problem}") from None


def decode(body: bytes, content_type: str | None) -> tuple[Format, Any]:
    """Decode an ``output.json`` body into ``(format, value)``.

    The value is the document for ``json``, a list of records for ``jsonl`` and a
    :class:`Manifest` for ``manifest``.

    Raises:
        InputValidationError: The body is not valid in its format.

    >>> decode(b'[1, 2]', "application/json")
    ('json', [1, 2])
    >>> decode(b'{"a": 1}\\n{"a": 2}\\n', None)
    ('jsonl', [{'a': 1}, {'a': 2}])
    """
    fmt = format_of_content_type(content_type)
    if fmt == "jsonl":
        return "jsonl", list(iter_jsonl(body.split(b"\n")))
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if fmt is not None:
            problem = _utf8_problem(body) or f"is not valid JSON ({exc.msg})"
            raise InputValidationError(f"the {fmt} document {problem}") from None
        if not body.strip():
            return "jsonl", []
        bad_text = _utf8_problem(body)
        if bad_text is not None:
            raise InputValidationError(f"the input {bad_text}") from None
        return "jsonl", list(iter_jsonl(body.split(b"\n")))
    if fmt == "manifest" or (
        fmt is None and isinstance(value, dict) and value.get("ceap") == MANIFEST_VERSION
    ):
        return "manifest", Manifest.from_value(value)
    return "json", value


def encode_jsonl(records: Iterable[Any]) -> bytes:
    """Encode JSON-ready records (``mode="json"`` dumps) as JSON Lines.

    >>> encode_jsonl([{"a": 1}, 2])
    b'{"a":1}\\n2\\n'
    """
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


#: How much :func:`iter_lines` reads from a stream at a time.
READ_CHUNK_BYTES: Final = 1 << 20


def iter_lines(stream: BinaryIO, *, chunk_size: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
    """Split a binary stream into lines (without their ``\\n``), reading ``chunk_size`` at a time.

    Memory stays bounded by the chunk size plus the longest line.

    >>> import io
    >>> list(iter_lines(io.BytesIO(b'{"a": 1}\\n{"a": 2}'), chunk_size=3))
    [b'{"a": 1}', b'{"a": 2}']
    """
    pending: list[bytes] = []
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        if b"\n" not in chunk:
            pending.append(chunk)  # a long line: join once, not once per chunk
            continue
        lines = chunk.split(b"\n")
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending = []
        tail = lines.pop()
        if tail:
            pending.append(tail)
        yield from lines
    if pending:
        yield b"".join(pending)


def iter_jsonl_numbered(
    lines: Iterable[bytes], *, first_line: int = 1
) -> Iterator[tuple[int, Any]]:
    """Like :func:`iter_jsonl`, but yield ``(line number, value)`` pairs.

    >>> list(iter_jsonl_numbered([b"1", b"", b"[2]"]))
    [(1, 1), (3, [2])]
    """
    loads = orjson.loads
    for number, line in enumerate(lines, start=first_line):
        try:
            yield number, loads(line)
        except orjson.JSONDecodeError as exc:
            if not line.strip():
                continue
            problem = _utf8_problem(line) or f"is not valid JSON ({exc.msg})"
            raise InputValidationError(f"JSON Lines line {number} {problem}") from None


def open_stream(
    stream: BinaryIO, content_type: str | None, *, chunk_size: int = READ_CHUNK_BYTES
) -> tuple[Format, Any]:
    """Recognise the format of a streamed ``output.json`` and decode it lazily where possible.

    Returns ``(format, value)``: for ``jsonl`` the value is an iterator of ``(line, record)``
    pairs that reads the stream as it goes; for ``json`` it is the whole document (a document
    is read whole); for ``manifest`` a :class:`Manifest`. An object without a known Content-Type
    is recognised exactly as :func:`decode` does, reading only its first line when it is JSON
    Lines. JSON Lines are read ``chunk_size`` bytes at a time.

    Raises:
        InputValidationError: The body is not valid in its format.

    >>> import io
    >>> fmt, records = open_stream(io.BytesIO(b'{"a": 1}\\n{"a": 2}\\n'), None)
    >>> fmt, list(records)
    ('jsonl', [(1, {'a': 1}), (2, {'a': 2})])
    """
    fmt = format_of_content_type(content_type)
    if fmt == "jsonl":
        return "jsonl", iter_jsonl_numbered(iter_lines(stream, chunk_size=chunk_size))
    if fmt is not None:
        return decode(stream.read(), content_type)
    lines = iter_lines(stream, chunk_size=chunk_size)
    first = next(lines, None)
    number = 1
    while first is not None and not first.strip():
        first = next(lines, None)
        number += 1
    if first is None:
        return "jsonl", iter(())
    try:
        value = orjson.loads(first)
    except orjson.JSONDecodeError:
        # Not one value on the first line: a pretty-printed document, or bad input. Read it all.
        prefix = b"\n" * (number - 1)
        return decode(prefix + b"\n".join([first, *lines]), None)
    second = next(lines, None)
    following = number + 1
    while second is not None and not second.strip():
        second = next(lines, None)
        following += 1
    if second is None:  # one value and nothing else: a document (or a manifest)
        if isinstance(value, dict) and value.get("ceap") == MANIFEST_VERSION:
            return "manifest", Manifest.from_value(value)
        return "json", value

    def records() -> Iterator[tuple[int, Any]]:
        yield number, value
        yield from iter_jsonl_numbered([second], first_line=following)
        yield from iter_jsonl_numbered(lines, first_line=following + 1)

    return "jsonl", records()
