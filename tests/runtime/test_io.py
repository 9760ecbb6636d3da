"""The stage I/O layer on a LocalStore and on moto's S3 server: layout, reads, slices, commits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ceap_stage import InputValidationError, LocalStore, OutputValidationError, stage
from ceap_stage._errors import InputNotFoundError
from ceap_stage._formats import JSONL, MANIFEST, Manifest, ManifestPart, encode_jsonl
from ceap_stage._io import (
    ByteRange,
    OutputRef,
    PartRange,
    PartWriter,
    RecordRange,
    StageIO,
    commit_manifest,
)
from ceap_stage._runtime import StageRuntime
from ceap_stage._s3 import S3Store
from ceap_stage._store import Store
from ceap_stage.testing import run_stage
from tests.conftest import create_bucket, s3_client

RUN = "run-io"
RECORDS = [{"n": i, "name": f"r{i}"} for i in range(10)]


@pytest.fixture(params=["local", "moto_server"])
def io_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[StageIO, str]]:
    if request.param == "local":
        yield StageIO(LocalStore(tmp_path)), "wf-bucket"
        return
    endpoint = request.getfixturevalue("moto_server")
    bucket = create_bucket(s3_client(endpoint))
    yield StageIO(S3Store(endpoint_url=endpoint)), bucket


def _ref(bucket: str, stage: str = "Filter") -> OutputRef:
    return OutputRef(bucket, RUN, stage)


def _write_manifest(io: StageIO, ref: OutputRef, chunks: list[list[Any]]) -> Manifest:
    writer = PartWriter(io.store, ref, part_bytes=1 << 30)
    for chunk in chunks:
        writer.add(encode_jsonl(chunk))
        writer.flush()
    writer.commit(sum(map(len, chunks)), metadata={}, write_once=False)
    description = io.describe(ref)
    assert description is not None
    assert description.manifest is not None
    return description.manifest


# -- layout -------------------------------------------------------------------------------------


def test_the_layout_owns_every_key_of_a_stage() -> None:
    ref = OutputRef("b", "run-1", "Score")
    assert ref.key == "executions/run-1/Score/output.json"
    assert ref.parts_prefix == "executions/run-1/Score/parts/"
    assert ref.writer_prefix("a1") == "executions/run-1/Score/parts/a1/"
    assert ref.shards_key == "executions/run-1/Score/shards.jsonl"
    assert ref.shard_ref(12).key == "executions/run-1/Score/shards/00012.jsonl"
    assert ref.rejected_key == "executions/run-1/Score/rejected.jsonl"
    assert OutputRef.initial("b", "run-1").key == "executions/run-1/initial/output.json"


# -- describe, read, records --------------------------------------------------------------------


def test_describe_tells_format_size_metadata_without_the_records(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    doc, lines, parted = _ref(bucket, "Doc"), _ref(bucket, "Lines"), _ref(bucket, "Parted")
    put = io.write_document(doc, RECORDS, records=10, schema="Rec")
    io.write_jsonl(lines, RECORDS)
    manifest = _write_manifest(io, parted, [RECORDS[:4], RECORDS[4:]])

    d = io.describe(doc)
    assert d is not None
    assert (d.format, d.size, d.manifest) == ("json", put.bytes, None)
    if isinstance(io.store, S3Store):  # a LocalStore keeps no metadata for a JSON document
        assert d.records == 10
        assert d.metadata["ceap-schema"] == "Rec"
    assert d.last_modified is not None
    lined = io.describe(lines)
    assert lined is not None
    assert lined.format == "jsonl"
    assert lined.records == 10
    p = io.describe(parted)
    assert p is not None
    assert p.format == "manifest"
    assert p.records == 10
    assert p.manifest == manifest
    assert len(manifest.parts) == 2
    assert io.describe(_ref(bucket, "Missing")) is None


def test_read_and_records_give_the_same_records_in_every_format(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    refs = [_ref(bucket, "Doc"), _ref(bucket, "Lines"), _ref(bucket, "Parted")]
    io.write_document(refs[0], RECORDS, records=10)
    io.write_jsonl(refs[1], RECORDS)
    _write_manifest(io, refs[2], [RECORDS[:3], RECORDS[3:]])
    for ref in refs:
        assert io.read(ref).value == RECORDS
        assert list(io.records(ref, validate=lambda r: r, label="Rec")) == RECORDS
    with pytest.raises(InputNotFoundError, match="has no output"):
        io.read(_ref(bucket, "Missing"))


# -- slices -------------------------------------------------------------------------------------


def test_a_part_range_reads_only_those_parts(io_bucket: tuple[StageIO, str]) -> None:
    io, bucket = io_bucket
    ref = _ref(bucket)
    _write_manifest(io, ref, [RECORDS[:3], RECORDS[3:7], RECORDS[7:]])
    assert io.read_slice(ref, PartRange(1, 2)) == RECORDS[3:7]
    assert io.read_slice(ref, PartRange(1, 3)) == RECORDS[3:]
    io.write_document(_ref(bucket, "Doc"), RECORDS, records=10)
    with pytest.raises(InputValidationError, match="needs a manifest"):
        io.read_slice(_ref(bucket, "Doc"), PartRange(0, 1))


def test_a_record_range_of_a_json_array(io_bucket: tuple[StageIO, str]) -> None:
    io, bucket = io_bucket
    ref = _ref(bucket)
    io.write_document(ref, RECORDS, records=10)
    assert io.read_slice(ref, RecordRange(2, 5)) == RECORDS[2:5]
    assert io.read_slice(ref, RecordRange(8, 20)) == RECORDS[8:]
    io.write_jsonl(_ref(bucket, "Lines"), RECORDS)
    with pytest.raises(InputValidationError, match="needs a JSON array document"):
        io.read_slice(_ref(bucket, "Lines"), RecordRange(0, 1))


def test_byte_ranges_cut_at_line_boundaries_cover_every_line_once(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    ref = _ref(bucket)
    put, _fmt, _n = io.write_jsonl(ref, RECORDS)
    for step in (1, 7, 13, 40, put.bytes):
        got: list[Any] = []
        for start in range(0, put.bytes, step):
            got.extend(io.read_slice(ref, ByteRange(start, min(start + step, put.bytes))))
        assert got == RECORDS, step
    assert io.read_slice(ref, ByteRange(put.bytes, put.bytes + 10)) == []


def test_ranged_reads_and_heads_on_the_store(io_bucket: tuple[StageIO, str]) -> None:
    io, bucket = io_bucket
    store: Store = io.store
    store.put(bucket, "executions/r/S/output.json", b"0123456789", content_type=JSONL)
    assert store.get_range(bucket, "executions/r/S/output.json", 2, 5) == b"234"
    assert store.get_range(bucket, "executions/r/S/output.json", 7) == b"789"
    assert store.get_range(bucket, "executions/r/S/output.json", 20, 30) == b""
    assert store.get_range(bucket, "executions/r/missing", 0, 3) is None
    info = store.head(bucket, "executions/r/S/output.json")
    assert info is not None
    assert (info.size, info.content_type) == (10, JSONL)
    assert store.head(bucket, "executions/r/missing") is None


def test_a_delimiter_listing_gives_the_executions_not_every_object(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    for run in ("run-a", "run-b"):
        for stage_name in ("S1", "S2"):
            io.write_document(OutputRef(bucket, run, stage_name), [1], records=1)
    assert io.store.list_prefixes(bucket, "executions/") == [
        "executions/run-a/",
        "executions/run-b/",
    ]
    assert io.store.list_prefixes(bucket, "executions/run-a/") == [
        "executions/run-a/S1/",
        "executions/run-a/S2/",
    ]
    assert io.store.list_prefixes(bucket, "executions/run-a/S1/") == []


# -- the commit protocol ------------------------------------------------------------------------


def _keys(io: StageIO, ref: OutputRef) -> list[str]:
    return io.store.list_keys(ref.bucket, ref.prefix)


def test_two_shard_writers_of_one_stage_keep_each_others_output(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    ref = _ref(bucket, "Fan")
    first, second = ref.shard_ref(0), ref.shard_ref(1)
    io.write_jsonl(first, RECORDS[:5])
    io.write_jsonl(second, RECORDS[5:])
    # The stage's own output commits afterwards: the shard outputs are its parts.
    parts = []
    for shard in (first, second):
        info = io.store.head(bucket, shard.key)
        assert info is not None
        parts.append(ManifestPart(shard.key, info.size))
    commit_manifest(io.store, ref, parts, 10, metadata={})
    assert io.read(ref).value == RECORDS
    assert set(_keys(io, ref)) == {ref.key, first.key, second.key}


def test_a_writer_in_flight_is_not_deleted_by_anothers_abort(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    ref = _ref(bucket)
    a = PartWriter(io.store, ref, part_bytes=1, writer="a")
    b = PartWriter(io.store, ref, part_bytes=1, writer="b")
    a.add(b'{"n":1}\n')
    b.add(b'{"n":2}\n')
    a.abort()
    assert _keys(io, ref) == [p.key for p in b.parts]
    b.commit(1, metadata={}, write_once=False)
    assert io.read(ref).value == [{"n": 2}]


def test_a_retry_writes_the_same_bytes_and_a_glue_rerun_replaces_it(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    ref = _ref(bucket)

    def write(writer: str | None) -> tuple[bytes, list[str]]:
        w = PartWriter(io.store, ref, part_bytes=30, writer=writer)
        for record in RECORDS:
            w.add(orjson.dumps(record) + b"\n")
        w.commit(10, metadata={}, write_once=writer is None)
        obj = io.store.get(bucket, ref.key)
        assert obj is not None
        assert obj.content_type == MANIFEST
        return obj.body, [p.key for p in w.parts]

    first, keys = write(None)
    again, keys_again = write(None)  # a Lambda retry: same writer id, keys, manifest bytes
    assert (again, keys_again) == (first, keys)
    assert all(k.startswith(ref.parts_prefix + keys[0].split("/")[-2] + "/") for k in keys)
    _, glue_keys = write("20260101T000000Z-attempt")
    assert sorted(_keys(io, ref)) == sorted([ref.key, *glue_keys])  # the retry's parts are gone
    assert io.read(ref).value == RECORDS


def test_a_manifest_part_may_lie_anywhere_under_the_stage_but_not_outside(
    io_bucket: tuple[StageIO, str],
) -> None:
    io, bucket = io_bucket
    ref = _ref(bucket)
    body = encode_jsonl(RECORDS[:2])
    io.store.put(bucket, "executions/run-io/Other/x.jsonl", body, content_type=JSONL)
    manifest = Manifest(2, (ManifestPart("executions/run-io/Other/x.jsonl", len(body)),))
    io.store.put(bucket, ref.key, manifest.to_bytes(), content_type=MANIFEST)
    with pytest.raises(InputValidationError, match="points outside") as info:
        io.read(ref)
    assert info.value.key == ref.key


# -- the json-only option and the defects -------------------------------------------------------


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    customer_id: str
    event_count: int


def test_an_aliased_model_round_trips_through_every_writer(tmp_path: Path) -> None:
    @stage(name="Copy")
    def copy(records: list[Camel]) -> list[Camel]:
        return records

    @stage(name="Stream", output_format="jsonl")
    def stream(records: list[Camel]) -> Iterator[Camel]:
        yield from records

    wire = [{"customerId": "c-1", "eventCount": 3}]
    store = LocalStore(tmp_path)
    for handler in (copy, stream):
        run = run_stage(handler, previous_output=wire, store=store)
        out = run.result["output"]
        written = (
            StageIO(store)
            .read(OutputRef(out["bucket"], run.event["executionId"], out["key"].split("/")[2]))
            .value
        )
        assert written == wire, handler
    run = run_stage(copy, previous_output=[Camel(customer_id="c-2", event_count=1)], store=store)
    assert run.output == [Camel(customer_id="c-2", event_count=1)]


def test_an_unlabelled_json_document_takes_the_one_pass_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    ref = OutputRef("wf-bucket", RUN, "Filter")
    store.put(ref.bucket, ref.key, orjson.dumps(RECORDS))  # application/json: no sidecar
    assert store.get(ref.bucket, ref.key).content_type is None  # type: ignore[union-attr]
    calls: list[bytes] = []

    def parse(body: bytes) -> Any:
        calls.append(body)
        return orjson.loads(body)

    monkeypatch.setattr("ceap_stage._io.decode", _refuse)
    result = StageIO(store).read(ref, parse_json=parse)
    assert result.validated
    assert result.value == RECORDS
    assert len(calls) == 1


def _refuse(*_args: object) -> Any:
    raise AssertionError("the two-pass reader was used")


def test_a_non_finite_number_still_takes_the_strict_reader(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ref = OutputRef("wf-bucket", RUN, "Filter")
    store.put(ref.bucket, ref.key, b'[{"n": 1e400}]')
    with pytest.raises(InputValidationError, match="not valid JSON"):
        StageIO(store).read(ref, parse_json=orjson.loads)
    assert store.get(ref.bucket, OutputRef("wf-bucket", RUN, "Next").key) is None


def test_a_single_document_stage_refuses_an_output_too_large(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)

    @stage(name="Big", store=store)
    def big(n: int) -> list[int]:
        return list(range(n))

    runtime: StageRuntime = big.runtime
    only_json = StageRuntime(
        runtime.spec, name="Big", store=store, single_document=True, max_document_bytes=64
    )
    event = {"executionId": RUN, "currentStage": "Big", "workflowBucket": "wf-bucket"}
    with pytest.raises(OutputValidationError, match="writes one JSON document") as info:
        only_json.invoke({**event, "initialData": 100})
    assert info.value.stage == "Big"
    ref = OutputRef("wf-bucket", RUN, "Big")
    assert store.list_keys(ref.bucket, ref.prefix) == []
    assert only_json.invoke({**event, "initialData": 3})["output"]["format"] == "json"


def test_slices_and_refs_are_immutable_values_that_compare_by_kind():
    """Value records (light named tuples, cheap to define at cold start) keep value semantics."""
    slices: list[object] = [PartRange(0, 2), RecordRange(0, 2), ByteRange(0, 2)]
    assert PartRange(0, 2) == PartRange(0, 2)
    assert len(set(slices)) == 3  # same numbers, another kind: never equal
    assert len({OutputRef("b", "run-1", "S"), OutputRef("b", "run-1", "S")}) == 1
    assert repr(OutputRef("b", "run-1", "S")) == (
        "OutputRef(bucket='b', execution_id='run-1', stage='S', shard=None)"
    )
    ref = OutputRef("b", "run-1", "S")
    with pytest.raises(AttributeError):
        ref.stage = "T"  # type: ignore[misc]
    assert ref._replace(shard=2).key == "executions/run-1/S/shards/00002.jsonl"
