"""The ceap-stage command line: run, asl, template, invoke; exit statuses and messages."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ceap_stage._cli import main
from ceap_stage.workflow import build_definition, build_template, load_workflow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples/engagement/workflow.py")
CLI = Path(sys.executable).with_name("ceap-stage")


def _workflow_file(tmp_path: Path, middle: list[dict[str, Any]] | None = None) -> Path:
    steps = [
        {"stateName": "Load", "functionName": "load", "handler": "tests.workflow.handlers:first"},
        *(middle or []),
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
                "workflowName": "cli-test",
                "workflowBucket": "ceap-cli-test",
                "sourceQueue": "in",
                "steps": steps,
                "retryConfig": {"lambdaIntervalSeconds": 1},
            }
        )
    )
    return path


def _input_file(tmp_path: Path) -> Path:
    from tests.workflow.handlers import batch

    path = tmp_path / "input.json"
    path.write_text(json.dumps(batch(1.0, 2.5)))
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CEAP_STORE", raising=False)
    for name in ("POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    # main() quiets the Glue helper's logger for the process; give other tests theirs back.
    glue_logger = logging.getLogger("ceap_stage.glue")
    handlers, level = list(glue_logger.handlers), glue_logger.level
    yield tmp_path
    glue_logger.handlers[:] = handlers
    glue_logger.setLevel(level)


def test_run_prints_progress_a_summary_and_where_the_outputs_are(in_tmp, capsys):
    wf = _workflow_file(in_tmp)
    status = main(["run", str(wf), "--input", str(_input_file(in_tmp)), "--execution-id", "cli-1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "[1/2] Load (Lambda load) running ..." in out
    assert "[2/2] Double succeeded: 2 records" in out
    header = next(line for line in out.splitlines() if line.startswith("STAGE"))
    assert header.split() == ["STAGE", "STATUS", "RECORDS", "BYTES", "TIME", "OUTPUT"]
    assert "executions/cli-1/Double/output.json" in out
    lines = out.rstrip().splitlines()
    assert lines[-2] == "Outputs: .ceap/ceap-cli-test/executions/cli-1/"
    assert lines[-1] == "Final output: .ceap/ceap-cli-test/executions/cli-1/Double/output.json"
    written = in_tmp / ".ceap/ceap-cli-test/executions/cli-1/Double/output.json"
    assert json.loads(written.read_text()) == [{"id": 0, "value": 2.0}, {"id": 1, "value": 5.0}]
    # (That stage logs stay quiet is checked in a fresh process: loggers are process-wide.)


def test_a_failing_stage_exits_1_and_names_the_error_class(in_tmp, capsys):
    wf = _workflow_file(
        in_tmp,
        [
            {
                "stateName": "Broken",
                "functionName": "broken",
                "handler": "tests.workflow.handlers:broken",
            }
        ],
    )
    status = main(
        ["run", str(wf), "--input", str(_input_file(in_tmp)), "--execution-id", "cli-fail"]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "[2/3] Broken FAILED" in captured.out
    assert "InputValidationError" not in captured.out  # reported once, on stderr
    assert "NOT_RUN" in captured.out
    assert captured.err.startswith("error: stage Broken failed with InputValidationError:")
    assert f"ceap-stage run {wf} --resume cli-fail" in captured.err
    assert not (in_tmp / ".ceap/ceap-cli-test/executions/cli-fail/Broken").exists()


def test_a_transient_failure_is_retried_and_the_retry_is_shown(in_tmp, capsys):
    wf = _workflow_file(
        in_tmp,
        [
            {
                "stateName": "Flaky",
                "functionName": "flaky",
                "handler": "tests.workflow.handlers:flaky",
            }
        ],
    )
    status = main(
        [
            "run",
            str(wf),
            "--input",
            str(_input_file(in_tmp)),
            "--execution-id",
            "cli-flaky",
            "--retry-delay-scale",
            "0.01",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "attempt 1 failed with TransientStorageError" in out
    assert "retrying in 0.01 s" in out
    assert "[2/3] Flaky succeeded: 2 records" in out
    assert "2 attempts" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "missing.py"], "no workflow file at missing.py"),
        (["run", "{wf}", "--input", "nope.json"], "--input: no file at nope.json"),
        (
            ["run", "{wf}", "--input", "{bad_json}"],
            "bad.json is not valid JSON at line 2, column 8 (unexpected character",
        ),
        (["run", "{wf}"], "has no sample_input()"),
        (["run", "{wf}", "--store", "ftp://x"], "--store must be file://DIR or s3://BUCKET"),
        (["run", "{wf}", "--store", "s3:/bkt", "--input", "{input}"], "not 's3:/bkt'"),
        (["run", "{wf}", "--store", "s3://Bad_Bucket", "--input", "{input}"], "not a valid S3"),
        (["run", "{wf}", "--input", "{input}", "--execution-id", "a/b"], "executionId"),
        (["asl", "{express_glue}"], "cannot run Glue steps"),
    ],
)
def test_usage_and_configuration_errors_exit_2(in_tmp, capsys, argv, expected):
    wf = _workflow_file(in_tmp)
    express_glue = in_tmp / "glue.yaml"
    express_glue.write_text(
        "workflowName: g\nworkflowBucket: ceap-g\nsourceQueue: q\n"
        "steps:\n  - stateName: G\n    jobName: job-g\n"
    )
    bad_json = in_tmp / "bad.json"
    bad_json.write_text('[{"a": 1},\n {"a": x}]')
    values = {
        "wf": str(wf),
        "input": str(_input_file(in_tmp)),
        "express_glue": str(express_glue),
        "bad_json": str(bad_json),
    }
    status = main([a.format(**values) for a in argv])
    err = capsys.readouterr().err
    assert status == 2
    assert expected in err
    assert err.startswith(f"ceap-stage {argv[0]}: error:")


def test_a_workflow_that_cannot_run_locally_is_reported_before_anything_runs(in_tmp, capsys):
    wf = in_tmp / "nohandler.json"
    wf.write_text(
        json.dumps(
            {
                "workflowName": "x",
                "workflowBucket": "ceap-x",
                "sourceQueue": "q",
                "steps": [{"stateName": "A", "functionName": "fa"}],
            }
        )
    )
    status = main(["run", str(wf), "--input", str(_input_file(in_tmp))])
    assert status == 2
    assert "A names no handler" in capsys.readouterr().err
    assert not (in_tmp / ".ceap").exists()


def test_asl_and_template_print_the_generated_documents(in_tmp, capsys):
    config = load_workflow(EXAMPLE).config
    assert main(["asl", EXAMPLE]) == 0
    assert json.loads(capsys.readouterr().out) == build_definition(config)
    assert main(["template", EXAMPLE, "--compact"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == build_template(config)


def test_invoke_runs_one_handler_with_an_event_file(in_tmp, capsys):
    from ceap_stage.testing import build_event

    event = build_event(
        execution_id="inv-1",
        current_stage="Load",
        workflow_bucket="ceap-cli-test",
        initial_data=[{"id": 7, "value": 1.5}],
    )
    path = in_tmp / "event.json"
    path.write_text(json.dumps(event))
    status = main(["invoke", "tests.workflow.handlers:first", "--event", str(path)])
    out = capsys.readouterr().out
    pointer = json.loads(out[out.index("{\n") :])  # log lines may come first
    assert status == 0
    assert pointer["status"] == "SUCCESS"
    assert pointer["output"]["key"] == "executions/inv-1/Load/output.json"
    written = in_tmp / ".ceap/ceap-cli-test/executions/inv-1/Load/output.json"
    assert json.loads(written.read_text()) == [{"id": 7, "value": 1.5}]

    later = build_event(
        execution_id="inv-1",
        current_stage="Broken",
        previous_stage="Load",
        workflow_bucket="ceap-cli-test",
    )
    path.write_text(json.dumps(later))
    status = main(["invoke", "tests.workflow.handlers:broken", "--event", str(path)])
    assert status == 1
    assert capsys.readouterr().err.startswith("error: InputValidationError:")
    assert main(["invoke", "tests.workflow.handlers:nope", "--event", str(path)]) == 2


def _event_file(directory: Path, current: str = "Load", previous: str | None = None) -> Path:
    from ceap_stage.testing import build_event

    event = build_event(
        execution_id="inv-2",
        current_stage=current,
        previous_stage=previous,
        workflow_bucket="ceap-cli-test",
        initial_data=[{"id": 7, "value": 1.5}] if previous is None else None,
    )
    path = directory / "event.json"
    path.write_text(json.dumps(event))
    return path


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        # callable, but not a stage handler
        ("tests.workflow.handlers:recording", "tests.workflow.handlers:recording is a function"),
        ("tests.workflow.handlers:Item", "tests.workflow.handlers:Item is a class"),
        ("builtins:len", "builtins:len is a function"),
    ],
)
def test_invoke_refuses_a_target_that_is_not_a_stage_handler(in_tmp, capsys, reference, expected):
    status = main(["invoke", reference, "--event", str(_event_file(in_tmp))])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1  # one line, no traceback
    assert err.startswith(f"ceap-stage invoke: error: {expected}, not a stage handler")
    assert "@stage function or a WorkflowLambdaHandler instance or subclass" in err
    assert not (in_tmp / ".ceap").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("tests.workflow.handlerz:first", "No module named 'tests.workflow.handlerz'"),
        ("nosuchpackage.stages:first", "No module named 'nosuchpackage'"),
        ("tests.workflow.handlers:frist", "no attribute 'frist' (did you mean 'first'?)"),
        ("tests.workflow.handlers:EVENTS", "is not callable"),
        ("tests.workflow.handlers", "must look like 'package.module:attribute'"),
    ],
)
def test_invoke_names_what_was_not_found(in_tmp, capsys, reference, expected):
    status = main(["invoke", reference, "--event", str(_event_file(in_tmp))])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith("ceap-stage invoke: error: ")
    assert reference in err
    assert expected in err
    assert not (in_tmp / ".ceap").exists()


def test_invoke_accepts_a_handler_class_and_instance(in_tmp, capsys):
    # The engagement example's FilterStage, by class and by instance: both are accepted (the
    # stage then fails on its own terms, since no previous output exists: exit 1, not 2).
    path = _event_file(in_tmp, current="FilterStage", previous="ETLStage")
    for reference in (
        "examples.engagement.stages:FilterStage",
        "examples.engagement.stages:filter_stage",
    ):
        assert main(["invoke", reference, "--event", str(path)]) == 1
        assert capsys.readouterr().err.startswith("error: InputNotFoundError:")
    assert not list(in_tmp.glob(".ceap/**/output.json"))


@pytest.mark.parametrize("verbose", [False, True])
def test_invoke_configures_the_handler_without_touching_the_environment(in_tmp, capsys, verbose):
    from ceap_stage.testing import build_event

    event = build_event(
        execution_id="inv-env",
        current_stage="Load",
        workflow_bucket="ceap-cli-test",
        initial_data=[{"id": 1, "value": 2.0}],
    )
    path = in_tmp / "event.json"
    path.write_text(json.dumps(event))
    before = dict(os.environ)
    store = in_tmp / "given"
    argv = ["invoke", "tests.workflow.handlers:first", "--event", str(path)]
    argv += ["--store", store.as_uri(), *(["--verbose"] if verbose else [])]
    assert main(argv) == 0
    assert dict(os.environ) == before  # no CEAP_STORE, no POWERTOOLS_* written
    captured = capsys.readouterr()
    assert (store / "ceap-cli-test/executions/inv-env/Load/output.json").exists()
    # stdout holds the result pointer alone; the stage's logs go to stderr.
    assert json.loads(captured.out)["output"]["key"] == "executions/inv-env/Load/output.json"
    # Quiet unless --verbose: the log level and metrics-off reach the observer as settings.
    assert ('"stage started"' in captured.err) is verbose
    assert ('"_aws"' in captured.err) is verbose


def test_the_console_script_runs_the_demo_in_a_fresh_process(tmp_path):
    """`make demo`: the installed `ceap-stage` runs the example and ends with the outputs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    proc = subprocess.run(
        [str(CLI), "run", "examples/engagement/workflow.py", "--store", f"file://{tmp_path}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.rstrip().splitlines()
    assert lines[0].startswith("ceap-stage run: workflow engagement (EXPRESS, 5 steps)")
    assert lines[-2].startswith(f"Outputs: {tmp_path}/ceap-workflow-dev/executions/local-")
    assert lines[-1].endswith("/ReactiveStage/output.json")
    final = Path(lines[-1].removeprefix("Final output: "))
    plan = json.loads(final.read_text())
    assert set(plan) == {"reactions", "customers_by_tier"}
    assert "{" not in proc.stdout  # no JSON log or metric lines in the demo output


def test_importing_the_cli_stays_light():
    code = (
        "import sys, ceap_stage._cli; "
        "heavy = [m for m in ('boto3', 'botocore', 'pyspark', 'yaml', 'ceap_stage.workflow') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_the_example_fails_cleanly_on_a_malformed_batch(in_tmp, capsys):
    bad = in_tmp / "bad.json"
    bad.write_text(
        json.dumps(
            [
                {
                    "messageId": "m-1",
                    "body": json.dumps({"session_id": "s"}),
                    "eventSource": "aws:sqs",
                }
            ]
        )
    )
    status = main(["run", EXAMPLE, "--input", str(bad), "--execution-id", "bad-1"])
    captured = capsys.readouterr()
    assert status == 1
    assert "[1/5] ETLStage FAILED" in captured.out
    assert "Outputs of the stages" not in captured.out  # no directory to name
    assert captured.out.count("NOT_RUN") == 4
    assert "error: stage ETLStage failed with InputValidationError" in captured.err
    assert "bad-1" in captured.err  # the message names the execution, not the payload
    assert '"session_id"' not in captured.err
    assert not (in_tmp / ".ceap/ceap-workflow-dev/executions/bad-1/ETLStage").exists()


def test_version_prints_the_installed_version(capsys):
    import ceap_stage

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ceap-stage {ceap_stage.__version__}"


def test_every_command_help_says_what_the_command_does(capsys):
    import argparse

    from ceap_stage._cli import _parser

    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert "deploy" in commands.choices
    for name in commands.choices:
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        paragraphs = out.split("\n\n")
        assert paragraphs[0].startswith(f"usage: ceap-stage {name}")
        assert not paragraphs[1].startswith(("positional arguments:", "options:")), name


def test_no_command_prints_the_commands_and_exits_2(capsys):
    status = main([])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.startswith("usage: ceap-stage")
    for command in ("run", "check", "show", "replay", "deploy", "init"):
        assert f"    {command} " in captured.err


def test_a_bad_setting_in_the_environment_is_one_line_exit_2(in_tmp, capsys, monkeypatch):
    monkeypatch.setenv("CEAP_TRACER", "bogus")
    status = main(["run", str(_workflow_file(in_tmp)), "--input", str(_input_file(in_tmp))])
    err = capsys.readouterr().err
    assert status == 2
    assert err == "ceap-stage run: error: CEAP_TRACER must be one of off, otel, xray, not 'bogus'\n"
    assert not list(in_tmp.glob(".ceap/**/output.json"))
