"""Large payloads: streamed input and output, partitioned outputs, bounded memory."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from ceap_stage import (
    HandlerDefinitionError,
    InputValidationError,
    LocalStore,
    OutputConflictError,
    OutputValidationError,
    S3Store,
    Store,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage._formats import JSONL, MANIFEST, Manifest, decode
from ceap_stage._observability import Observer
from ceap_stage._store import OpenedObject
from tests.conftest import FAKE_REGION, create_bucket, s3_client

SENTINEL = "SENTINEL-7f3a9c"
BUCKET = "bkt"


class Rec(BaseModel):
    n: int
    name: str


def rec_line(n: int, name: str = "x") -> bytes:
    return orjson.dumps({"n": n, "name": name}) + b"\n"


def jsonl(count: int, name: str = "x") -> bytes:
    return b"".join(rec_line(n, name) for n in range(count))


def event(
    stage_name: str, previous: str | None = "Prev", execution_id: str = "run-1"
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "executionId": execution_id,
        "currentStage": stage_name,
        "workflowBucket": BUCKET,
    }
    if previous is not None:
        ev["previousStage"] = previous
    return ev


def keys(store: Store, execution_id: str = "run-1", stage_name: str = "S") -> list[str]:
    return store.list_keys(BUCKET, f"executions/{execution_id}/{stage_name}/")


def read_records(store: Store, key: str) -> Any:
    obj = store.get(BUCKET, key)
    assert obj is not None
    fmt, value = decode(obj.body, obj.content_type)
    if isinstance(value, Manifest):
        records: list[Any] = []
        for part in value.parts:
            part_obj = store.get(BUCKET, part.key)
            assert part_obj is not None
            assert len(part_obj.body) == part.bytes
            records.extend(orjson.loads(line) for line in part_obj.body.splitlines())
        assert len(records) == value.records
        return records
    return value if fmt == "json" else list(value)


class CountingStore(LocalStore):
    """A LocalStore that counts the bytes its streams hand out."""

    read_bytes = 0

    def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        opened = super().open_object(bucket, key)
        if opened is None:
            return None
        outer = self
        inner = opened.stream

        class Counting:
            def read(self, size: int = -1) -> bytes:
                data = inner.read(size)
                outer.read_bytes += len(data)
                return data

            def close(self) -> None:
                inner.close()

        return OpenedObject(Counting(), opened.content_type, opened.size)  # type: ignore[arg-type]


def identity_stream(store: Store, **options: Any):
    @stage(name="S", store=store, observer=Observer(), **options)
    def copy(records: Iterator[Rec]) -> Iterator[Rec]:
        yield from records

    return copy


# -- streamed input ---------------------------------------------------------------------------


def test_an_iterator_input_is_read_lazily(tmp_path: Path):
    store = CountingStore(tmp_path)
    body = jsonl(100_000)  # about 2.3 MB
    store.put(BUCKET, "executions/run-1/Prev/output.json", body, content_type=JSONL)
    seen: list[Rec] = []

    @stage(name="S", store=store, observer=Observer())
    def first_only(records: Iterator[Rec]) -> Rec:
        seen.append(next(records))
        return seen[0]

    first_only(event("S"))
    assert seen == [Rec(n=0, name="x")]
    assert store.read_bytes <= (1 << 20) < len(body)  # one read chunk, not the object


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (JSONL, jsonl(5)),
        (None, jsonl(5)),  # recognised by content
        ("application/json", orjson.dumps([{"n": n, "name": "x"} for n in range(5)])),
        (None, orjson.dumps([{"n": n, "name": "x"} for n in range(5)], option=orjson.OPT_INDENT_2)),
        (None, b"\n\n" + jsonl(5)),  # leading blank lines
    ],
)
def test_an_iterable_input_accepts_every_format(tmp_path: Path, content_type, body):
    store = LocalStore(tmp_path)
    key = "executions/run-1/Prev/output.json"
    if content_type is None:  # a plain file: no Content-Type recorded
        path = store.path(BUCKET, key)
        path.parent.mkdir(parents=True)
        path.write_bytes(body)
    else:
        store.put(BUCKET, key, body, content_type=content_type)

    @stage(name="S", store=store, observer=Observer())
    def total(records: Iterable[Rec]) -> int:
        return sum(r.n for r in records)

    total(event("S"))
    assert read_records(store, "executions/run-1/S/output.json") == 10


def test_an_iterator_input_reads_manifest_parts_in_order(tmp_path: Path):
    store = LocalStore(tmp_path)
    parts = []
    for i in range(3):
        key = f"executions/run-1/Prev/parts/p{i}.jsonl"
        body = b"".join(rec_line(i * 10 + n) for n in range(10))
        store.put(BUCKET, key, body, content_type=JSONL)
        parts.append({"key": key, "bytes": len(body)})
    manifest = {"ceap": "manifest/1", "format": "jsonl", "records": 30, "parts": parts}
    store.put(
        BUCKET, "executions/run-1/Prev/output.json", orjson.dumps(manifest), content_type=MANIFEST
    )

    @stage(name="S", store=store, observer=Observer())
    def numbers(records: Iterator[Rec]) -> list[int]:
        return [r.n for r in records]

    numbers(event("S"))
    assert read_records(store, "executions/run-1/S/output.json") == list(range(30))


def test_a_first_stage_streams_initial_data_and_pipes_batches(tmp_path: Path):
    store = LocalStore(tmp_path)

    @stage(name="S", store=store, observer=Observer())
    def numbers(records: Iterator[Rec]) -> list[int]:
        return [r.n for r in records]

    numbers({**event("S", None), "initialData": [{"n": 1, "name": "a"}, {"n": 2, "name": "b"}]})
    assert read_records(store, "executions/run-1/S/output.json") == [1, 2]
    batch = [
        {"messageId": f"m{n}", "eventSource": "aws:sqs", "body": orjson.dumps(r).decode()}
        for n, r in enumerate([{"n": 5, "name": "a"}, {"n": 6, "name": "b"}])
    ]
    numbers({**event("S", None, "run-2"), "initialData": batch})
    assert read_records(store, "executions/run-2/S/output.json") == [5, 6]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (jsonl(3) + b'{"n": 3, "name": 7}\n' + jsonl(2), "line 4"),  # fails the model
        (jsonl(3) + b'{"n": 3, "name": "x"\n', "JSON Lines line 4"),  # broken JSON
        (jsonl(2) + b'{"n": "' + SENTINEL.encode() + b'", "name": "x"}\n', "line 3"),
    ],
)
def test_a_bad_record_mid_stream_is_an_input_error_and_writes_nothing(
    tmp_path: Path, body: bytes, problem: str
):
    store = LocalStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", body, content_type=JSONL)
    with pytest.raises(InputValidationError) as info:
        identity_stream(store, part_bytes=40)(event("S"))
    message = str(info.value)
    assert problem in message
    assert "executions/run-1/Prev/output.json" in message
    assert "run-1" in message
    assert SENTINEL not in message
    assert keys(store) == []  # neither output.json nor parts


def test_a_manifest_part_of_another_size_is_refused_while_streaming(tmp_path: Path):
    store = LocalStore(tmp_path)
    key = "executions/run-1/Prev/parts/p0.jsonl"
    store.put(BUCKET, key, jsonl(3), content_type=JSONL)
    manifest = {"ceap": "manifest/1", "records": 3, "parts": [{"key": key, "bytes": 5}]}
    store.put(
        BUCKET, "executions/run-1/Prev/output.json", orjson.dumps(manifest), content_type=MANIFEST
    )
    with pytest.raises(InputValidationError, match="bytes, the manifest says 5") as info:
        identity_stream(store)(event("S"))
    assert info.value.key == key
    assert keys(store) == []


def test_a_manifest_with_a_wrong_record_count_fails_after_streaming(tmp_path: Path):
    store = LocalStore(tmp_path)
    key = "executions/run-1/Prev/parts/p0.jsonl"
    store.put(BUCKET, key, jsonl(3), content_type=JSONL)
    manifest = {"ceap": "manifest/1", "records": 4, "parts": [{"key": key, "bytes": len(jsonl(3))}]}
    store.put(
        BUCKET, "executions/run-1/Prev/output.json", orjson.dumps(manifest), content_type=MANIFEST
    )
    with pytest.raises(InputValidationError, match="says 4 records but its parts hold 3"):
        identity_stream(store)(event("S"))
    assert keys(store) == []


# -- streamed and partitioned output ----------------------------------------------------------


@pytest.mark.parametrize(("output_format", "fmt"), [("json", "json"), ("jsonl", "jsonl")])
def test_a_small_streamed_output_is_one_object(tmp_path: Path, output_format: str, fmt: str):
    store = LocalStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(5), content_type=JSONL)
    pointer = identity_stream(store, output_format=output_format)(event("S"))
    assert pointer["output"]["format"] == fmt
    assert pointer["recordsProcessed"] == 5
    assert keys(store) == ["executions/run-1/S/output.json"]
    assert read_records(store, "executions/run-1/S/output.json") == [
        {"n": n, "name": "x"} for n in range(5)
    ]


def test_a_large_streamed_output_becomes_parts_and_a_manifest(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(1000), content_type=JSONL)
    pointer = identity_stream(store, part_bytes=4096)(event("S"))

    assert pointer["output"]["format"] == "manifest"
    assert pointer["recordsProcessed"] == 1000
    obj = store.get(BUCKET, "executions/run-1/S/output.json")
    assert obj is not None
    assert obj.content_type == MANIFEST
    manifest = Manifest.from_value(orjson.loads(obj.body))
    assert manifest.records == 1000
    assert len(manifest.parts) > 3
    assert all(4096 <= p.bytes < 4096 + 30 for p in manifest.parts[:-1])
    assert sorted(keys(store)) == sorted(
        ["executions/run-1/S/output.json", *(p.key for p in manifest.parts)]
    )
    assert read_records(store, "executions/run-1/S/output.json") == [
        {"n": n, "name": "x"} for n in range(1000)
    ]

    # The next stage reads it, as a list and as a stream.
    @stage(name="Next", store=store, observer=Observer())
    def count(records: list[Rec]) -> int:
        return len(records)

    count(event("Next", "S"))
    assert read_records(store, "executions/run-1/Next/output.json") == 1000


def test_a_list_output_over_the_threshold_is_written_as_parts(tmp_path: Path):
    store = LocalStore(tmp_path)

    @stage(name="S", store=store, observer=Observer(), max_single_object_bytes=2000, part_bytes=700)
    def make(count: int) -> list[Rec]:
        return [Rec(n=n, name="y") for n in range(count)]

    small = make({**event("S", None), "initialData": 10})
    assert small["output"]["format"] == "json"
    large = make({**event("S", None, "run-2"), "initialData": 200})
    assert large["output"]["format"] == "manifest"
    assert large["recordsProcessed"] == 200
    assert read_records(store, "executions/run-2/S/output.json") == [
        {"n": n, "name": "y"} for n in range(200)
    ]
    obj = store.get(BUCKET, "executions/run-2/S/output.json")
    assert obj is not None
    assert obj.metadata["ceap-records"] == "200"


def test_a_rerun_of_a_partitioned_output_is_byte_identical_and_leaves_no_stale_parts(
    tmp_path: Path,
):
    store = LocalStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(500), content_type=JSONL)
    handler = identity_stream(store, part_bytes=2048)
    first = handler(event("S"))
    before = {k: store.get(BUCKET, k).body for k in keys(store)}  # type: ignore[union-attr]
    second = handler(event("S"))
    assert second == first
    assert {k: store.get(BUCKET, k).body for k in keys(store)} == before  # type: ignore[union-attr]

    # A re-run with other data (a redrive after the input changed): only its parts remain.
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(300, "z"), content_type=JSONL)
    handler(event("S"))
    manifest = Manifest.from_value(orjson.loads(store.get(BUCKET, first["output"]["key"]).body))  # type: ignore[union-attr]
    assert sorted(keys(store)) == sorted(
        ["executions/run-1/S/output.json", *(p.key for p in manifest.parts)]
    )
    assert not set(before) - {"executions/run-1/S/output.json"} & set(keys(store))


class Boom(Exception):
    pass


def test_a_failure_mid_stream_writes_no_output_and_cleans_its_parts(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(1000), content_type=JSONL)

    @stage(name="S", store=store, observer=Observer(), part_bytes=1024)
    def explode(records: Iterator[Rec]) -> Iterator[Rec]:
        for r in records:
            if r.n == 800:
                raise Boom("the author's own error")
            yield r

    with pytest.raises(Boom):
        explode(event("S"))
    assert keys(store) == []


def test_a_failure_mid_stream_keeps_the_committed_output_of_an_earlier_run(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(1000), content_type=JSONL)
    identity_stream(store, part_bytes=1024)(event("S"))
    committed = {k: store.get(BUCKET, k).body for k in keys(store)}  # type: ignore[union-attr]

    @stage(name="S", store=store, observer=Observer(), part_bytes=1024)
    def explode(records: Iterator[Rec]) -> Iterator[Rec]:
        for r in records:  # the same records as before, so the same first parts...
            if r.n == 800:
                raise Boom("late failure")
            yield r

    with pytest.raises(Boom):
        explode(event("S"))
    # ...which the committed manifest still needs: nothing of it was deleted.
    assert {k: store.get(BUCKET, k).body for k in keys(store)} == committed  # type: ignore[union-attr]


def test_an_invalid_streamed_output_record_is_an_output_error_and_writes_nothing(tmp_path: Path):
    store = LocalStore(tmp_path)

    @stage(name="S", store=store, observer=Observer(), part_bytes=512)
    def produce(count: int) -> Iterator[Rec]:
        for n in range(count):
            yield Rec(n=n, name="x") if n != 150 else {"n": SENTINEL, "name": "x"}  # type: ignore[misc]

    with pytest.raises(OutputValidationError) as info:
        produce({**event("S", None), "initialData": 300})
    assert "output record 150" in str(info.value)
    assert "executions/run-1/S/output.json" in str(info.value)
    assert SENTINEL not in str(info.value)
    assert keys(store) == []


def test_a_streamed_output_that_is_not_iterable_is_an_output_error(tmp_path: Path):
    store = LocalStore(tmp_path)

    @stage(name="S", store=store, observer=Observer())
    def wrong(count: int) -> Iterable[Rec]:
        bad: Any = {"n": 1, "name": "x"}
        return bad  # type: ignore[no-any-return]

    with pytest.raises(OutputValidationError, match="not an iterable of records"):
        wrong({**event("S", None), "initialData": 1})
    assert keys(store) == []


def test_write_once_with_partitioned_outputs(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(400), content_type=JSONL)
    handler = identity_stream(store, part_bytes=1024, write_once=True)
    first = handler(event("S"))
    committed = {k: store.get(BUCKET, k).body for k in keys(store)}  # type: ignore[union-attr]
    assert handler(event("S")) == first  # identical content: done

    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(400, "other"), content_type=JSONL)
    with pytest.raises(OutputConflictError) as info:
        handler(event("S"))
    assert info.value.key == "executions/run-1/S/output.json"
    # The committed output and its parts are untouched; the refused run's parts are gone.
    assert {k: store.get(BUCKET, k).body for k in keys(store)} == committed  # type: ignore[union-attr]


# -- bounded memory ---------------------------------------------------------------------------


def test_streaming_memory_is_bounded_by_the_part_size_not_the_input(tmp_path: Path):
    store = LocalStore(tmp_path)
    body = jsonl(120_000, "a" * 40)  # about 7.4 MB
    store.put(BUCKET, "executions/run-1/Prev/output.json", body, content_type=JSONL)
    handler = identity_stream(store, part_bytes=256 * 1024)
    tracemalloc.start()
    try:
        pointer = handler(event("S"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pointer["recordsProcessed"] == 120_000
    # One read chunk (1 MiB, split into lines), one part (256 KiB) and bookkeeping; reading the
    # input whole would take the body plus several times it in parsed records.
    assert peak < 6 * 1024 * 1024, peak
    assert len(body) > 7 * 1024 * 1024


# -- S3 (moto over HTTP) ----------------------------------------------------------------------


def test_streaming_end_to_end_on_s3(moto_server: str):
    client = s3_client(moto_server)
    bucket = create_bucket(client)
    client.put_object(
        Bucket=bucket, Key="executions/run-1/Prev/output.json", Body=jsonl(3000), ContentType=JSONL
    )
    store = S3Store(endpoint_url=moto_server, region_name=FAKE_REGION)

    @stage(name="S", store=store, observer=Observer(), part_bytes=16 * 1024)
    def double(records: Iterator[Rec]) -> Iterator[Rec]:
        for r in records:
            yield Rec(n=r.n * 2, name=r.name)

    pointer = double({**event("S"), "workflowBucket": bucket})
    assert pointer["output"]["format"] == "manifest"
    head = client.head_object(Bucket=bucket, Key="executions/run-1/S/output.json")
    assert head["ContentType"] == MANIFEST

    @stage(name="T", store=store, observer=Observer())
    def total(records: Iterator[Rec]) -> int:
        return sum(r.n for r in records)

    total({**event("T", "S"), "workflowBucket": bucket})
    body = client.get_object(Bucket=bucket, Key="executions/run-1/T/output.json")["Body"].read()
    assert orjson.loads(body) == 2 * sum(range(3000))
    listed = client.list_objects_v2(Bucket=bucket, Prefix="executions/run-1/S/parts/")
    manifest = Manifest.from_value(
        orjson.loads(
            client.get_object(Bucket=bucket, Key="executions/run-1/S/output.json")["Body"].read()
        )
    )
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(p.key for p in manifest.parts)


class TrackingStore(LocalStore):
    """A LocalStore that keeps every object it opened."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[OpenedObject] = []

    def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        opened = super().open_object(bucket, key)
        if opened is not None:
            self.opened.append(opened)
        return opened


@pytest.mark.parametrize("consume", [0, 1, 10])
def test_input_streams_are_closed_however_much_the_stage_reads(tmp_path: Path, consume: int):
    store = TrackingStore(tmp_path)
    store.put(BUCKET, "executions/run-1/Prev/output.json", jsonl(10), content_type=JSONL)

    @stage(name="S", store=store, observer=Observer())
    def partial(records: Iterator[Rec]) -> int:
        return sum(1 for _, _ in zip(range(consume), records, strict=False))

    partial(event("S"))
    gc.collect()
    assert store.opened
    assert all(o.stream.closed for o in store.opened)


@pytest.mark.parametrize(
    "options",
    [
        {"part_bytes": 0},
        {"max_single_object_bytes": -1},
        {"part_bytes": True},
        {"part_bytes": "8MB"},
    ],
)
def test_size_options_must_be_positive_byte_counts(options: dict[str, Any]):
    with pytest.raises(HandlerDefinitionError, match="positive number of bytes"):

        @stage(**options)
        def bad(records: Iterator[Rec]) -> Iterator[Rec]:
            return records

    with pytest.raises(HandlerDefinitionError, match="positive number of bytes"):

        class Bad(WorkflowLambdaHandler[list[Rec], list[Rec]]):
            max_single_object_bytes = options.get("max_single_object_bytes", 1)
            part_bytes = options.get("part_bytes", 1)

            def process(self, data: list[Rec], ctx: Any) -> list[Rec]:
                return data
