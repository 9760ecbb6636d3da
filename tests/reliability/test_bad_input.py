"""A corpus of bad inputs: each gets the contract's error class, a message free of payload data
(every payload carries a sentinel string), and no write.

Events that break the wire contract are refused before any store call. Stored inputs (the
previous stage's output) are read but never lead to a write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from ceap_stage import (
    CeapStageError,
    ContextResolutionError,
    InputNotFoundError,
    InputValidationError,
    LocalStore,
    OutputValidationError,
    PutResult,
    stage,
)
from ceap_stage._formats import JSON, JSONL, MANIFEST
from ceap_stage._observability import Observer
from ceap_stage._store import OpenedObject, StoredObject

SENTINEL = "SENTINEL-c0ffee-42"
SENTINEL_BYTES = SENTINEL.encode()
BUCKET = "ceap-bad-input"
RUN = "run-bad-1"
PREV_KEY = f"executions/{RUN}/Prev/output.json"
PARTS = f"executions/{RUN}/Prev/parts/"


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str
    amount: float
    qty: int = Field(default=1, le=1_000_000_000)
    status: Literal["new", "paid"] = "new"


class Click(BaseModel):
    kind: Literal["click"]
    target: str


class View(BaseModel):
    kind: Literal["view"]
    seconds: float


Interaction = Annotated[Click | View, Field(discriminator="kind")]


class Node(BaseModel):
    name: str = "n"
    children: list[Node] = []


def nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {"name": SENTINEL, "children": []}
    current = root
    for _ in range(depth):
        child: dict[str, Any] = {"name": SENTINEL, "children": []}
        current["children"].append(child)
        current = child
    current["name"] = 0  # fails the model at the deepest level
    return root


class RecordingStore(LocalStore):
    """A LocalStore that records every call made to it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[str] = []

    def get(self, bucket: str, key: str) -> StoredObject | None:
        self.calls.append("get")
        return super().get(bucket, key)

    def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        self.calls.append("open")
        return super().open_object(bucket, key)

    def put(self, bucket: str, key: str, body: bytes, **kwargs: Any) -> PutResult:
        self.calls.append("put")
        return super().put(bucket, key, body, **kwargs)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        self.calls.append("list")
        return super().list_keys(bucket, prefix)

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        self.calls.append("delete")
        super().delete(bucket, keys)


def order(**overrides: Any) -> dict[str, Any]:
    return {"order_id": SENTINEL, "amount": 12.5, "qty": 2, **overrides}


def doc(value: Any) -> bytes:
    return orjson.dumps(value)


def lines(*values: Any) -> bytes:
    return b"".join(orjson.dumps(v) + b"\n" for v in values)


@dataclass
class Case:
    """One bad input: the event, the stored objects, and the expected error class."""

    error: type[CeapStageError]
    body: bytes | None = None  # the previous stage's output.json (None: not stored)
    content_type: str | None = JSON  # None: a plain file, recognised by content
    event: Any = None  # replaces the default event (reading the previous stage's output)
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # other stored objects
    handler: str = "orders"  # orders | stream | interactions
    match: str | None = None  # a fragment the message must contain


def manifest(*parts: tuple[str, int], records: int = 1, **extra: Any) -> bytes:
    value = {
        "ceap": "manifest/1",
        "format": "jsonl",
        "records": records,
        "parts": [{"key": k, "bytes": n} for k, n in parts],
        **extra,
    }
    return doc(value)


GOOD_PART = lines(order())
DEEP = b"[" * 5000 + b"]" * 5000
FIRST_STAGE = {"executionId": RUN, "currentStage": "Score", "workflowBucket": BUCKET}

CASES: dict[str, Case] = {
    # -- JSON documents ---------------------------------------------------------------------
    "truncated-json": Case(InputValidationError, doc([order()])[:-7], match="not valid JSON"),
    "truncated-json-sniffed": Case(InputValidationError, doc([order()])[:-7], None),
    "wrong-type-amount": Case(InputValidationError, doc([order(amount=SENTINEL)]), match="amount"),
    "wrong-type-order-id": Case(InputValidationError, doc([order(order_id=42)])),
    "missing-field": Case(InputValidationError, doc([{"order_id": SENTINEL}]), match="missing"),
    "extra-field-named-by-payload": Case(InputValidationError, doc([order(**{SENTINEL: 1})])),
    "literal-mismatch": Case(InputValidationError, doc([order(status=SENTINEL)])),
    "object-for-a-list-model": Case(InputValidationError, doc(order())),
    "empty-object": Case(InputValidationError, b"{}"),
    "null-document": Case(InputValidationError, b"null"),
    # (An empty file with no Content-Type is an empty JSON Lines input: valid.)
    "empty-manifest": Case(InputValidationError, b"", MANIFEST, match="not valid JSON"),
    "huge-float": Case(
        InputValidationError, b'[{"order_id": "' + SENTINEL_BYTES + b'", "amount": 1e400}]'
    ),
    "huge-integer": Case(InputValidationError, doc([order(qty=10**18)]), match="qty"),
    "integer-beyond-64-bits": Case(
        InputValidationError,
        b'[{"order_id": "' + SENTINEL_BYTES + b'", "amount": 1, "qty": 1' + b"0" * 40 + b"}]",
    ),
    "nan-literal": Case(
        InputValidationError, b'[{"order_id": "' + SENTINEL_BYTES + b'", "amount": NaN}]'
    ),
    "deep-nesting": Case(InputValidationError, DEEP, match="depth"),
    "deep-nesting-sniffed": Case(InputValidationError, DEEP, None),
    "deep-nesting-in-a-field": Case(
        InputValidationError, b'[{"order_id": ' + b"[" * 600 + b"]" * 600 + b', "amount": 1}]'
    ),
    "invalid-utf8": Case(
        InputValidationError,
        b'[{"order_id": "\xff\xfe' + SENTINEL_BYTES + b'", "amount": 1}]',
        match="UTF-8",
    ),
    "invalid-utf8-sniffed": Case(
        InputValidationError, b'[{"order_id": "\xc3\x28' + SENTINEL_BYTES + b'"}]', None
    ),
    "bom": Case(InputValidationError, b"\xef\xbb\xbf" + doc([order()]), match="byte order mark"),
    "bom-sniffed": Case(InputValidationError, b"\xef\xbb\xbf" + doc([order()]), None),
    "binary-garbage": Case(InputValidationError, b"\x00\x01\x02" + SENTINEL_BYTES, None),
    "discriminator-tag-from-payload": Case(
        InputValidationError, doc([{"kind": SENTINEL, "target": "x"}]), handler="interactions"
    ),
    # -- JSON Lines -------------------------------------------------------------------------
    "jsonl-broken-line": Case(
        InputValidationError,
        lines(order(), order())[:-5] + b"\n" + lines(order()),
        JSONL,
        match="line 2",
    ),
    "jsonl-record-fails-model": Case(
        InputValidationError, lines(order(), order(amount=SENTINEL)), JSONL, match="[1].amount"
    ),
    "jsonl-invalid-utf8-line": Case(
        InputValidationError,
        lines(order()) + b'{"a": "\xff' + SENTINEL_BYTES + b'"}\n',
        JSONL,
        match="line 2 is not valid UTF-8",
    ),
    "jsonl-sniffed-broken-line": Case(
        InputValidationError, lines(order()) + b"{" + SENTINEL_BYTES + b"\n", None, match="line 2"
    ),
    "jsonl-streamed-broken-line": Case(
        InputValidationError,
        lines(order(), order()) + b'{"order_id": "' + SENTINEL_BYTES,
        JSONL,
        handler="stream",
        match="line 3",
    ),
    "jsonl-streamed-record-fails-model": Case(
        InputValidationError,
        lines(order(), order(qty=SENTINEL)),
        JSONL,
        handler="stream",
        match="line 2",
    ),
    "document-for-a-stream-model": Case(InputValidationError, doc(order()), handler="stream"),
    # -- manifests --------------------------------------------------------------------------
    "manifest-part-outside-prefix": Case(
        InputValidationError,
        manifest(("executions/other-run/Prev/parts/p0.jsonl", len(GOOD_PART))),
        MANIFEST,
        objects={"executions/other-run/Prev/parts/p0.jsonl": (GOOD_PART, JSONL)},
        match="outside",
    ),
    "manifest-part-path-traversal": Case(
        InputValidationError,
        manifest((PARTS + "../../../other-run/Prev/output.json", len(GOOD_PART))),
        MANIFEST,
        match="outside",
    ),
    "manifest-part-in-another-bucket-url": Case(
        InputValidationError, manifest(("s3://elsewhere/" + PARTS + "p0.jsonl", 10)), MANIFEST
    ),
    "manifest-part-outside-prefix-streamed": Case(
        InputValidationError,
        manifest(("executions/other-run/Prev/parts/p0.jsonl", len(GOOD_PART))),
        MANIFEST,
        objects={"executions/other-run/Prev/parts/p0.jsonl": (GOOD_PART, JSONL)},
        handler="stream",
        match="outside",
    ),
    "manifest-missing-part": Case(
        InputValidationError, manifest((PARTS + "p0.jsonl", 10)), MANIFEST, match="does not exist"
    ),
    "manifest-missing-part-streamed": Case(
        InputValidationError,
        manifest((PARTS + "p0.jsonl", 10)),
        MANIFEST,
        handler="stream",
        match="does not exist",
    ),
    "manifest-part-size-mismatch": Case(
        InputValidationError,
        manifest((PARTS + "p0.jsonl", len(GOOD_PART) + 1)),
        MANIFEST,
        objects={PARTS + "p0.jsonl": (GOOD_PART, JSONL)},
        match="bytes",
    ),
    "manifest-record-count-mismatch": Case(
        InputValidationError,
        manifest((PARTS + "p0.jsonl", len(GOOD_PART)), records=5),
        MANIFEST,
        objects={PARTS + "p0.jsonl": (GOOD_PART, JSONL)},
        match="records",
    ),
    "manifest-part-broken-line": Case(
        InputValidationError,
        manifest((PARTS + "p0.jsonl", 16)),
        MANIFEST,
        objects={PARTS + "p0.jsonl": (b'{"order_id": "S\n', JSONL)},
    ),
    "manifest-parts-not-a-list": Case(
        InputValidationError, doc({"ceap": "manifest/1", "records": 1, "parts": SENTINEL}), MANIFEST
    ),
    "manifest-unknown-version": Case(
        InputValidationError, doc({"ceap": "manifest/9", "parts": [], "x": SENTINEL}), MANIFEST
    ),
    "manifest-other-part-format": Case(
        InputValidationError, manifest(records=0, format="parquet"), MANIFEST, match="format"
    ),
    "manifest-negative-records": Case(InputValidationError, manifest(records=-1), MANIFEST),
    # -- missing input ----------------------------------------------------------------------
    "no-previous-output": Case(InputNotFoundError, None, match="has no output"),
    # -- events -----------------------------------------------------------------------------
    "event-not-an-object": Case(ContextResolutionError, event=[SENTINEL]),
    "event-missing-execution-id": Case(
        ContextResolutionError, event={"currentStage": "Score", "initialData": SENTINEL}
    ),
    "event-execution-id-wrong-type": Case(
        ContextResolutionError, event={**FIRST_STAGE, "executionId": 7, "initialData": SENTINEL}
    ),
    "event-execution-id-traversal": Case(
        ContextResolutionError, event={**FIRST_STAGE, "executionId": "../other-run"}
    ),
    "event-execution-id-too-long": Case(
        ContextResolutionError, event={**FIRST_STAGE, "executionId": "r" * 81}
    ),
    "event-execution-id-whitespace": Case(
        ContextResolutionError, event={**FIRST_STAGE, "executionId": "run 1\n"}
    ),
    "event-lambda-arn": Case(
        ContextResolutionError,
        event={**FIRST_STAGE, "executionId": "arn:aws:lambda:eu-west-1:123456789012:function:f"},
    ),
    "event-state-machine-arn": Case(
        ContextResolutionError,
        event={
            **FIRST_STAGE,
            "executionId": "arn:aws:states:eu-west-1:123456789012:stateMachine:Flow",
        },
    ),
    "event-activity-arn": Case(
        ContextResolutionError,
        event={**FIRST_STAGE, "executionId": "arn:aws:states:eu-west-1:123456789012:activity:a"},
    ),
    "event-other-stage": Case(
        ContextResolutionError, event={**FIRST_STAGE, "currentStage": "Other"}
    ),
    "event-previous-stage-wrong-type": Case(
        ContextResolutionError, event={**FIRST_STAGE, "previousStage": ["Prev"]}
    ),
    "event-bucket-wrong-type": Case(
        ContextResolutionError, event={**FIRST_STAGE, "workflowBucket": {"name": SENTINEL}}
    ),
    "event-bucket-invalid-name": Case(
        ContextResolutionError, event={**FIRST_STAGE, "workflowBucket": "Not_A_Bucket"}
    ),
    "event-retry-count-negative": Case(
        ContextResolutionError, event={**FIRST_STAGE, "retryCount": -1, "initialData": []}
    ),
    "event-retry-count-string": Case(
        ContextResolutionError, event={**FIRST_STAGE, "retryCount": "1", "initialData": []}
    ),
    "event-first-stage-without-initial-data": Case(ContextResolutionError, event=FIRST_STAGE),
    "event-initial-data-broken-json-string": Case(
        InputValidationError, event={**FIRST_STAGE, "initialData": '[{"order_id": "' + SENTINEL}
    ),
    "event-initial-data-wrong-type": Case(
        InputValidationError, event={**FIRST_STAGE, "initialData": {"order_id": SENTINEL}}
    ),
    "event-pipes-batch-body-not-json": Case(
        InputValidationError,
        event={
            **FIRST_STAGE,
            "initialData": [
                {"messageId": "m-1", "eventSource": "aws:sqs", "body": "{" + SENTINEL},
            ],
        },
        match="messageId m-1",
    ),
    "deep-recursive-model": Case(
        InputValidationError, event={**FIRST_STAGE, "initialData": nested(5000)}, handler="tree"
    ),
    "deep-recursive-model-stored": Case(
        InputValidationError, doc(nested(120)), handler="tree", match="..."
    ),
    "event-initial-data-scalar-for-a-stream": Case(
        InputValidationError, event={**FIRST_STAGE, "initialData": SENTINEL}, handler="stream"
    ),
}


def handlers(store: LocalStore) -> dict[str, Any]:
    @stage(name="Score", store=store, observer=Observer())
    def orders(data: list[Order]) -> list[Order]:
        return data

    @stage(name="Score", store=store, observer=Observer())
    def stream(data: Iterator[Order]) -> Iterator[Order]:
        yield from data

    @stage(name="Score", store=store, observer=Observer())
    def interactions(data: list[Interaction]) -> int:
        return len(data)

    @stage(name="Score", store=store, observer=Observer())
    def tree(data: Node) -> int:
        return 1

    return {"orders": orders, "stream": stream, "interactions": interactions, "tree": tree}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path):
    case = CASES[name]
    store = RecordingStore(tmp_path)
    if case.body is not None:
        if case.content_type is None:  # a plain file: no Content-Type
            path = store.path(BUCKET, PREV_KEY)
            path.parent.mkdir(parents=True)
            path.write_bytes(case.body)
        else:
            store.put(BUCKET, PREV_KEY, case.body, content_type=case.content_type)
    for key, (body, content_type) in case.objects.items():
        store.put(BUCKET, key, body, content_type=content_type)
    store.calls.clear()
    event = case.event or {
        "executionId": RUN,
        "currentStage": "Score",
        "previousStage": "Prev",
        "workflowBucket": BUCKET,
    }

    with pytest.raises(CeapStageError) as info:
        handlers(store)[case.handler](event)

    error = info.value
    assert type(error) is case.error, f"{type(error).__name__}: {error}"
    message = str(error)
    assert SENTINEL not in message
    assert SENTINEL not in repr(error)
    assert SENTINEL not in str(error.args)
    if case.match is not None:
        assert case.match in message
    if error.execution_id is not None:
        assert f"execution_id={error.execution_id}" in message
    if case.event is None:  # a stored input: the message names the run, the stage and the key
        assert (error.execution_id, error.stage) == (RUN, "Score")
        assert error.key is not None
        assert error.key.startswith(f"executions/{RUN}/Prev/")
    if case.error is ContextResolutionError:
        assert store.calls == []  # refused before any store call
    assert "put" not in store.calls
    assert "delete" not in store.calls
    assert store.list_keys(BUCKET, f"executions/{RUN}/Score/") == []


def test_a_deeply_nested_output_is_an_output_error_not_a_crash(tmp_path: Path):
    store = RecordingStore(tmp_path)

    @stage(name="Score", store=store, observer=Observer())
    def deep(data: int) -> dict[str, Any]:
        value: list[Any] = []
        current = value
        for _ in range(100_000):
            child: list[Any] = [SENTINEL]
            current.append(child)
            current = child
        return {"deep": value}

    with pytest.raises(OutputValidationError) as info:
        deep({**FIRST_STAGE, "initialData": 1})
    assert SENTINEL not in str(info.value)
    assert "put" not in store.calls
    assert store.list_keys(BUCKET, f"executions/{RUN}/") == []
