"""The three phases of a fanned-out stage (docs/contract.md section 7), through the runtime."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ceap_stage import (
    ContextResolutionError,
    HandlerDefinitionError,
    InputNotFoundError,
    InputValidationError,
    LocalStore,
    stage,
)
from ceap_stage._fanout import Shard, plan_shards, read_plan, shard_events
from ceap_stage._formats import JSON, JSONL
from ceap_stage._io import OutputRef, PartBytes, PartRange, StageIO
from ceap_stage.testing import CountingStore
from tests.runtime.conftest import Backend

RUN = "run-fan-1"
PREV = "Prev"


class Row(BaseModel):
    id: int
    name: str


class Tagged(BaseModel):
    id: int
    tag: str


@stage
def tag(rows: list[Row]) -> list[Tagged]:
    return [Tagged(id=r.id, tag=f"{r.name}-{r.id % 7}") for r in rows]


@stage
def tag_stream(rows: Iterable[Row]) -> Iterator[Tagged]:
    for r in rows:
        yield Tagged(id=r.id, tag=f"{r.name}-{r.id % 7}")


@stage
def total(rows: list[Row]) -> int:
    return len(rows)


def base_event(bucket: str, current: str = "Fan") -> dict[str, Any]:
    return {
        "executionId": RUN,
        "currentStage": current,
        "previousStage": PREV,
        "workflowBucket": bucket,
    }


def write_previous(io: StageIO, bucket: str, records: list[dict[str, Any]], fmt: str) -> None:
    """The previous stage's output in one of the formats a fanned-out stage may read."""
    ref = OutputRef(bucket, RUN, PREV)
    if fmt == "json":
        io.write_document(ref, records, records=len(records))
    elif fmt == "json-unlabelled":  # a foreign writer: no record count in the metadata
        io.store.put(bucket, ref.key, orjson.dumps(records), content_type=JSON)
    elif fmt == "jsonl":
        io.write_jsonl(ref, records)
    elif fmt == "jsonl-unlabelled":
        body = b"".join(orjson.dumps(r) + b"\n" for r in records)
        io.store.put(bucket, ref.key, body, content_type=JSONL)
    else:  # a manifest of small parts
        io.write_jsonl(ref, records, part_bytes=int(fmt.split("-")[1]))


def run_fanned_out(
    runtime: Any, io: StageIO, bucket: str, records_per_shard: int, current: str = "Fan"
) -> dict[str, Any]:
    base = base_event(bucket, current)
    planned = runtime.invoke({**base, "ceapPhase": "plan", "recordsPerShard": records_per_shard})
    shards = read_plan(io, OutputRef(bucket, RUN, current))
    assert planned["shards"] == len(shards)
    for event in shard_events(base, shards):
        runtime.invoke(event)
    pointer: dict[str, Any] = runtime.invoke({**base, "ceapPhase": "collect"})
    return pointer


class Planned(NamedTuple):
    store: LocalStore
    io: StageIO
    runtime: Any
    base: dict[str, Any]
    events: list[dict[str, Any]]


def planned(
    tmp_path: Path, records: list[dict[str, Any]], records_per_shard: int, fmt: str = "json"
) -> Planned:
    """A LocalStore holding the previous stage's ``records`` (bucket ``bkt-1``), stage ``tag``
    planned over them, and the events of its shards."""
    store = LocalStore(tmp_path)
    io = StageIO(store)
    write_previous(io, "bkt-1", records, fmt)
    runtime = tag.runtime.using_store(store)
    base = base_event("bkt-1")
    runtime.invoke({**base, "ceapPhase": "plan", "recordsPerShard": records_per_shard})
    events = list(shard_events(base, read_plan(io, OutputRef("bkt-1", RUN, "Fan"))))
    return Planned(store, io, runtime, base, events)


FORMATS = ["json", "json-unlabelled", "jsonl", "jsonl-unlabelled", "manifest-64", "manifest-300"]


@settings(max_examples=40, deadline=None)
@given(
    records=st.lists(
        st.builds(
            lambda i, name: {"id": i, "name": name},
            st.integers(-(2**40), 2**40),
            st.text(max_size=12),
        ),
        max_size=60,
    ),
    records_per_shard=st.integers(1, 70),
    fmt=st.sampled_from(FORMATS),
    streamed=st.booleans(),
)
def test_fanned_out_records_equal_the_single_run_records(
    records: list[dict[str, Any]], records_per_shard: int, fmt: str, streamed: bool
) -> None:
    store = LocalStore(tempfile.mkdtemp())
    io = StageIO(store)
    write_previous(io, "bkt-1", records, fmt)
    runtime = (tag_stream if streamed else tag).runtime.using_store(store)
    runtime.invoke(base_event("bkt-1", "Single"))
    pointer = run_fanned_out(runtime, io, "bkt-1", records_per_shard)
    single = io.read(OutputRef("bkt-1", RUN, "Single")).value
    fanned = io.read(OutputRef("bkt-1", RUN, "Fan")).value
    assert fanned == single
    assert pointer["recordsProcessed"] == len(records)
    assert pointer["output"]["format"] == "manifest"


def test_phases_on_each_store(backend: Backend) -> None:
    io = StageIO(backend.store)
    records = [{"id": i, "name": f"n{i}"} for i in range(25)]
    write_previous(io, backend.bucket, records, "manifest-100")
    runtime = tag.runtime.using_store(backend.store)
    pointer = run_fanned_out(runtime, io, backend.bucket, 4)
    manifest = orjson.loads(backend.read(f"executions/{RUN}/Fan/output.json") or b"")
    keys = [p["key"] for p in manifest["parts"]]
    assert keys == [f"executions/{RUN}/Fan/shards/{n:05d}.jsonl" for n in range(len(keys))]
    assert manifest["records"] == 25 == pointer["recordsProcessed"]
    assert [r["id"] for r in io.read(OutputRef(backend.bucket, RUN, "Fan")).value] == list(
        range(25)
    )


def _shard_lines(store: LocalStore, bucket: str) -> list[bytes]:
    obj = store.get(bucket, f"executions/{RUN}/Fan/shards.jsonl")
    assert obj is not None
    return obj.body.splitlines()


def test_plan_lines_are_small_and_a_replanned_plan_is_the_same_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    io = StageIO(store)
    write_previous(io, "bkt-1", [{"id": i, "name": "x" * 50} for i in range(500)], "jsonl")
    runtime = tag.runtime.using_store(store)
    event = {**base_event("bkt-1"), "ceapPhase": "plan", "recordsPerShard": 30}
    first = runtime.invoke(event)
    lines = _shard_lines(store, "bkt-1")
    runtime.invoke({**event, "retryCount": 1})
    assert _shard_lines(store, "bkt-1") == lines
    assert first["shards"] == len(lines) == 17
    assert all(len(line) < 1024 for line in lines)
    assert orjson.loads(lines[0])["slice"]["kind"] == "bytes"


def test_a_retried_shard_writes_the_same_bytes(tmp_path: Path) -> None:
    store, _, runtime, _, events = planned(
        tmp_path, [{"id": i, "name": "n"} for i in range(40)], 10
    )
    event = events[0]
    first = runtime.invoke(event)
    body = store.get("bkt-1", first["output"]["key"])
    again = runtime.invoke({**event, "retryCount": 1})
    assert again["output"]["sha256"] == first["output"]["sha256"]
    assert store.get("bkt-1", first["output"]["key"]) == body
    assert first["recordsProcessed"] == 10


def test_a_missing_shard_output_fails_collect_naming_it(tmp_path: Path) -> None:
    store, _, runtime, base, events = planned(
        tmp_path, [{"id": i, "name": "n"} for i in range(30)], 10
    )
    for event in events[:1] + events[2:]:
        runtime.invoke(event)
    with pytest.raises(InputNotFoundError) as caught:
        runtime.invoke({**base, "ceapPhase": "collect"})
    missing = f"executions/{RUN}/Fan/shards/00001.jsonl"
    assert caught.value.key == missing
    assert "1 of 3 shards" in str(caught.value)
    assert store.get("bkt-1", f"executions/{RUN}/Fan/output.json") is None


@pytest.mark.parametrize(("tolerated", "succeeds"), [(0, False), (20, False), (25, True)])
def test_collect_honours_the_tolerated_failure_percentage(
    tmp_path: Path, tolerated: int, succeeds: bool
) -> None:
    store, io, runtime, base, events = planned(
        tmp_path, [{"id": i, "name": "n"} for i in range(40)], 10
    )
    for event in events[1:]:  # shard 0 failed: one of four is 25 %
        runtime.invoke(event)
    collect = {**base, "ceapPhase": "collect", "toleratedFailurePercentage": tolerated}
    if not succeeds:
        with pytest.raises(InputNotFoundError, match="1 of 4 shards"):
            runtime.invoke(collect)
        assert store.get("bkt-1", f"executions/{RUN}/Fan/output.json") is None
        return
    pointer = runtime.invoke(collect)
    assert pointer["recordsProcessed"] == 30
    assert pointer["shardsMissing"] == 1
    assert [r["id"] for r in io.read(OutputRef("bkt-1", RUN, "Fan")).value] == list(range(10, 40))


def _valid_shard() -> dict[str, Any]:
    line: dict[str, Any] = orjson.loads(Shard(RUN, "Fan", PREV, 0, 1, PartRange(0, 1)).to_line())
    return line


@pytest.mark.parametrize(
    ("change", "fact"),
    [
        ({"stage": "Other"}, "belongs to stage 'Other'"),
        ({"executionId": "run-other"}, "of execution 'run-other'"),
        ({"previousStage": "Elsewhere"}, "(previous 'Elsewhere')"),
        ({"ceap": "shard/9"}, "is not a 'shard/1' object"),
        ({"index": 3}, "index is not a number below"),
        ({"slice": {"kind": "rows", "start": 0, "stop": 1}}, "slice kind 'rows' is unknown"),
        ({"slice": {"kind": "bytes", "start": 5, "stop": 1}}, "start <= stop"),
    ],
)
def test_a_shard_that_is_not_one_of_this_stage_is_refused_and_nothing_written(
    backend: Backend, change: dict[str, Any], fact: str
) -> None:
    io = StageIO(backend.store)
    write_previous(io, backend.bucket, [{"id": 1, "name": "n"}], "json")
    before = backend.all_keys()
    event = {
        **base_event(backend.bucket),
        "ceapPhase": "shard",
        "shard": {**_valid_shard(), **change},
    }
    with pytest.raises(InputValidationError) as caught:
        tag.runtime.using_store(backend.store).invoke(event)
    assert fact in str(caught.value)
    assert backend.all_keys() == before


def test_a_shards_jsonl_line_of_another_stage_fails_collect(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    line = Shard(RUN, "Other", PREV, 0, 1, PartRange(0, 1)).to_line()
    store.put("bkt-1", f"executions/{RUN}/Fan/shards.jsonl", line, content_type=JSONL)
    with pytest.raises(InputValidationError, match="not shard 0 of stage 'Fan'") as caught:
        tag.runtime.using_store(store).invoke({**base_event("bkt-1"), "ceapPhase": "collect"})
    assert caught.value.key == f"executions/{RUN}/Fan/shards.jsonl"
    assert store.get("bkt-1", f"executions/{RUN}/Fan/output.json") is None


def test_an_invalid_record_fails_its_shard_naming_it(tmp_path: Path) -> None:
    records = [{"id": i, "name": "n"} for i in range(10)]
    records[7] = {"id": "seven", "name": "n"}
    store, _, runtime, _, (event,) = planned(tmp_path, records, 100, "jsonl")
    with pytest.raises(InputValidationError, match="record 7 of shard 0 fails the input model"):
        runtime.invoke(event)
    assert store.list_keys("bkt-1", f"executions/{RUN}/Fan/shards/") == []


def test_plan_refuses_a_stage_whose_models_are_not_list_like(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    write_previous(StageIO(store), "bkt-1", [{"id": 1, "name": "n"}], "json")
    event = {**base_event("bkt-1"), "ceapPhase": "plan", "recordsPerShard": 1}
    with pytest.raises(HandlerDefinitionError, match="list-like or Iterable\\[X\\] output model"):
        total.runtime.using_store(store).invoke(event)
    assert store.get("bkt-1", f"executions/{RUN}/Fan/shards.jsonl") is None


@pytest.mark.parametrize(
    ("change", "error", "fact"),
    [
        ({"ceapPhase": "reduce"}, ContextResolutionError, "ceapPhase must be one of"),
        ({"recordsPerShard": 0}, ContextResolutionError, "recordsPerShard must be"),
        ({"previousStage": None}, ContextResolutionError, "a first step cannot be fanned out"),
    ],
)
def test_bad_plan_events_are_refused(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], fact: str
) -> None:
    store = LocalStore(tmp_path)
    write_previous(StageIO(store), "bkt-1", [{"id": 1, "name": "n"}], "json")
    event = {**base_event("bkt-1"), "ceapPhase": "plan", "recordsPerShard": 1, **change}
    with pytest.raises(error, match=fact):
        tag.runtime.using_store(store).invoke(event)
    assert store.list_keys("bkt-1", f"executions/{RUN}/Fan/") == []


@pytest.mark.parametrize("fmt", ["jsonl", "manifest-200"])
def test_planning_reads_no_record_data(tmp_path: Path, fmt: str) -> None:
    store = CountingStore(LocalStore(tmp_path))
    io = StageIO(store)
    write_previous(io, "bkt-1", [{"id": i, "name": "n" * 20} for i in range(300)], fmt)
    store.bytes_read_by_key.clear()
    event = {**base_event("bkt-1"), "ceapPhase": "plan", "recordsPerShard": 50}
    pointer = tag.runtime.using_store(store).invoke(event)
    record_bytes = {
        k: n for k, n in store.bytes_read_by_key.items() if "/parts/" in k or fmt == "jsonl"
    }
    assert record_bytes == {}
    assert pointer["shards"] >= 6


def test_a_large_part_is_cut_into_byte_ranges_and_small_parts_grouped(tmp_path: Path) -> None:
    from ceap_stage._formats import Manifest, ManifestPart
    from ceap_stage._io import OutputDescription

    prefix = f"executions/{RUN}/{PREV}/parts/w/"
    parts = (
        ManifestPart(prefix + "a", 100),
        ManifestPart(prefix + "b", 100),
        ManifestPart(prefix + "c", 1000),
        ManifestPart(prefix + "d", 100),
    )
    ref = OutputRef("bkt-1", RUN, PREV)
    description = OutputDescription(
        ref, "manifest", None, 400, manifest=Manifest(130, parts), records=130
    )
    slices = plan_shards(description, 20)  # about 200 bytes a shard
    assert slices == [
        PartRange(0, 2),
        PartBytes(2, 0, 200),
        PartBytes(2, 200, 400),
        PartBytes(2, 400, 600),
        PartBytes(2, 600, 800),
        PartBytes(2, 800, 1000),
        PartRange(3, 4),
    ]


def test_the_shards_and_the_manifest_carry_the_stage_s_schema_metadata(tmp_path: Path) -> None:
    from ceap_stage._models import FINGERPRINT_KEY

    store = LocalStore(tmp_path)
    io = StageIO(store)
    write_previous(io, "bkt-1", [{"id": i, "name": "n"} for i in range(12)], "json")
    runtime = tag.runtime.using_store(store)
    run_fanned_out(runtime, io, "bkt-1", 5)
    expected = runtime.output_metadata(OutputRef("bkt-1", RUN, "Fan"), 0)
    fanned = store.head("bkt-1", f"executions/{RUN}/Fan/output.json")
    shard = store.head("bkt-1", f"executions/{RUN}/Fan/shards/00002.jsonl")
    assert fanned is not None
    assert shard is not None
    for info in (fanned, shard):
        assert info.metadata[FINGERPRINT_KEY] == expected[FINGERPRINT_KEY]
        assert info.metadata["ceap-schema"] == "list[Tagged]"
    assert fanned.metadata["ceap-records"] == "12"
    assert shard.metadata["ceap-records"] == "2"


def test_each_phase_says_which_it_is_and_records_are_counted_once(tmp_path: Path) -> None:
    from ceap_stage.testing import capture_logs

    store = LocalStore(tmp_path)
    io = StageIO(store)
    rows = [{"id": i, "name": "n"} for i in range(10)]
    write_previous(io, "bkt-fan", rows, "json")
    with capture_logs() as captured:
        pointer = run_fanned_out(tag.runtime.using_store(store), io, "bkt-fan", 4)
    assert pointer["recordsProcessed"] == 10
    finished = [r for r in captured.records if r["message"] == "stage finished"]
    assert [(r["phase"], r.get("shard")) for r in finished] == [
        ("plan", None),
        ("shard", 0),
        ("shard", 1),
        ("shard", 2),
        ("collect", None),
    ]
    assert finished[0]["planned_records"] == 10
    assert finished[-1]["collected_records"] == 10
    # RecordsProcessed counts each record once (in its shard), not in the plan and collect too
    assert sum(m["RecordsProcessed"][0] for m in captured.metrics) == 10
    assert all(r["process_ms"] >= 0 and r["read_ms"] >= 0 for r in finished)


def test_a_failing_shard_is_named_on_its_failure_line(tmp_path: Path) -> None:
    from ceap_stage.testing import capture_logs

    _, _, runtime, _, events = planned(
        tmp_path, [{"id": 1, "name": "a"}, {"id": "x", "name": "b"}], 1
    )
    with capture_logs() as captured, pytest.raises(InputValidationError):
        runtime.invoke(events[1])
    failed = captured.records[-1]
    assert (failed["message"], failed["phase"], failed["shard"]) == ("stage failed", "shard", 1)
