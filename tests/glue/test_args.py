"""Argument resolution: the job arguments Step Functions passes, checked like a Lambda event."""

from __future__ import annotations

from typing import Any

import pytest

from ceap_stage import ContextResolutionError
from ceap_stage.glue import resolve_args
from ceap_stage.glue._args import REQUIRED_ARGUMENTS

from .conftest import BUCKET, RUN, job_argv


def test_resolves_every_argument() -> None:
    args = resolve_args(job_argv("Aggregate", "Ingest"))

    assert args.job_name == "ceap-glue-test-job"
    assert args.execution_id == RUN
    assert args.current_stage == "Aggregate"
    assert args.previous_stage == "Ingest"
    assert (args.input_bucket, args.output_bucket) == (BUCKET, BUCKET)
    assert args.input_key == f"executions/{RUN}/Ingest/output.json"
    assert args.output_key == f"executions/{RUN}/Aggregate/output.json"
    assert args.parts_prefix == f"executions/{RUN}/Aggregate/parts/"
    assert not args.is_first_stage


def test_context_matches_the_lambda_side() -> None:
    ctx = resolve_args(job_argv("Aggregate", "Ingest")).context()

    assert ctx.input_key == f"executions/{RUN}/Ingest/output.json"
    assert ctx.output_key == f"executions/{RUN}/Aggregate/output.json"
    assert ctx.workflow_bucket == BUCKET


@pytest.mark.parametrize("previous", [None, ""])
def test_first_glue_stage_reads_the_initial_output(previous: str | None) -> None:
    argv = job_argv("Aggregate", None)
    if previous is not None:
        argv += ["--previous-stage", previous]

    args = resolve_args(argv)

    assert args.is_first_stage
    assert args.previous_stage is None
    assert args.input_stage == "initial"
    assert args.input_key == f"executions/{RUN}/initial/output.json"


def test_equals_syntax_and_unknown_glue_options_are_accepted() -> None:
    argv = job_argv("Aggregate", "Ingest")
    i = argv.index("--current-stage")
    argv[i : i + 2] = ["--current-stage=Aggregate"]
    argv += ["--job-bookmark-option", "job-bookmark-disable", "--TempDir", "s3://tmp/x"]

    assert resolve_args(argv).current_stage == "Aggregate"


def test_execution_arn_is_reduced_to_the_name() -> None:
    arn = f"arn:aws:states:eu-west-1:123456789012:execution:Engagement:{RUN}"

    assert resolve_args(job_argv(execution_id=arn)).execution_id == RUN


def test_extra_arguments_are_required_and_returned() -> None:
    argv = [*job_argv(), "--min-events", "3"]

    assert resolve_args(argv, extra=["min-events"]).extra == {"min-events": "3"}
    with pytest.raises(ContextResolutionError, match="--min-events"):
        resolve_args(job_argv(), extra=["min-events"])


@pytest.mark.parametrize("missing", REQUIRED_ARGUMENTS)
def test_a_missing_argument_is_named(missing: str) -> None:
    overrides: dict[str, Any] = {missing: None}
    with pytest.raises(ContextResolutionError) as info:
        resolve_args(job_argv(**overrides))

    assert f"--{missing}" in str(info.value)
    assert "incomplete or malformed" in str(info.value)


def test_an_argument_without_its_value_is_refused() -> None:
    argv = job_argv()
    argv.remove(RUN)  # "--execution-id" now swallows no value

    with pytest.raises(ContextResolutionError):
        resolve_args(argv)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"input_key": f"executions/{RUN}/Other/output.json"}, "--input-key"),
        ({"input_key": "executions/other-run/Ingest/output.json"}, "--input-key"),
        ({"input_key": f"executions/{RUN}/Ingest/../Aggregate/output.json"}, "--input-key"),
        ({"input_key": f"/executions/{RUN}/Ingest/output.json"}, "--input-key"),
        ({"input_key": f"executions/{RUN}/Ingest/output.json/part-0000.json"}, "--input-key"),
        ({"output_key": f"executions/{RUN}/Ingest/output.json"}, "--output-key"),
        ({"output_key": f"executions/{RUN}/Aggregate/output.json/"}, "--output-key"),
        ({"output_key": "elsewhere/output.json"}, "--output-key"),
    ],
)
def test_a_key_outside_the_convention_is_refused(override: dict[str, str], expected: str) -> None:
    with pytest.raises(ContextResolutionError) as info:
        resolve_args(job_argv(**override))

    err = info.value
    assert f"{expected} is not the convention key" in err.detail
    assert err.execution_id == RUN
    assert err.stage == "Aggregate"
    # The message says which key was expected.
    stage = "Ingest" if expected == "--input-key" else "Aggregate"
    assert f"executions/{RUN}/{stage}/output.json" in err.detail


def test_first_stage_must_read_the_initial_key() -> None:
    argv = job_argv("Aggregate", None, input_key=f"executions/{RUN}/Ingest/output.json")

    with pytest.raises(ContextResolutionError, match=r"initial/output\.json"):
        resolve_args(argv)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("execution-id", "../etc"),
        ("execution-id", ".."),
        ("execution-id", "run/1"),
        ("execution-id", "run 1"),
        ("execution-id", "x" * 81),
        ("current-stage", ".."),
        ("current-stage", "a/b"),
        ("current-stage", "a\\b"),
        ("previous-stage", "../Ingest"),
        ("previous-stage", "."),
    ],
)
def test_traversal_and_bad_identifiers_are_refused(argument: str, value: str) -> None:
    with pytest.raises(ContextResolutionError):
        resolve_args(job_argv(**{argument: value}))


@pytest.mark.parametrize("bucket", ["Bad_Bucket", "ab", "../x", "192.168.0.1"])
def test_invalid_buckets_are_refused(bucket: str) -> None:
    with pytest.raises(ContextResolutionError, match="bucket"):
        resolve_args(job_argv(input_bucket=bucket))


def test_previous_stage_must_differ_from_current() -> None:
    with pytest.raises(ContextResolutionError, match="must differ"):
        resolve_args(job_argv("Aggregate", "Aggregate"))


def test_a_pinned_bucket_refuses_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEAP_WORKFLOW_BUCKET", "the-pinned-bucket")

    with pytest.raises(ContextResolutionError, match="never touches another bucket"):
        resolve_args(job_argv())
    assert resolve_args(job_argv(bucket="the-pinned-bucket")).output_bucket == "the-pinned-bucket"
    with pytest.raises(ContextResolutionError, match="--output-bucket"):
        resolve_args(
            job_argv(bucket="the-pinned-bucket", output_bucket=BUCKET), bucket="the-pinned-bucket"
        )


def test_reads_sys_argv_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", job_argv("Report", "Aggregate"))

    assert resolve_args().current_stage == "Report"
