"""docs/contract.md section 5, row by row, on a LocalStore and on S3 (moto in-process).

Every failure raises the contract's class with a message naming the execution id, the stage and
the S3 key (never payload content), and leaves no ``output.json`` behind. A user's own exception
propagates unchanged. The same rows run against the moto HTTP server in ``test_moto_server.py``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ceap_stage import (
    CeapStageError,
    ContextResolutionError,
    HandlerDefinitionError,
    InputNotFoundError,
    InputValidationError,
    OutputConflictError,
    OutputValidationError,
    S3Store,
    StorageError,
    TransientStorageError,
    stage,
)
from ceap_stage._s3 import RetryPolicy

from ._helpers import BUCKET, RUN, CountingStore, Event, Scored, assert_facts, key_of, make_event
from .conftest import Backend

SECRET = "s3cr3t-user-42@example.com"
GOOD_INPUT = [{"user_id": "u1", "kind": "view", "weight": 2.0}]
OUTPUT = key_of("Score")


def _score(events: list[Event]) -> list[Scored]:
    return [Scored(user_id=e.user_id, score=e.weight) for e in events]


def _no_output(backend: Backend) -> None:
    assert backend.read(OUTPUT) is None
    assert not [k for k in backend.all_keys() if k.endswith("/Score/output.json")]


def test_row_handler_definition_error(backend: Backend):
    with pytest.raises(HandlerDefinitionError, match="broken': has no return annotation"):

        @stage(store=backend.store)
        def broken(events: list[Event]):
            return events

    _no_output(backend)
    assert not HandlerDefinitionError.retryable


@pytest.mark.parametrize(
    ("event", "match", "stage_known"),
    [
        (make_event(bucket="other-bucket"), "never touches another bucket", True),
        (make_event(current_stage="Rank"), "this handler is stage 'Score'", True),
        (make_event(execution_id="run/../x"), "executionId must not contain", False),
        (make_event(retryCount="x"), "retryCount must be", True),
    ],
)
def test_row_context_resolution_error(backend: Backend, event, match, stage_known):
    counting = CountingStore(backend.store)
    handler = stage(store=counting, bucket=backend.bucket, name="Score")(_score)
    with pytest.raises(ContextResolutionError, match=match) as info:
        handler(event)
    if stage_known:
        assert info.value.execution_id == RUN
        assert f"execution_id={RUN}" in str(info.value)
        assert info.value.stage in ("Score", "Rank")
    assert counting.calls == []  # raised before any storage call
    assert not info.value.retryable
    _no_output(backend)


def test_row_input_not_found(backend: Backend):
    with pytest.raises(InputNotFoundError, match="previous stage 'Filter' has no output") as info:
        stage(store=backend.store)(_score)(make_event())
    assert_facts(
        info.value, execution_id=RUN, stage="Score", bucket=backend.bucket, key=key_of("Filter")
    )
    assert f"s3://{backend.bucket}/{key_of('Filter')}" in str(info.value)
    assert not info.value.retryable
    _no_output(backend)


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b'[{"user_id": "' + SECRET.encode() + b'"', "application/json", "not valid JSON"),
        (b'{"user_id": "' + SECRET.encode() + b'"}\nnot json', None, "line 2"),
        (orjson.dumps([{"user_id": SECRET, "kind": 7}]), "application/json", r"\[0\]\.kind"),
        (orjson.dumps({"user_id": SECRET, "kind": "view"}), "application/json", "list\\[Event\\]"),
    ],
    ids=["not-json", "bad-json-lines", "fails-model", "object-for-list"],
)
def test_row_input_validation_error(backend: Backend, body, content_type, match):
    backend.put_raw(key_of("Filter"), body, content_type)
    with pytest.raises(InputValidationError, match=match) as info:
        stage(store=backend.store)(_score)(make_event())
    assert_facts(
        info.value, execution_id=RUN, stage="Score", bucket=backend.bucket, key=key_of("Filter")
    )
    assert SECRET not in str(info.value)
    assert not info.value.retryable
    _no_output(backend)


@pytest.mark.parametrize(
    "returned",
    [
        [{"user_id": SECRET, "score": "not a number " + SECRET}],
        {"user_id": SECRET, "score": 1.0},
        [object()],
    ],
    ids=["fails-model", "object-for-list", "not-serialisable"],
)
def test_row_output_validation_error(backend: Backend, returned: Any):
    @stage(store=backend.store)
    def handler(events: list[Event]) -> list[Scored]:
        return returned  # type: ignore[no-any-return]

    backend.put_raw(key_of("Filter"), orjson.dumps(GOOD_INPUT), "application/json")
    with pytest.raises(OutputValidationError, match="fails the output model") as info:
        handler(make_event())
    assert_facts(info.value, execution_id=RUN, stage="Score", bucket=backend.bucket, key=OUTPUT)
    assert SECRET not in str(info.value)
    assert not info.value.retryable
    _no_output(backend)


def test_row_storage_error(backend: Backend):
    if backend.name == "local":
        # A file where the stage's output directory should be: the disk refuses the write.
        assert backend.root is not None
        blocker = backend.root / backend.bucket / f"executions/{RUN}/Score"
        blocker.parent.mkdir(parents=True)
        blocker.write_bytes(b"")
        bucket = backend.bucket
    else:
        bucket = "ceap-bucket-that-does-not-exist"  # S3: NoSuchBucket, a lasting refusal
    handler = stage(store=backend.store)(_score)
    event = make_event(previous_stage=None, bucket=bucket, initial_data=GOOD_INPUT)
    with pytest.raises(StorageError) as info:
        handler(event)
    assert type(info.value) is StorageError  # lasting: not transient, not a conflict
    assert not info.value.retryable
    assert_facts(info.value, execution_id=RUN, stage="Score", bucket=bucket, key=OUTPUT)
    _no_output(backend)


def _throttle_output_writes(store: S3Store) -> list[str]:
    """botocore's ``before-call`` hook answers output writes with 503 SlowDown.

    (Under ``mock_aws`` a ``before-send`` hook would still let moto store the object.)
    """
    seen: list[str] = []

    def throttle(params: dict[str, Any], **kwargs: Any) -> Any:
        if params.get("url_path", "").endswith("/output.json"):
            seen.append(params["url_path"])
            http = type("Http", (), {"status_code": 503, "headers": {}})()
            error = {"Code": "SlowDown", "Message": "Please reduce your request rate."}
            return http, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 503}}
        return None

    store.client.meta.events.register_first("before-call.s3.PutObject", throttle)
    return seen


def test_row_transient_storage_error():
    # A local disk is never throttled: this row runs on S3 only (here and against the moto
    # server in test_moto_server.py).
    from moto import mock_aws

    from tests.conftest import s3_client

    with mock_aws():
        client = s3_client()
        client.create_bucket(Bucket=BUCKET)
        backend = Backend("mock_aws", S3Store(), BUCKET, client=client)
        store = S3Store(retry=RetryPolicy(max_attempts=3, base_delay=0.001))
        attempts = _throttle_output_writes(store)
        backend.put_raw(key_of("Filter"), orjson.dumps(GOOD_INPUT), "application/json")
        with pytest.raises(TransientStorageError, match="SlowDown") as info:
            stage(store=store)(_score)(make_event())
        assert isinstance(info.value, StorageError)
        assert info.value.retryable
        assert type(info.value).__name__ == "TransientStorageError"  # what Step Functions matches
        assert len(attempts) == 3
        assert_facts(info.value, execution_id=RUN, stage="Score", bucket=BUCKET, key=OUTPUT)
        _no_output(backend)


def test_output_conflict_error(backend: Backend):
    backend.put_raw(OUTPUT, b'[{"user_id": "someone-else", "score": 0.0}]', "application/json")
    backend.put_raw(key_of("Filter"), orjson.dumps(GOOD_INPUT), "application/json")
    with pytest.raises(OutputConflictError) as info:
        stage(store=backend.store, write_once=True)(_score)(make_event())
    assert_facts(info.value, execution_id=RUN, stage="Score", bucket=backend.bucket, key=OUTPUT)
    assert backend.read(OUTPUT) == b'[{"user_id": "someone-else", "score": 0.0}]'


class QuotaExceeded(Exception):
    """A user's own error."""


def test_a_users_exception_propagates_unchanged_and_writes_nothing(backend: Backend):
    raised = QuotaExceeded("scoring service quota exceeded")

    @stage(store=backend.store)
    def handler(events: list[Event]) -> list[Scored]:
        raise raised

    backend.put_raw(key_of("Filter"), orjson.dumps(GOOD_INPUT), "application/json")
    with pytest.raises(QuotaExceeded) as info:
        handler(make_event())
    assert info.value is raised
    assert not isinstance(info.value, CeapStageError)
    assert str(info.value) == "scoring service quota exceeded"
    _no_output(backend)


def test_every_contract_error_is_a_ceap_stage_error_with_a_stable_name():
    names = {
        HandlerDefinitionError: False,
        ContextResolutionError: False,
        InputNotFoundError: False,
        InputValidationError: False,
        OutputValidationError: False,
        StorageError: False,
        TransientStorageError: True,
    }
    for cls, retryable in names.items():
        assert issubclass(cls, CeapStageError)
        assert cls.retryable is retryable
        assert cls.__module__ == "ceap_stage._errors"
    assert issubclass(TransientStorageError, StorageError)


def test_errors_survive_pickling_with_their_facts():
    import pickle

    error = InputNotFoundError(
        "missing", execution_id=RUN, stage="Score", bucket="b", key=key_of("Filter")
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InputNotFoundError
    assert str(copy) == str(error)
    assert (copy.execution_id, copy.stage, copy.bucket, copy.key) == (
        RUN,
        "Score",
        "b",
        key_of("Filter"),
    )
