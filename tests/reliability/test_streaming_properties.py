"""Properties: the streaming reader agrees with the whole-object reader on every input."""

from __future__ import annotations

import io
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ceap_stage import InputValidationError
from ceap_stage._formats import Manifest, decode, iter_lines, open_stream

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def jsonl_body(values: list[Any], blank: list[bool]) -> bytes:
    lines = []
    for value, extra in zip(values, blank + [False] * len(values), strict=False):
        lines.append(orjson.dumps(value))
        if extra:
            lines.append(b"   ")
    return b"\n".join(lines) + b"\n"


bodies = st.one_of(
    json_values.map(orjson.dumps),
    json_values.map(lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2)),
    st.builds(jsonl_body, st.lists(json_values, max_size=6), st.lists(st.booleans(), max_size=6)),
    st.binary(max_size=40),  # mostly garbage
    st.builds(lambda b: b"\n\n" + b, json_values.map(orjson.dumps)),
    st.integers(min_value=0, max_value=9).map(lambda n: Manifest(records=n, parts=()).to_bytes()),
    st.builds(  # a manifest line followed by more lines is JSON Lines, not a manifest
        lambda v: Manifest(records=0, parts=()).to_bytes() + b"\n" + orjson.dumps(v),
        json_values,
    ),
)


def whole(body: bytes) -> tuple[str, Any]:
    try:
        fmt, value = decode(body, None)
    except InputValidationError:
        return "error", None
    return fmt, value


def streamed(body: bytes, chunk: int) -> tuple[str, Any]:
    class Chunked(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            return super().read(chunk if size is None or size < 0 else min(size, chunk))

    try:
        fmt, value = open_stream(Chunked(body), None)
        if fmt == "jsonl":
            value = [record for _, record in value]
    except InputValidationError:
        return "error", None
    return fmt, value


@settings(max_examples=300, deadline=None)
@given(bodies, st.integers(min_value=1, max_value=64))
def test_open_stream_agrees_with_decode(body: bytes, chunk: int):
    assert streamed(body, chunk) == whole(body), body


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=50))
def test_iter_lines_splits_like_bytes_split(body: bytes, chunk: int):
    expected = body.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it does not start another
    assert list(iter_lines(io.BytesIO(body), chunk_size=chunk)) == expected
