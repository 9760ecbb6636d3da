"""Property-based tests: identifier validation and write-then-read round trips in all formats."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ceap_stage import ContextResolutionError, LocalStore, StageHandler, stage
from ceap_stage._context import validate_identifier
from ceap_stage._formats import (
    JSON,
    JSONL,
    MANIFEST,
    Manifest,
    ManifestPart,
    decode,
    encode_jsonl,
    iter_jsonl,
)

from ._helpers import BUCKET, make_event

# -- identifiers --------------------------------------------------------------------------------

_FORBIDDEN_CHARS = st.one_of(
    st.sampled_from(["/", "\\"]),
    st.characters(categories=["Cc"]),  # C0 and C1 control characters, DEL
    st.characters(categories=["Zs", "Zl", "Zp"]),  # every Unicode space and separator
    st.sampled_from([" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f"]),
)
_ALLOWED_CHARS = st.characters(
    exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"], exclude_characters="/\\"
).filter(lambda c: not c.isspace())
_VALID_IDS = st.text(_ALLOWED_CHARS, min_size=1, max_size=80).filter(lambda s: s not in (".", ".."))


@given(_VALID_IDS)
def test_valid_identifiers_are_accepted_unchanged(value: str):
    assert validate_identifier(value, "executionId") == value


@given(
    st.text(_ALLOWED_CHARS, max_size=39),
    _FORBIDDEN_CHARS,
    st.text(_ALLOWED_CHARS, max_size=40),
)
def test_any_identifier_with_a_forbidden_character_is_refused(
    prefix: str, forbidden: str, suffix: str
):
    with pytest.raises(ContextResolutionError, match="must not contain"):
        validate_identifier(prefix + forbidden + suffix, "currentStage")


@given(st.text(_ALLOWED_CHARS, min_size=81, max_size=200))
def test_any_identifier_longer_than_80_characters_is_refused(value: str):
    with pytest.raises(ContextResolutionError, match="at most 80"):
        validate_identifier(value, "currentStage")


# -- payload round trips ------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
_JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_RECORDS = st.lists(st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=5), max_size=12)


def _manifest(store: LocalStore, prefix: str, records: list[Any], cuts: int) -> bytes:
    size = max(1, -(-len(records) // max(1, cuts)))
    parts = []
    for index, start in enumerate(range(0, len(records), size)):
        body = encode_jsonl(records[start : start + size])
        key = f"{prefix}part-{index:05d}.jsonl"
        store.put(BUCKET, key, body, content_type=JSONL)
        parts.append(ManifestPart(key, len(body)))
    return Manifest(records=len(records), parts=tuple(parts)).to_bytes()


@settings(max_examples=60)
@given(_JSON_VALUES)
def test_a_json_document_round_trips_by_content_type_and_by_sniffing(value: Any):
    body = orjson.dumps(value)
    assert decode(body, JSON) == ("json", value)
    sniffed = decode(body, None)
    if isinstance(value, dict) and value.get("ceap") == "manifest/1":
        assert sniffed[0] == "manifest"
    else:
        assert sniffed == ("json", value)


@settings(max_examples=60)
@given(st.lists(_JSON_VALUES, max_size=10))
def test_json_lines_round_trip_by_content_type_and_by_sniffing(records: list[Any]):
    body = encode_jsonl(records)
    assert decode(body, JSONL) == ("jsonl", records)
    fmt, value = decode(body, None)
    if len(records) == 1:
        assert (fmt, value) == ("json", records[0])  # one JSON value: a document
    elif fmt == "jsonl":
        assert value == records
    else:  # a lone manifest-looking record would be sniffed as a manifest; others are lists
        pytest.fail(f"{len(records)} JSON Lines records sniffed as {fmt}")


@settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=_RECORDS, cuts=st.integers(min_value=1, max_value=4))
def test_manifest_and_parts_round_trip_through_a_local_store(
    records: list[Any], cuts: int, tmp_path: Path
):
    store = LocalStore(tmp_path)
    prefix = f"executions/{uuid.uuid4().hex}/Glue/parts/"
    manifest_body = _manifest(store, prefix, records, cuts)
    for content_type in (MANIFEST, None):
        fmt, manifest = decode(manifest_body, content_type)
        assert fmt == "manifest"
        assert isinstance(manifest, Manifest)
        manifest.check_parts_under(prefix)
        read: list[Any] = []
        for part in manifest.parts:
            obj = store.get(BUCKET, part.key)
            assert obj is not None
            assert len(obj.body) == part.bytes
            read.extend(iter_jsonl(obj.body.split(b"\n")))
        assert read == records
        assert manifest.records == len(records)


@dataclass
class _Stages:
    root: Path
    write: StageHandler
    write_lines: StageHandler
    read: StageHandler


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> _Stages:
    """Three stages on one LocalStore, built once (hypothesis runs many examples)."""
    root = tmp_path_factory.mktemp("round-trips")

    def write(data: dict[str, Any]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = data["records"]
        return records

    def read(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records

    return _Stages(
        root,
        stage(store=LocalStore(root), name="Write")(write),
        stage(store=LocalStore(root), name="WriteLines", output_format="jsonl")(write),
        stage(store=LocalStore(root), name="Read")(read),
    )


@settings(max_examples=40, deadline=None)
@given(records=_RECORDS, fmt=st.sampled_from(["json", "jsonl", "manifest"]))
def test_stage_write_then_next_stage_read_round_trips(
    stages: _Stages, records: list[Any], fmt: str
):
    run = uuid.uuid4().hex
    store = LocalStore(stages.root)
    if fmt == "manifest":
        body = _manifest(store, f"executions/{run}/Write/parts/", records, 3)
        store.put(BUCKET, f"executions/{run}/Write/output.json", body, content_type=MANIFEST)
        previous = "Write"
    else:
        writer = stages.write if fmt == "json" else stages.write_lines
        previous = "Write" if fmt == "json" else "WriteLines"
        pointer = writer(
            make_event(
                execution_id=run,
                current_stage=previous,
                previous_stage=None,
                initial_data={"records": records},
            )
        )
        assert pointer["output"]["format"] == fmt
        assert pointer["recordsProcessed"] == len(records)
    result = stages.read(
        make_event(execution_id=run, current_stage="Read", previous_stage=previous)
    )
    assert result["recordsProcessed"] == len(records)
    written = (stages.root / BUCKET / f"executions/{run}/Read/output.json").read_bytes()
    assert orjson.loads(written) == records
