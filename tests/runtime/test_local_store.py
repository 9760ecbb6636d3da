"""LocalStore (atomic writes, the Content-Type sidecar, the S3 layout) and CEAP_STORE."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ceap_stage import LocalStore, OutputConflictError, StorageError, stage
from ceap_stage._formats import JSONL
from ceap_stage._store import sha256_hex, store_from_url

from ._helpers import BUCKET, key_of, make_event

KEY = key_of("Score")


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_put_then_get_mirrors_the_s3_layout(tmp_path: Path):
    store = LocalStore(tmp_path)
    put = store.put(BUCKET, KEY, b"[1,2]")
    assert (put.bytes, put.sha256) == (5, sha256_hex(b"[1,2]"))
    assert (tmp_path / BUCKET / KEY).read_bytes() == b"[1,2]"
    obj = store.get(BUCKET, KEY)
    assert obj is not None
    assert (obj.body, obj.content_type) == (b"[1,2]", None)
    assert _leftovers(tmp_path) == []


def test_missing_objects_are_none(tmp_path: Path):
    store = LocalStore(tmp_path)
    assert store.get(BUCKET, KEY) is None
    assert store.open(BUCKET, KEY) is None
    (tmp_path / BUCKET / "executions").mkdir(parents=True)
    assert store.get(BUCKET, "executions") is None  # a directory is not an object


def test_a_non_json_content_type_and_metadata_live_in_a_hidden_sidecar(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(BUCKET, KEY, b'{"a":1}\n', content_type=JSONL, metadata={"ceap-records": "1"})
    sidecar = tmp_path / BUCKET / "executions/run-2024-05-01/Score/.output.json.ceap-meta"
    assert sidecar.is_file()
    obj = store.get(BUCKET, KEY)
    assert obj is not None
    assert obj.content_type == JSONL
    assert dict(obj.metadata) == {"ceap-records": "1"}
    assert store.list_keys(BUCKET, "executions/") == [KEY]  # sidecars are not objects

    store.put(BUCKET, KEY, b"[1]")  # back to a JSON document: the sidecar goes
    assert not sidecar.exists()
    obj = store.get(BUCKET, KEY)
    assert obj is not None
    assert obj.content_type is None

    store.put(BUCKET, KEY, b'{"a":1}\n', content_type=JSONL)
    store.delete(BUCKET, [KEY, key_of("Missing")])
    assert not sidecar.exists()
    assert store.get(BUCKET, KEY) is None


def test_a_corrupt_sidecar_is_ignored(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(BUCKET, KEY, b"[1]", content_type=JSONL)
    (tmp_path / BUCKET / "executions/run-2024-05-01/Score/.output.json.ceap-meta").write_text("{")
    obj = store.get(BUCKET, KEY)
    assert obj is not None
    assert obj.content_type is None


def test_a_failed_write_leaves_the_old_object_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = LocalStore(tmp_path)
    store.put(BUCKET, KEY, b"[1]")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="No space left on device") as info:
        store.put(BUCKET, KEY, b"[1,2,3]")
    assert info.value.key == KEY
    assert (tmp_path / BUCKET / KEY).read_bytes() == b"[1]"
    assert _leftovers(tmp_path) == []


def test_writes_go_through_a_temporary_file_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = LocalStore(tmp_path)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src: Any, dst: Any) -> None:
        renames.append((os.fspath(src), os.fspath(dst)))
        assert Path(src).read_bytes() == b"[42]"  # complete before it becomes visible
        assert not Path(dst).exists()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    store.put(BUCKET, KEY, b"[42]")
    ((src, dst),) = renames
    assert dst == str(tmp_path / BUCKET / KEY)
    assert Path(src).parent == Path(dst).parent  # same directory: rename is atomic
    assert Path(src).name.startswith(".output.json.")


def test_short_reads_and_writes_still_move_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The store reads and writes with os.read/os.write, which may move fewer bytes than asked."""
    store = LocalStore(tmp_path)
    body = b"[" + b",".join(str(i).encode() for i in range(500)) + b"]"
    real_read, real_write = os.read, os.write
    calls = {"read": 0, "write": 0}

    def short_read(fd: int, n: int) -> bytes:
        calls["read"] += 1
        return real_read(fd, min(n, 7))

    def short_write(fd: int, data: Any) -> int:
        calls["write"] += 1
        return real_write(fd, bytes(data)[:5])

    monkeypatch.setattr(os, "read", short_read)
    monkeypatch.setattr(os, "write", short_write)
    put = store.put(BUCKET, KEY, body)
    obj = store.get(BUCKET, KEY)
    monkeypatch.undo()
    assert put.bytes == len(body)
    assert (tmp_path / BUCKET / KEY).read_bytes() == body
    assert obj is not None
    assert obj.body == body
    assert calls["write"] >= len(body) // 5
    assert calls["read"] >= len(body) // 7
    assert _leftovers(tmp_path) == []


def test_the_first_write_of_a_stage_creates_its_directory(tmp_path: Path):
    store = LocalStore(tmp_path)
    assert not (tmp_path / BUCKET).exists()
    store.put(BUCKET, KEY, b'{"a":1}\n', content_type=JSONL)  # the sidecar is written first
    store.put(BUCKET, key_of("Other"), b"[1]", if_none_match=True)
    assert (tmp_path / BUCKET / KEY).read_bytes() == b'{"a":1}\n'
    assert (tmp_path / BUCKET / key_of("Other")).read_bytes() == b"[1]"
    obj = store.get(BUCKET, KEY)
    assert obj is not None
    assert obj.content_type == JSONL


def test_write_once_creates_or_refuses(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(BUCKET, KEY, b"[1]", if_none_match=True)
    with pytest.raises(OutputConflictError, match="already exists") as info:
        store.put(BUCKET, KEY, b"[2]", if_none_match=True)
    assert info.value.key == KEY
    assert (tmp_path / BUCKET / KEY).read_bytes() == b"[1]"
    assert _leftovers(tmp_path) == []


def test_a_file_in_the_way_is_a_storage_error_not_a_conflict(tmp_path: Path):
    store = LocalStore(tmp_path)
    blocker = tmp_path / BUCKET / "executions/run-2024-05-01/Score"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a directory")
    for write_once in (False, True):
        with pytest.raises(StorageError) as info:
            store.put(BUCKET, KEY, b"[1]", if_none_match=write_once)
        assert not isinstance(info.value, OutputConflictError)
        assert info.value.key == KEY


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        (BUCKET, "executions/../../../etc/passwd"),
        (BUCKET, "/absolute"),
        (BUCKET, "a//b"),
        (BUCKET, "a\\..\\b"),
        ("..", "x"),
        (BUCKET, "nul\x00"),
    ],
)
def test_keys_cannot_leave_the_root(tmp_path: Path, bucket: str, key: str):
    store = LocalStore(tmp_path)
    with pytest.raises(StorageError, match="leave the local store's root"):
        store.get(bucket, key)
    with pytest.raises(StorageError, match="leave the local store's root"):
        store.put(bucket, key, b"x")


def test_list_keys_open_and_uri(tmp_path: Path):
    store = LocalStore(tmp_path)
    for name in ("part-00001.jsonl", "part-00000.jsonl"):
        store.put(BUCKET, f"executions/r/S/parts/{name}", b"1\n")
    store.put(BUCKET, "executions/r/S/output.json", b"[]")
    assert store.list_keys(BUCKET, "executions/r/S/parts/") == [
        "executions/r/S/parts/part-00000.jsonl",
        "executions/r/S/parts/part-00001.jsonl",
    ]
    assert store.list_keys(BUCKET, "executions/r/S/parts/part-00001") == [
        "executions/r/S/parts/part-00001.jsonl"
    ]
    assert store.list_keys(BUCKET, "executions/none/") == []
    assert store.list_keys("other-bucket", "") == []
    handle = store.open(BUCKET, "executions/r/S/output.json")
    assert handle is not None
    with handle:
        assert handle.read() == b"[]"
    assert store.uri(BUCKET, "executions/r/S/output.json") == (
        (tmp_path / BUCKET / "executions/r/S/output.json").as_uri()
    )


# -- CEAP_STORE ---------------------------------------------------------------------------------


def test_store_from_url(tmp_path: Path):
    local = store_from_url(f"file://{tmp_path}")
    assert isinstance(local, LocalStore)
    assert local.root == tmp_path
    localhost = store_from_url(f"file://localhost{tmp_path}")
    assert isinstance(localhost, LocalStore)
    assert localhost.root == tmp_path
    spaced = store_from_url(f"file://{tmp_path}/with%20space")
    assert isinstance(spaced, LocalStore)
    assert spaced.root == tmp_path / "with space"
    plain = store_from_url(str(tmp_path))
    assert isinstance(plain, LocalStore)
    assert plain.root == tmp_path
    with pytest.raises(StorageError, match="CEAP_STORE must be"):
        store_from_url("http://example.invalid/bucket")


def test_s3_is_the_default_store():
    from ceap_stage import S3Store

    assert isinstance(store_from_url(None), S3Store)
    assert isinstance(store_from_url(""), S3Store)
    assert isinstance(store_from_url("s3://"), S3Store)


def test_ceap_store_selects_a_local_store_at_first_invocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    @stage
    def handler(data: dict[str, Any]) -> dict[str, Any]:
        return data

    monkeypatch.setenv("CEAP_STORE", f"file://{tmp_path}/first")
    handler(make_event(previous_stage=None, initial_data={"n": 1}))
    assert (tmp_path / "first" / BUCKET / KEY).read_bytes() == b'{"n":1}'

    # Unchanged settings: the same store for warm invocations.
    store = handler.runtime.store
    handler(make_event(execution_id="run-2", previous_stage=None, initial_data={"n": 2}))
    assert handler.runtime.store is store
    assert (tmp_path / "first" / BUCKET / key_of("Score", "run-2")).is_file()

    # Outside Lambda a changed CEAP_STORE is followed (a later test's tmp_path); inside Lambda
    # the environment never changes and the handler keeps what it resolved at import.
    monkeypatch.setenv("CEAP_STORE", f"file://{tmp_path}/second")
    handler(make_event(execution_id="run-3", previous_stage=None, initial_data={"n": 3}))
    assert (tmp_path / "second" / BUCKET / key_of("Score", "run-3")).is_file()
    assert not (tmp_path / "first" / BUCKET / key_of("Score", "run-3")).exists()
