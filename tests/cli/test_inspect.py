"""The debugging loop: executions, show, run --resume/--only, replay, event; the client API.

Each scenario runs a three-stage workflow whose middle stage fails, on a LocalStore and on
moto's S3 server.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ceap_stage import LocalStore
from ceap_stage._cli import main
from ceap_stage._io import OutputRef, StageIO
from ceap_stage.testing import CountingStore
from ceap_stage.workflow import Execution, InspectError, list_executions
from tests.workflow import handlers

BUCKET = "ceap-inspect-test"


def _workflow(
    tmp_path: Path, bucket: str = BUCKET, score_handler: str = "tests.workflow.handlers:fixable"
) -> Path:
    """Load, Score (a bug until fixed, unless another handler is given), Double."""
    steps = [
        {"stateName": "Load", "functionName": "load", "handler": "tests.workflow.handlers:first"},
        {"stateName": "Score", "functionName": "score", "handler": score_handler},
        {
            "stateName": "Double",
            "functionName": "double",
            "handler": "tests.workflow.handlers:double",
        },
    ]
    path = tmp_path / "wf.json"
    path.write_text(
        json.dumps(
            {
                "workflowName": "inspect-test",
                "workflowBucket": bucket,
                "sourceQueue": "in",
                "steps": steps,
            }
        )
    )
    return path


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(handlers.batch(1.0, 2.5)))
    return path


def _cli_process(in_tmp: Path, *argv: str, new_session: bool = False) -> subprocess.Popen[str]:
    """``ceap-stage ARGV`` in a child process in ``in_tmp``, with pipes for stdout and stderr.

    ``new_session``: in a process group of its own, which Ctrl-C in a terminal signals whole.
    """
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-m", "ceap_stage._cli", *argv],
        cwd=in_tmp,
        env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{in_tmp}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CEAP_STORE", raising=False)
    handlers.BUG["on"] = True
    handlers.ATTEMPTS.clear()
    glue_logger = logging.getLogger("ceap_stage.glue")
    saved = list(glue_logger.handlers), glue_logger.level
    yield tmp_path
    handlers.BUG["on"] = True
    glue_logger.handlers[:] = saved[0]
    glue_logger.setLevel(saved[1])


@pytest.fixture(params=["local", "s3"])
def where(request, in_tmp, monkeypatch) -> dict[str, Any]:
    """The store of a scenario: a local directory, or a bucket on moto's server."""
    if request.param == "local":
        root = in_tmp / "store"
        return {
            "args": ["--store", f"file://{root}"],
            "store": LocalStore(root),
            "bucket": BUCKET,
            "list": lambda: sorted(
                str(p.relative_to(root / BUCKET)) for p in (root / BUCKET).rglob("*") if p.is_file()
            ),
        }
    from tests.conftest import create_bucket, s3_client

    endpoint = request.getfixturevalue("moto_server")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    client = s3_client(endpoint)
    bucket = create_bucket(client)
    from ceap_stage._store import store_from_url

    def listing() -> list[tuple[str, str, int]]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(
            (o["Key"], o["ETag"], o["Size"]) for page in pages for o in page.get("Contents", [])
        )

    return {
        "args": ["--store", f"s3://{bucket}"],
        "store": store_from_url("s3://"),
        "bucket": bucket,
        "list": listing,
    }


def _fail_first(in_tmp: Path, where: dict[str, Any], capsys, execution: str = "run-1") -> Path:
    wf = _workflow(in_tmp)
    status = main(
        [
            "run",
            str(wf),
            "--input",
            str(_input(in_tmp)),
            "--execution-id",
            execution,
            *where["args"],
        ]
    )
    assert status == 1
    return wf


def test_a_failure_is_reported_once_with_the_commands_that_continue(in_tmp, where, capsys):
    wf = _fail_first(in_tmp, where, capsys)
    captured = capsys.readouterr()
    message = "the scoring rule divides by zero (simulated bug)"
    assert (captured.out + captured.err).count(message) == 1
    assert f"error: stage Score failed with ValueError: {message}" in captured.err
    assert f"ceap-stage run {wf} --resume run-1 {' '.join(where['args'])}" in captured.err
    assert "attempt 1 failed" not in captured.out  # a ValueError is never retried
    assert '"level"' not in captured.out  # no JSON log line without -v
    assert "[2/3] Score FAILED" in captured.out
    assert "Outputs of the stages that succeeded" in captured.out
    # Where the stage's code raised, and how to see more.
    source = Path(handlers.__file__).read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "divides by zero" in text)
    assert f"{message} [execution_id=run-1" not in captured.err  # not a contract error
    assert f"handlers.py:{line})\n" in captured.err
    assert "  -v shows the traceback" in captured.err


def test_executions_and_show_see_the_failed_execution(in_tmp, where, capsys):
    _fail_first(in_tmp, where, capsys)
    _fail_first(in_tmp, where, capsys, execution="run-2")
    capsys.readouterr()
    assert main(["executions", *where["args"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["EXECUTION", "LAST", "OUTPUT", "STAGES"]
    assert [line.split()[0] for line in lines[1:]] == ["run-2", "run-1"]  # newest first
    assert lines[1].endswith("Load")

    assert main(["executions", *where["args"], "--limit", "1", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["executionId"], r["stages"]) for r in rows] == [("run-2", ["Load"])]
    assert "status" not in rows[0]  # how far it got needs the workflow

    wf = str(_workflow(in_tmp))
    assert main(["executions", *where["args"], "--workflow", wf]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "STATUS"
    assert lines[1].startswith("run-2")
    assert lines[1].endswith(" Load    stopped after Load (Score: no output)")
    assert main(["executions", *where["args"], "--workflow", wf, "--format", "json"]) == 0
    statuses = [r["status"] for r in json.loads(capsys.readouterr().out)]
    assert statuses == ["stopped after Load (Score: no output)"] * 2

    assert main(["show", "run-1", *where["args"]]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "STAGE", "FORMAT", "RECORDS", "BYTES", "SCHEMA", "WRITTEN", "AT", "PARTS"
    ]  # fmt: skip
    assert table[1].split()[:3] == ["Load", "json", "2"]
    if where["args"][1].startswith("s3:"):  # a local JSON document keeps no metadata
        assert "list[Item]" in table[1]

    assert main(["show", "run-1", "Load", *where["args"], "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records == [{"id": 0, "value": 1.0}, {"id": 1, "value": 2.5}]
    assert main(["show", "run-1", "Load", *where["args"], "--head", "1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"id": 0, "value": 1.0}]


def test_resume_runs_the_failed_stage_and_the_rest_and_keeps_the_first(in_tmp, where, capsys):
    wf = _fail_first(in_tmp, where, capsys)
    store, bucket = where["store"], where["bucket"]
    load = OutputRef(bucket, "run-1", "Load")
    before = store.get(bucket, load.key)
    head_before = store.head(bucket, load.key)
    handlers.BUG["on"] = False  # the fix
    handlers.ATTEMPTS.clear()
    capsys.readouterr()
    assert main(["run", str(wf), "--resume", "run-1", *where["args"]]) == 0
    out = capsys.readouterr().out
    assert "[1/3] Load REUSED: 2 records" in out
    assert "[2/3] Score succeeded" in out
    assert "[3/3] Double succeeded" in out
    assert set(handlers.ATTEMPTS) == {("run-1", "Score"), ("run-1", "Double")}
    assert store.get(bucket, load.key) == before
    assert store.head(bucket, load.key).last_modified == head_before.last_modified
    final = StageIO(store).read(OutputRef(bucket, "run-1", "Double")).value
    assert final == [{"id": 0, "value": 4.0}, {"id": 1, "value": 7.0}]

    # --from: run again from Double; Load and Score kept.
    handlers.ATTEMPTS.clear()
    assert main(["run", str(wf), "--resume", "run-1", "--from", "Double", *where["args"]]) == 0
    assert set(handlers.ATTEMPTS) == {("run-1", "Double")}

    # Resuming a complete execution runs nothing, and says so.
    handlers.ATTEMPTS.clear()
    capsys.readouterr()
    assert main(["run", str(wf), "--resume", "run-1", *where["args"]]) == 0
    out = capsys.readouterr().out
    assert handlers.ATTEMPTS == {}
    assert "Nothing to run: every stage of execution run-1 already has its output" in out
    assert "succeeded in" not in out


def test_only_runs_one_step_with_the_input_the_execution_has(in_tmp, where, capsys):
    wf = _fail_first(in_tmp, where, capsys)
    handlers.BUG["on"] = False
    handlers.ATTEMPTS.clear()
    assert main(["run", str(wf), "--only", "Score", "--execution-id", "run-1", *where["args"]]) == 0
    assert set(handlers.ATTEMPTS) == {("run-1", "Score")}
    assert not Execution(where["store"], where["bucket"], "run-1").output("Double").exists
    assert "Score" in capsys.readouterr().out


def test_replay_copies_the_input_here_and_leaves_the_source_as_it_was(in_tmp, where, capsys):
    wf = _fail_first(in_tmp, where, capsys)
    before = where["list"]()
    local = in_tmp / "here"
    source = where["args"][1]
    handlers.ATTEMPTS.clear()
    status = main(
        ["replay", str(wf), "run-1", "Score", "--from-store", source, "--store", f"file://{local}"]
    )
    captured = capsys.readouterr()
    assert status == 1  # the bug is still there: replayed here, it fails the same way
    assert "ValueError: the scoring rule divides by zero" in captured.err
    assert "copied the input of Score (stage Load" in captured.out
    assert where["list"]() == before
    handlers.BUG["on"] = False
    status = main(
        ["replay", str(wf), "run-1", "Score", "--from-store", source, "--store", f"file://{local}"]
    )
    assert status == 0
    assert where["list"]() == before
    replayed = StageIO(LocalStore(local)).read(OutputRef(where["bucket"], "run-1", "Score"))
    assert replayed.value == [{"id": 0, "value": 2.0}, {"id": 1, "value": 3.5}]


def test_replay_with_pdb_stops_in_the_debugger_at_the_exception(in_tmp, capsys, monkeypatch):
    wf = _fail_first(in_tmp, {"args": ["--store", f"file://{in_tmp / 'store'}"]}, capsys)
    seen: list[Any] = []
    import pdb

    monkeypatch.setattr(pdb, "post_mortem", seen.append)
    status = main(
        [
            "replay", str(wf), "run-1", "Score", "--from-store", f"file://{in_tmp / 'store'}",
            "--store", f"file://{in_tmp / 'here'}", "--pdb",
        ]
    )  # fmt: skip
    assert status == 1
    assert len(seen) == 1
    frames = [frame.f_code.co_name for frame, _ in __import__("traceback").walk_tb(seen[0])]
    assert frames[-1] == "fixable"  # the debugger opens where the stage raised


def test_event_output_fed_to_invoke_succeeds(in_tmp, where, capsys):
    wf = _fail_first(in_tmp, where, capsys)
    handlers.BUG["on"] = False
    capsys.readouterr()
    assert main(["event", str(wf), "Score", "--execution-id", "run-1"]) == 0
    event = json.loads(capsys.readouterr().out)
    assert event["currentStage"] == "Score"
    assert event["previousStage"] == "Load"
    path = in_tmp / "event.json"
    path.write_text(json.dumps(event))
    store_url = where["args"][1]
    if store_url.startswith("s3://"):
        event["workflowBucket"] = where["bucket"]
        path.write_text(json.dumps(event))
        store_url = "s3://"
    assert main(["invoke", "tests.workflow.handlers:fixable", "--event", str(path),
                 "--store", store_url]) == 0  # fmt: skip
    pointer = json.loads(capsys.readouterr().out)  # stdout holds the pointer alone
    assert pointer["output"]["key"] == "executions/run-1/Score/output.json"


def test_event_of_a_first_step_carries_the_batch(in_tmp, capsys):
    wf = _workflow(in_tmp)
    assert main(["event", str(wf), "Load", "--input", str(_input(in_tmp))]) == 0
    event = json.loads(capsys.readouterr().out)
    assert event["initialData"] == handlers.batch(1.0, 2.5)
    assert event["executionId"].startswith("local-")


def test_show_streams_a_manifest_with_several_parts_in_order(where, in_tmp, capsys):
    store, bucket = where["store"], where["bucket"]
    ref = OutputRef(bucket, "run-m", "Big")
    StageIO(store).write_jsonl(ref, ({"n": n} for n in range(500)), part_bytes=1000)
    output = Execution(store, bucket, "run-m").stage("Big")
    assert output.format == "manifest"
    assert output.parts > 3
    assert output.records_count == 500
    assert main(["show", "run-m", *where["args"]]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:3] == ["Big", "manifest", "500"]
    assert row[-1] == str(output.parts)
    assert main(["show", "run-m", "Big", *where["args"], "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(500))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "nope"], "no execution nope"),
        (
            ["show", "run-1", "Nope"],
            "execution run-1 has no stage Nope (its stages: Load); a stage that failed or did not "
            "run stores nothing (--workflow lists them all)",
        ),
        (["run", "{wf}", "--resume", "nope"], "no execution nope"),
        (["run", "{wf}", "--resume", "run-1", "--from", "Nope"], "--from stage Nope is not in"),
        (["run", "{wf}", "--from", "Score"], "--from needs --resume"),
        (["run", "{wf}", "--only", "Score"], "--only needs --execution-id"),
        (["run", "{wf}", "--only", "Nope", "--execution-id", "run-1"], "stage Nope is not in"),
        (["event", "{wf}", "Nope"], "stage Nope is not in workflow inspect-test"),
        (["replay", "{wf}", "run-1", "Nope", "--from-store", "{store}"], "stage Nope is not in"),
        (["replay", "{wf}", "nope", "Score", "--from-store", "{store}"], "no execution nope"),
        (
            ["replay", "{wf}", "run-1", "Score", "--from-store", "{store}", "--store", "{store}"],
            "--from-store and --store are the same store",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_runs(in_tmp, capsys, argv, message):
    store = f"file://{in_tmp / 'store'}"
    wf = _fail_first(in_tmp, {"args": ["--store", store]}, capsys)
    capsys.readouterr()
    handlers.ATTEMPTS.clear()
    filled = [a.replace("{wf}", str(wf)).replace("{store}", store) for a in argv]
    if filled[0] in ("show", "run"):
        filled += ["--store", store]
    status = main(filled)
    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert handlers.ATTEMPTS == {}


def test_a_stage_with_no_output_is_refused_by_show(in_tmp, capsys):
    store = LocalStore(in_tmp / "store")
    ref = OutputRef(BUCKET, "run-p", "Half")
    store.put(BUCKET, f"{ref.parts_prefix}w/00000.jsonl", b'{"a": 1}\n')  # parts, no manifest
    assert main(["show", "run-p", "Half", "--store", f"file://{store.root}"]) == 2
    assert "stage Half of execution run-p has no output" in capsys.readouterr().err
    assert main(["show", "run-p", "--store", f"file://{store.root}"]) == 0
    assert "no output" in capsys.readouterr().out


def test_resume_refuses_a_kept_output_missing_a_part(in_tmp, capsys):
    store = LocalStore(in_tmp / "store")
    wf = _workflow(in_tmp)
    ref = OutputRef(BUCKET, "run-k", "Load")
    StageIO(store).write_jsonl(ref, ({"id": n, "value": 1.0} for n in range(300)), part_bytes=1000)
    description = Execution(store, BUCKET, "run-k").stage("Load").description
    assert description is not None
    assert description.manifest is not None
    part = description.manifest.parts[1]
    store.delete(BUCKET, [part.key])
    handlers.ATTEMPTS.clear()
    status = main(["run", str(wf), "--resume", "run-k", "--store", f"file://{store.root}"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"the output of stage Load is missing its part {part.key}" in err
    assert handlers.ATTEMPTS == {}
    assert not Execution(store, BUCKET, "run-k").output("Score").exists


# -- the client API and its measures --------------------------------------------------------


def test_the_client_api_lists_executions_and_reads_stages(tmp_path):
    store = LocalStore(tmp_path)
    io = StageIO(store)
    io.write_document(OutputRef("bkt-1", "run-a", "ETL"), {"total": 3}, records=1)
    io.write_jsonl(OutputRef("bkt-1", "run-b", "ETL"), [{"a": 1}, {"a": 2}])
    os.utime(store.path("bkt-1", "executions/run-a/ETL/output.json"), (1, 1))
    summaries = list_executions(store, "bkt-1")
    assert [s.execution_id for s in summaries] == ["run-b", "run-a"]
    run = Execution(store, "bkt-1", "run-b")
    assert list(run.stages) == ["ETL"]
    assert list(run.stage("ETL").records()) == [{"a": 1}, {"a": 2}]
    assert Execution(store, "bkt-1", "run-a").stage("ETL").read() == {"total": 3}
    assert list(Execution(store, "bkt-1", "run-a").stage("ETL").records()) == [{"total": 3}]
    with pytest.raises(InspectError, match="no execution run-c in bucket bkt-1"):
        Execution(store, "bkt-1", "run-c").stage("ETL")


def test_show_head_reads_little_of_a_large_json_lines_output(tmp_path, capsys):
    inner = LocalStore(tmp_path / "store")
    ref = OutputRef("bkt-1", "run-big", "Big")
    line = json.dumps({"id": 0, "text": "x" * 200}).encode() + b"\n"
    size = 8 * 1024 * 1024  # the bench uses 1 GB; the count is what matters
    body = line * (size // len(line))
    inner.put("bkt-1", ref.key, body, content_type="application/x-ndjson")
    store = CountingStore(inner)
    output = Execution(store, "bkt-1", "run-big").stage("Big")
    first = list(itertools.islice(output.records(chunk_size=64 * 1024), 10))
    assert len(first) == 10
    assert store.bytes_read < 1_000_000
    assert store.bytes_read < len(body) / 8


def test_listing_executions_makes_requests_per_execution_not_per_object(tmp_path):
    def requests(parts_per_stage: int) -> int:
        inner = LocalStore(tmp_path / f"p{parts_per_stage}")
        io = StageIO(inner)
        for n in range(30):
            ref = OutputRef("bkt-1", f"run-{n:03d}", "ETL")
            io.write_jsonl(ref, ({"n": i} for i in range(parts_per_stage * 10)), part_bytes=60)
        store = CountingStore(inner)
        summaries = list_executions(store, "bkt-1", limit=5)
        assert len(summaries) == 5
        return store.total_requests

    few, many = requests(1), requests(20)
    assert few == many  # the parts do not count
    assert few == 1 + 30 * 2  # one listing, then per execution: its stages, one HEAD per stage


def test_show_resume_and_replay_warn_when_a_kept_output_was_written_by_another_model(
    in_tmp, capsys
):
    root = in_tmp / "store"
    wf = _fail_first(in_tmp, {"args": ["--store", f"file://{root}"]}, capsys)
    store = LocalStore(root)
    ref = OutputRef(BUCKET, "run-1", "Load")
    # Load's output as an older version of its code wrote it: another schema fingerprint.
    store.put(
        BUCKET,
        ref.key,
        b'{"id": 0, "value": 1.0}\n{"id": 1, "value": 2.5}\n',
        content_type="application/x-ndjson",
        metadata={"ceap-schema": "list[OldItem]", "ceap-schema-fingerprint": "0123456789abcdef"},
    )
    capsys.readouterr()
    assert main(["show", "run-1", "--store", f"file://{root}", "--workflow", str(wf)]) == 0
    err = capsys.readouterr().err
    assert "warning: the output of stage Load was written by model list[OldItem]" in err
    assert "(fingerprint 0123456789abcdef); the code now has list[Item]" in err

    status = main(
        ["replay", str(wf), "run-1", "Score", "--from-store", f"file://{root}",
         "--store", f"file://{in_tmp / 'here'}"]
    )  # fmt: skip
    assert status == 1
    assert "warning: the input of Score (stage Load) was written by model list[OldItem]" in (
        capsys.readouterr().err
    )

    handlers.BUG["on"] = False
    assert main(["run", str(wf), "--resume", "run-1", "--store", f"file://{root}"]) == 0
    err = capsys.readouterr().err
    assert "warning: the kept output of stage Load was written by model list[OldItem]" in err


def test_a_failed_first_stage_is_run_again_with_its_input_not_resumed(in_tmp, capsys):
    wf = _workflow(in_tmp)
    bad = in_tmp / "bad.json"
    records = handlers.batch(1.0)
    records[0]["body"] = json.dumps({"id": "r-0"})  # no "value": the first stage fails on it
    bad.write_text(json.dumps(records))
    store = ["--store", f"file://{in_tmp / 'store'}"]
    status = main(["run", str(wf), "--input", str(bad), "--execution-id", "run-f", *store])
    err = capsys.readouterr().err
    assert status == 1
    assert "error: stage Load failed with KeyError" in err
    assert "--resume" not in err  # nothing was written: there is nothing to resume
    (line,) = [x for x in err.splitlines() if "fix it, then run it again:" in x]
    command = line.split("fix it, then run it again: ")[1]
    assert command == f"ceap-stage run {wf} --input {bad} --execution-id run-f {' '.join(store)}"
    # The suggested command, once the input is fixed, runs the whole execution.
    bad.write_text(json.dumps(handlers.batch(1.0)))
    handlers.BUG["on"] = False  # and the later stage's bug too
    assert main(command.split()[1:]) == 0
    assert "Execution run-f succeeded" in capsys.readouterr().out


def test_only_says_the_other_stages_did_not_run(in_tmp, capsys):
    wf = _workflow(in_tmp)
    handlers.BUG["on"] = False
    store = ["--store", f"file://{in_tmp / 'store'}"]
    assert (
        main(["run", str(wf), "--input", str(_input(in_tmp)), "--execution-id", "run-o", *store])
        == 0
    )
    capsys.readouterr()
    assert main(["run", str(wf), "--only", "Score", "--execution-id", "run-o", *store]) == 0
    out = capsys.readouterr().out
    assert "Score of execution run-o succeeded in" in out
    assert "run alone: the other stages did not run (KEPT" in out
    assert "Execution run-o succeeded" not in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].isupper()}
    # Load's output was read and Double's left as it was: neither is NOT_RUN.
    assert rows["Load"][1:4] == ["KEPT", "2", "43"]
    assert rows["Load"][-1].endswith("executions/run-o/Load/output.json")
    assert rows["Double"][1] == "KEPT"


def test_package_folders_under_the_store_root_are_not_buckets(in_tmp, capsys):
    # `ceap-stage package` keeps .ceap/package and .ceap/cache beside the default local store.
    store = ["--store", f"file://{in_tmp / '.ceap'}"]
    handlers.BUG["on"] = False
    wf = _workflow(in_tmp)
    assert (
        main(["run", str(wf), "--input", str(_input(in_tmp)), "--execution-id", "run-p", *store])
        == 0
    )
    for folder in ("package/lambda", "cache/layers"):
        (in_tmp / ".ceap" / folder).mkdir(parents=True)
    capsys.readouterr()
    assert main(["executions", *store]) == 0
    assert "run-p" in capsys.readouterr().out
    assert main(["show", "run-p", *store]) == 0
    assert "Double" in capsys.readouterr().out


def test_a_new_run_under_an_execution_id_with_outputs_is_refused(in_tmp, where, capsys):
    wf = _fail_first(in_tmp, where, capsys)
    before = where["list"]()
    handlers.BUG["on"] = False
    handlers.ATTEMPTS.clear()
    capsys.readouterr()
    argv = ["run", str(wf), "--input", str(_input(in_tmp)), "--execution-id", "run-1"]
    assert main([*argv, *where["args"]]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()  # one line
    assert line.startswith(
        "ceap-stage run: error: execution run-1 already has outputs (stages Load); a new run "
        "needs a new --execution-id"
    )
    assert f"ceap-stage run {wf} --resume run-1 {' '.join(where['args'])}" in line
    assert "--from STAGE" in line
    assert captured.out == ""
    assert handlers.ATTEMPTS == {}
    assert where["list"]() == before  # nothing written, nothing removed


def test_a_rerun_from_a_stage_that_fails_again_does_not_look_complete(in_tmp, capsys):
    # A finished execution, run again from its middle stage with the bug back: the later
    # outputs are removed first, so neither show nor --resume takes the old ones for this run's.
    wf = _workflow(in_tmp)
    store = ["--store", f"file://{in_tmp / 'store'}"]
    handlers.BUG["on"] = False
    argv = ["run", str(wf), "--input", str(_input(in_tmp)), "--execution-id", "run-1", *store]
    assert main(argv) == 0
    handlers.BUG["on"] = True
    capsys.readouterr()
    assert main(["run", str(wf), "--resume", "run-1", "--from", "Score", *store]) == 1
    out = capsys.readouterr().out
    assert "removed the earlier outputs of Score, Double: they run again" in out
    assert main(["run", str(wf), "--resume", "run-1", *store]) == 1
    captured = capsys.readouterr()
    assert "[2/3] Score FAILED" in captured.out
    assert "Execution run-1 succeeded" not in captured.out

    assert main(["show", "run-1", "Score", "--workflow", str(wf), *store]) == 2
    assert capsys.readouterr().err == (
        "ceap-stage show: error: stage Score of execution run-1 wrote no output (it failed, or "
        "did not run)\n"
    )
    assert main(["show", "run-1", "--workflow", str(wf), *store]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [row.split()[:2] for row in table[1:]] == [
        ["Load", "json"], ["Score", "no"], ["Double", "no"]
    ]  # fmt: skip
    assert main(["show", "run-1", "--workflow", str(wf), *store, "--format", "jsonl"]) == 0
    rows = [json.loads(row) for row in capsys.readouterr().out.splitlines()]
    assert [(r["stage"], r["output"] is None) for r in rows] == [
        ("Load", False), ("Score", True), ("Double", True)
    ]  # fmt: skip


def _queue_workflow(tmp_path: Path, workflow_type: str) -> Path:
    steps = [
        {
            "stateName": "Ingest",
            "functionName": "ingest",
            "handler": "tests.batches.handlers:ingest",
        },
        {"stateName": "Rank", "functionName": "rank", "handler": "tests.batches.handlers:rank"},
    ]
    path = tmp_path / f"wf_{workflow_type}.json"
    path.write_text(
        json.dumps(
            {
                "workflowName": "queue-test",
                "workflowType": workflow_type,
                "workflowBucket": BUCKET,
                "sourceQueue": "in",
                "steps": steps,
            }
        )
    )
    return path


@pytest.mark.parametrize("workflow_type", ["STANDARD", "EXPRESS"])
def test_a_run_says_where_the_rejected_messages_are(in_tmp, capsys, workflow_type):
    wf = _queue_workflow(in_tmp, workflow_type)
    batch = in_tmp / "batch.json"
    bodies = [{"customerId": "a", "score": 1.0}, {"customerId": "b"}, {"score": 2.0}]
    batch.write_text(
        json.dumps([{"messageId": f"m-{i}", "body": json.dumps(b)} for i, b in enumerate(bodies)])
    )
    store = in_tmp / "store"
    argv = ["run", str(wf), "--input", str(batch), "--execution-id", "q-1"]
    assert main([*argv, "--store", f"file://{store}"]) == 0
    out = capsys.readouterr().out
    rejected = store / BUCKET / "executions" / "q-1" / "Ingest" / "rejected.jsonl"
    assert len(rejected.read_text().splitlines()) == 2
    where = rejected.relative_to(in_tmp)  # the working directory
    assert f"Rejected by Ingest: 2 records, listed in {where}\n" in out
    standard = "a STANDARD workflow does not return them to the queue" in out
    assert standard == (workflow_type == "STANDARD")
    assert ("Returned to the queue (batchItemFailures): m-1, m-2" in out) == (not standard)

    # show tells the same afterwards: the count in its table's JSON, the line after its table
    assert main(["show", "q-1", "--store", f"file://{store}"]) == 0
    assert f"\nRejected by Ingest: 2 records, listed in {where}\n" in capsys.readouterr().out
    assert main(["show", "q-1", "--store", f"file://{store}", "--format", "json"]) == 0
    rows = {r["stage"]: r["rejected"] for r in json.loads(capsys.readouterr().out)}
    assert rows == {"Ingest": 2, "Rank": None}
    for sidecar in rejected.parent.glob(".rejected.jsonl*"):  # no metadata: the lines are counted
        sidecar.unlink()
    assert main(["show", "q-1", "--store", f"file://{store}", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["rejected"] == 2


def test_ctrl_c_during_a_run_is_one_line_exit_130_and_nothing_half_written(in_tmp):
    import signal
    import time

    (in_tmp / "slow_stage.py").write_text(
        "import time\n"
        "from tests.workflow.handlers import Item\n"
        "from ceap_stage import stage\n"
        "@stage\n"
        "def slow(items: list[Item]) -> list[Item]:\n"
        "    time.sleep(60)\n"
        "    return items\n"
    )
    wf = _workflow(in_tmp, score_handler="slow_stage:slow")
    process = _cli_process(
        in_tmp, "run", str(wf), "--input", str(_input(in_tmp)), "--execution-id", "run-c",
        "--store", f"file://{in_tmp / 'store'}",
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("[2/3] Score") and "running" in line:
                break
        else:
            raise AssertionError(f"the run ended before Score started: {lines}")
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert err == (
        "ceap-stage run: interrupted during stage Score, which wrote no output; resume: "
        f"ceap-stage run {wf} --resume run-c --store file://{in_tmp / 'store'}\n"
    )
    execution = in_tmp / "store" / BUCKET / "executions" / "run-c"
    assert sorted(str(p.relative_to(execution)) for p in execution.rglob("*") if p.is_file()) == [
        "Load/output.json"
    ]


def _live_processes(group: int) -> list[str]:
    """The processes of a process group that are still running (zombies left out)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            live.append(stat.parent.name)
    return live


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_ctrl_c_during_a_fan_out_drops_queued_shards_and_ends_every_worker(in_tmp):
    import signal
    import time

    (in_tmp / "slow_shards.py").write_text(
        "import time\n"
        "from ceap_stage import stage\n"
        "from tests.workflow.handlers import Item\n"
        "@stage\n"
        "def make(messages: list[dict]) -> list[Item]:\n"
        "    return [Item(id=i, value=1.0) for i in range(4)]\n"
        "@stage\n"
        "def slow(items: list[Item]) -> list[Item]:\n"
        "    time.sleep(120)\n"
        "    return items\n"
    )
    (in_tmp / "wf_fan.py").write_text(
        "from ceap_stage.workflow import FanOut, LambdaStep, WorkflowConfiguration\n"
        "workflow = WorkflowConfiguration(\n"
        "    workflow_name='slowfan', workflow_type='STANDARD', workflow_bucket='ceap-slowfan',\n"
        "    source_queue='in',\n"
        "    steps=[LambdaStep(state_name='Make', function_name='make',\n"
        "                      handler='slow_shards:make'),\n"
        "           LambdaStep(state_name='Slow', function_name='slow',\n"
        "                      handler='slow_shards:slow', fan_out=FanOut(records_per_shard=1))])\n"
        "def sample_input():\n"
        "    return [{'messageId': 'm-0', 'body': '{}', 'eventSource': 'aws:sqs'}]\n"
    )
    process = _cli_process(
        in_tmp, "run", "wf_fan.py", "--workers", "2", "--execution-id", "run-f", new_session=True
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "shards 0/4 done" in line:
                break
        else:
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the run ended before its shards started: {stderr}")
        time.sleep(1.0)  # the two workers are inside their first shards
        os.killpg(process.pid, signal.SIGINT)
        # Without stopping the pool, leaving it would first run the two queued shards (4 min).
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert err.startswith(
        "ceap-stage run: interrupted during stage Slow, which wrote no output; resume: "
    )
    deadline = time.monotonic() + 10
    while _live_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_processes(process.pid) == []  # no worker left running
    stage = in_tmp / ".ceap" / "ceap-slowfan" / "executions" / "run-f" / "Slow"
    assert not (stage / "output.json").exists()


def test_a_reader_that_goes_away_stops_the_printing_not_the_run(in_tmp):
    wf = _workflow(
        in_tmp, score_handler="tests.workflow.handlers:double"
    )  # no bug: the run succeeds
    process = _cli_process(
        in_tmp, "run", str(wf), "--input", str(_input(in_tmp)), "--execution-id", "run-p",
        "--store", f"file://{in_tmp / 'store'}",
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()  # `| head -1`
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == 0, err
    assert first.startswith("ceap-stage run: workflow inspect-test")
    assert err == ""
    execution = in_tmp / "store" / BUCKET / "executions" / "run-p"
    assert (execution / "Double" / "output.json").exists()  # every stage ran


def test_a_missing_bucket_is_found_before_any_stage_runs(in_tmp, moto_server, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    wf = _workflow(in_tmp)
    status = main(
        ["run", str(wf), "--input", str(_input(in_tmp)), "--store", "s3://ceap-no-such-bucket"]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith(
        "ceap-stage run: error: S3 refused the list: bucket ceap-no-such-bucket does not exist "
        "(NoSuchBucket)"
    )
    assert len(captured.err.strip().splitlines()) == 1
    assert "[1/3] Load" not in captured.out  # nothing ran
    assert handlers.ATTEMPTS == {}


def test_with_a_workflow_executions_and_show_use_its_bucket(in_tmp, capsys):
    root = in_tmp / "store"
    where = {"args": ["--store", f"file://{root}"]}
    wf = str(_fail_first(in_tmp, where, capsys))
    (root / "ceap-other-bucket" / "executions" / "x-1" / "Load").mkdir(parents=True)
    capsys.readouterr()
    assert main(["executions", *where["args"]]) == 2  # which bucket? two hold executions
    assert "holds several buckets (ceap-inspect-test, ceap-other-bucket)" in capsys.readouterr().err
    assert main(["executions", *where["args"], "--workflow", wf]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("run-1")
    assert main(["show", "run-1", *where["args"], "--workflow", wf]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "Load"


def test_an_input_a_stage_refuses_also_suggests_running_from_the_stage_that_wrote_it(
    in_tmp, capsys
):
    wf = _workflow(in_tmp, score_handler="tests.workflow.handlers:broken")  # InputValidationError
    store = ["--store", f"file://{in_tmp / 'store'}"]
    status = main(
        ["run", str(wf), "--input", str(_input(in_tmp)), "--execution-id", "run-v", *store]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "error: stage Score failed with InputValidationError" in err
    assert (
        f"  or, if Load wrote the wrong input, fix Load and run from it: ceap-stage run {wf} "
        f"--resume run-v --from Load --store file://{in_tmp / 'store'}"
    ) in err


def test_with_a_workflow_executions_lists_the_stages_in_its_order(in_tmp, capsys):
    root = in_tmp / "store"
    io = StageIO(LocalStore(root))
    for age, stage in ((30, "Score"), (20, "Load")):  # Score written before Load
        ref = OutputRef(BUCKET, "run-o", stage)
        io.write_document(ref, [1], records=1)
        path = root / BUCKET / ref.key
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    args = ["--store", f"file://{root}", "--format", "json"]
    assert main(["executions", *args]) == 0
    assert json.loads(capsys.readouterr().out)[0]["stages"] == ["Score", "Load"]
    assert main(["executions", *args, "--workflow", str(_workflow(in_tmp))]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["stages"] == ["Load", "Score"]
    assert row["status"] == "stopped after Score (Double: no output)"


def test_a_bad_ceap_store_is_named_as_the_environment_variable(in_tmp, monkeypatch, capsys):
    monkeypatch.setenv("CEAP_STORE", "s3:/typo")
    assert main(["executions"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ceap-stage executions: error: CEAP_STORE must be file://DIR or s3://BUCKET, not 's3:/typo'"
    )
    assert main(["executions", "--store", "s3:/typo"]) == 2
    assert "error: --store must be file://DIR or s3://BUCKET" in capsys.readouterr().err


@pytest.mark.parametrize("workflow_type", ["STANDARD", "EXPRESS"])
def test_check_notes_that_a_standard_workflow_keeps_rejected_messages_out_of_the_queue(
    in_tmp, capsys, workflow_type
):
    wf = _queue_workflow(in_tmp, workflow_type)
    assert main(["check", str(wf)]) == 0
    out = capsys.readouterr().out
    note = (
        'note: Ingest rejects invalid queue messages (on_invalid_record="reject"); a STANDARD '
        "workflow does not return them to the queue"
    )
    assert (note in out) == (workflow_type == "STANDARD")
