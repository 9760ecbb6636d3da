"""A fanned-out Lambda step: configuration, ASL (two validators), template, local runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from ceap_stage import InputValidationError, LocalStore
from ceap_stage.workflow import (
    FanOut,
    LambdaStep,
    LocalRunner,
    RetryConfiguration,
    WorkflowConfiguration,
    WorkflowConfigurationError,
    WorkflowType,
    build_definition,
    build_template,
    load_workflow,
)
from ceap_stage.workflow._fanout_kind import FANOUT_KIND, state_names
from ceap_stage.workflow._kinds import kind_of

from ._asl_tools import ROOT, validate_definitions
from .handlers import batch

_H = "tests.workflow.handlers"
SERVICE_SCRIPT = Path(__file__).with_name("validate_asl_service.js")


def _config(
    fan_out: FanOut | None = None,
    *,
    handler: str = "double",
    workflow_type: WorkflowType = WorkflowType.STANDARD,
    retry: RetryConfiguration | None = None,
) -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="fan-test",
        workflow_type=workflow_type,
        steps=[
            LambdaStep(state_name="Load", function_name="load", handler=f"{_H}:first"),
            LambdaStep(
                state_name="Double",
                function_name="double",
                handler=f"{_H}:{handler}",
                fan_out=fan_out or FanOut(records_per_shard=3, max_concurrency=50),
            ),
            LambdaStep(state_name="Again", function_name="again", handler=f"{_H}:double"),
        ],
        workflow_bucket="ceap-fan-test",
        source_queue="in",
        retry_config=retry or RetryConfiguration(),
    )


# -- configuration ----------------------------------------------------------------------------


def test_a_fanned_out_step_is_served_by_the_fan_out_variant_of_the_lambda_kind():
    config = _config()
    assert kind_of(config.steps[1]) is FANOUT_KIND
    assert kind_of(config.steps[0]).name == "lambda"
    step = config.steps[1]
    assert isinstance(step, LambdaStep)
    assert step.fan_out == FanOut(records_per_shard=3, max_concurrency=50)


def test_fan_out_is_given_as_fanOut_in_yaml_and_json(tmp_path):
    data = {
        "workflowName": "w",
        "workflowType": "STANDARD",
        "workflowBucket": "bkt-1",
        "sourceQueue": "q",
        "steps": [
            {"stateName": "A", "functionName": "fa"},
            {
                "stateName": "B",
                "functionName": "fb",
                "fanOut": {
                    "recordsPerShard": 500,
                    "maxConcurrency": 20,
                    "toleratedFailurePercentage": 5,
                },
            },
        ],
    }
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(data))
    step = load_workflow(path).config.steps[1]
    assert isinstance(step, LambdaStep)
    assert step.fan_out == FanOut(
        records_per_shard=500, max_concurrency=20, tolerated_failure_percentage=5
    )
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_workflow(path).config.steps[1] == step


@pytest.mark.parametrize(
    ("fan_out", "fact"),
    [
        ({"recordsPerShard": 0}, "steps.1.fanOut.recordsPerShard: Input should be greater"),
        (
            {"recordsPerShard": 5, "maxConcurrency": 10_001},
            "steps.1.fanOut.maxConcurrency: Input should be less than or equal to 10000",
        ),
        (
            {"recordsPerShard": 5, "toleratedFailurePercentage": 101},
            "steps.1.fanOut.toleratedFailurePercentage",
        ),
        ({"maxConcurrency": 5}, "steps.1.fanOut.recordsPerShard: Field required"),
    ],
)
def test_bad_fan_out_values_are_configuration_errors_naming_the_field(fan_out, fact):
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration.parse(
            {
                "workflowName": "w",
                "workflowType": "STANDARD",
                "workflowBucket": "bkt-1",
                "sourceQueue": "q",
                "steps": [
                    {"stateName": "A", "functionName": "fa"},
                    {"stateName": "B", "functionName": "fb", "fanOut": fan_out},
                ],
            }
        )
    assert fact in str(caught.value)


def test_a_glue_step_a_first_step_and_an_express_workflow_cannot_fan_out():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration.parse(
            {
                "workflowName": "w",
                "workflowBucket": "bkt-1",
                "sourceQueue": "q",
                "steps": [
                    {"stateName": "A", "functionName": "fa", "fanOut": {"recordsPerShard": 5}},
                    {"stateName": "G", "jobName": "job-g", "fanOut": {"recordsPerShard": 5}},
                ],
            }
        )
    message = str(caught.value)
    assert "steps.1: fan_out: a Glue step cannot be fanned out" in message
    assert "steps[0] (A): fan_out: a first step cannot be fanned out" in message
    assert "steps[0] (A): fan_out needs workflow_type STANDARD" in message


def test_a_kotlin_stage_cannot_be_fanned_out_nor_follow_a_fanned_out_step():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration(
            workflow_name="w",
            workflow_type=WorkflowType.STANDARD,
            workflow_bucket="bkt-1",
            source_queue="q",
            steps=[
                LambdaStep(state_name="A", function_name="fa"),
                LambdaStep(
                    state_name="B",
                    function_name="fb",
                    contract="ceap-kotlin",
                    fan_out=FanOut(records_per_shard=5),
                ),
                LambdaStep(state_name="C", function_name="fc", fan_out=FanOut(records_per_shard=5)),
                LambdaStep(state_name="K", function_name="fk", contract="ceap-kotlin"),
            ],
        )
    message = str(caught.value)
    assert "steps[1] (B): fan_out: a step with contract 'ceap-kotlin' cannot be fanned out" in (
        message
    )
    assert "step K is a Kotlin CEAP stage" in message
    assert "C (fanned-out Lambda step), cannot be asked for one" in message


def test_a_long_state_name_leaves_no_room_for_the_fan_out_states():
    with pytest.raises(WorkflowConfigurationError, match="at most 73 characters"):
        WorkflowConfiguration(
            workflow_name="w",
            workflow_type=WorkflowType.STANDARD,
            workflow_bucket="bkt-1",
            source_queue="q",
            steps=[
                LambdaStep(state_name="A", function_name="fa"),
                LambdaStep(
                    state_name="B" * 74, function_name="fb", fan_out=FanOut(records_per_shard=1)
                ),
            ],
        )


def test_the_loader_refuses_a_handler_whose_models_cannot_be_fanned_out(tmp_path):
    data = _config(handler="count_items").model_dump(by_alias=True, mode="json")
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(data))
    with pytest.raises(WorkflowConfigurationError) as caught:
        load_workflow(path)
    assert "step Double: fan_out (tests.workflow.handlers:count_items)" in str(caught.value)
    assert "list-like or Iterable[X] output model, not int" in str(caught.value)
    # A handler that cannot be imported here is not checked (the plan phase checks again).
    data["steps"][1]["handler"] = "no_such_module_here:stage"
    path.write_text(json.dumps(data))
    loaded = load_workflow(path).config.steps[1]
    assert isinstance(loaded, LambdaStep)
    assert loaded.handler == "no_such_module_here:stage"


# -- the state machine ------------------------------------------------------------------------


def test_the_fan_out_states_plan_map_and_collect():
    config = _config(
        FanOut(records_per_shard=3, max_concurrency=50, tolerated_failure_percentage=5)
    )
    asl = build_definition(config)
    states = asl["States"]
    plan, shards, collect = state_names("Double")
    assert states["Load"]["Next"] == plan
    assert states[plan]["Next"] == shards
    assert states[shards]["Next"] == collect
    assert states[collect]["Next"] == "Again"
    assert states[plan]["Parameters"]["Payload"]["ceapPhase"] == "plan"
    assert states[plan]["Parameters"]["Payload"]["recordsPerShard"] == 3
    assert states[collect]["Parameters"]["Payload"]["ceapPhase"] == "collect"
    assert states[collect]["Parameters"]["Payload"]["toleratedFailurePercentage"] == 5
    for name in (plan, shards, collect):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "WorkflowFailed"}
        ]
    fan = states[shards]
    assert fan["Type"] == "Map"
    assert fan["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "EXPRESS",
    }
    assert fan["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSONL"},
        "Parameters": {
            "Bucket": "ceap-fan-test",
            "Key.$": "States.Format('executions/{}/Double/shards.jsonl', $$.Execution.Name)",
        },
    }
    # Built in the parent: its execution name is the contract's execution id.
    assert fan["ItemSelector"] == {
        "executionId.$": "$$.Execution.Name",
        "shard.$": "$$.Map.Item.Value",
        "redriveCount.$": "$$.Execution.RedriveCount",
    }
    assert fan["MaxConcurrency"] == 50
    assert fan["ToleratedFailurePercentage"] == 5
    assert fan["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert fan["ResultWriter"]["Parameters"]["Prefix.$"] == (
        "States.Format('executions/{}/Double/map-results', $$.Execution.Name)"
    )
    assert fan["ResultPath"] is None
    (child,) = fan["ItemProcessor"]["States"].values()
    assert child["Parameters"]["Payload"] == {
        "executionId.$": "$.executionId",
        "currentStage": "Double",
        "previousStage": "Load",
        "workflowBucket": "ceap-fan-test",
        "workflowName": "fan-test",
        "retryCount.$": "$$.State.RetryCount",
        "redriveCount.$": "$.redriveCount",
        "ceapPhase": "shard",
        "shard.$": "$.shard",
    }
    assert child["Retry"] == states[plan]["Retry"]
    assert child["End"] is True


def test_a_step_without_retries_gives_its_shards_none():
    asl = build_definition(_config(retry=RetryConfiguration(lambda_max_attempts=0)))
    (child,) = asl["States"]["Double shards"]["ItemProcessor"]["States"].values()
    assert "Retry" not in child


def _service_validate(definitions: list[dict[str, Any]], directory: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "amazon-states-language-service").is_dir():
        pytest.skip("the npm amazon-states-language-service is not installed (npm install)")
    paths = []
    for index, definition in enumerate(definitions):
        path = directory / f"definition-{index:04d}.json"
        path.write_text(json.dumps(definition, indent=1))
        paths.append(str(path))
    proc = subprocess.run(
        [node, str(SERVICE_SCRIPT), *paths], capture_output=True, text=True, timeout=120, check=True
    )
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def _fan_out_definitions() -> list[dict[str, Any]]:
    return [
        build_definition(_config()),
        build_definition(_config(FanOut(records_per_shard=1, max_concurrency=10_000))),
        build_definition(
            _config(
                FanOut(records_per_shard=7, tolerated_failure_percentage=100),
                retry=RetryConfiguration(lambda_max_attempts=0),
            )
        ),
    ]


def test_the_asl_passes_asl_validator(tmp_path):
    assert validate_definitions(_fan_out_definitions(), tmp_path) == {}


def test_the_asl_passes_amazon_states_language_service(tmp_path):
    results = _service_validate(_fan_out_definitions(), tmp_path)
    assert results == {name: [] for name in results}
    assert len(results) == 3
    # The service knows Distributed Map: a wrong mode and reader type are flagged.
    broken = build_definition(_config())
    fan = broken["States"]["Double shards"]
    fan["ItemProcessor"]["ProcessorConfig"]["Mode"] = "SCATTERED"
    fan["ItemReader"]["ReaderConfig"]["InputType"] = "PARQUET"
    (problems,) = _service_validate([broken], tmp_path).values()
    messages = " ".join(p["message"] for p in problems)
    assert '"DISTRIBUTED"' in messages
    assert '"JSONL"' in messages


# moto's Step Functions interpreter cannot run a Distributed Map (its ASL parser refuses an
# EXPRESS item processor, and child executions and an S3 ItemReader are beyond it), so no test
# runs the fanned-out machine under moto: the phases run through the local runner's tests below,
# and the definition is checked by asl-validator and amazon-states-language-service above.


# -- the template -----------------------------------------------------------------------------


def test_the_role_may_start_its_own_children_and_touch_only_the_stage_s_fan_out_objects():
    template = build_template(_config())
    statements = template["Resources"]["StateMachineRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    by_action = {json.dumps(s["Action"]): s["Resource"] for s in statements}
    arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
    assert by_action['"states:StartExecution"'] == {"Fn::Sub": f"{arn}:stateMachine:fan-test"}
    assert by_action['["states:DescribeExecution", "states:StopExecution"]'] == {
        "Fn::Sub": f"{arn}:execution:fan-test/*"
    }
    objects = "arn:${AWS::Partition}:s3:::ceap-fan-test/executions/*/Double/"
    assert by_action['"s3:GetObject"'] == [{"Fn::Sub": objects + "shards.jsonl"}]
    writes = by_action[
        '["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"]'
    ]
    assert writes == [{"Fn::Sub": objects + "map-results/*"}]
    invoked = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    functions = json.dumps(invoked)
    assert all(f":function:{name}" in functions for name in ("load", "double", "again"))


def test_the_template_passes_cfn_lint():
    from tests.workflow.test_template import _lint

    assert _lint(build_template(_config())) == []


# -- local runs -------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.progress: list[tuple[int, int]] = []
        self.failed: list[tuple[int, str]] = []

    def run_started(self, result: Any, config: Any) -> None:
        pass

    def stage_started(self, index: int, step: Any) -> None:
        pass

    def attempt_failed(self, step: Any, attempt: int, error: BaseException, retry_in: Any) -> None:
        pass

    def stage_finished(self, index: int, outcome: Any) -> None:
        pass

    def shards_progress(self, step: Any, done: int, total: int) -> None:
        self.progress.append((done, total))

    def shard_failed(self, step: Any, index: int, error: BaseException) -> None:
        self.failed.append((index, type(error).__name__))


def _records(store: LocalStore, result: Any, stage: str) -> list[Any]:
    from ceap_stage._io import OutputRef, StageIO

    value: list[Any] = (
        StageIO(store).read(OutputRef(result.bucket, result.execution_id, stage)).value
    )
    return value


@pytest.mark.parametrize("workers", [1, 2])
def test_the_runner_fans_out_over_workers_with_the_single_run_s_records(tmp_path, workers):
    values = [float(v) for v in range(11)]
    store = LocalStore(tmp_path / "fan")
    recorder = Recorder()
    fanned = LocalRunner(_config(), store=store, workers=workers, reporter=recorder).run(
        batch(*values), execution_id="exec-fan"
    )
    assert fanned.succeeded, fanned.error
    plain_config = _config()
    steps = [s.model_copy(update={"fan_out": None}) for s in plain_config.steps]
    plain = WorkflowConfiguration(**{**plain_config.model_dump(), "steps": steps})
    single_store = LocalStore(tmp_path / "single")
    single = LocalRunner(plain, store=single_store, workers=workers).run(
        batch(*values), execution_id="exec-fan"
    )
    assert single.succeeded
    for stage in ("Double", "Again"):
        assert _records(store, fanned, stage) == _records(single_store, single, stage)
    outcome = fanned.stages[1]
    assert outcome.records == 11
    assert outcome.details["shards"] == 4
    assert recorder.progress[0] == (0, 4)
    assert recorder.progress[-1] == (4, 4)
    if workers == 2:
        assert outcome.details["workers"] == 2
        assert outcome.details["peak_shard_process_bytes"] > 0
    manifest = orjson.loads(
        (tmp_path / "fan" / fanned.bucket)
        .joinpath("executions", "exec-fan", "Double", "output.json")
        .read_bytes()
    )
    assert len(manifest["parts"]) == 4


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_shard_is_reported_by_index_and_fails_the_stage(tmp_path, workers):
    store = LocalStore(tmp_path)
    recorder = Recorder()
    result = LocalRunner(
        _config(handler="fail_on_three"), store=store, workers=workers, reporter=recorder
    ).run(batch(*[float(v) for v in range(9)]), execution_id="exec-fail")
    assert not result.succeeded
    assert isinstance(result.error, InputValidationError)
    assert recorder.failed == [(1, "InputValidationError")]  # ids 3-5 are shard 1
    assert result.stages[1].details["failed_shards"] == [1]
    assert store.get(result.bucket, "executions/exec-fail/Double/output.json") is None
    assert result.stages[2].status == "NOT_RUN"


def test_a_tolerated_shard_failure_leaves_its_records_out(tmp_path):
    store = LocalStore(tmp_path)
    config = _config(
        FanOut(records_per_shard=3, tolerated_failure_percentage=34), handler="fail_on_three"
    )
    result = LocalRunner(config, store=store, workers=1).run(
        batch(*[float(v) for v in range(9)]), execution_id="exec-tolerate"
    )
    assert result.succeeded, result.error
    assert [r["id"] for r in _records(store, result, "Double")] == [0, 1, 2, 6, 7, 8]
    assert result.stages[1].details["failed_shards"] == [1]


def test_the_cli_runs_a_fanned_out_workflow_with_workers(tmp_path, capsys):
    from ceap_stage._cli import main

    path = tmp_path / "wf.json"
    data = _config().model_dump(by_alias=True, mode="json")
    path.write_text(json.dumps(data))
    initial = tmp_path / "in.json"
    initial.write_text(json.dumps(batch(*[float(v) for v in range(7)])))
    code = main(
        [
            "run",
            str(path),
            "--input",
            str(initial),
            "--store",
            f"file://{tmp_path}/s",
            "--workers",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Double (Lambda double (fanned out, 3 records per shard))" in out
    assert "shards 3/3 done" in out
    with pytest.raises(SystemExit):
        main(["run", str(path), "--workers", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_the_cli_says_when_a_tolerated_shard_failure_left_records_out(tmp_path, capsys):
    from ceap_stage._cli import main

    config = _config(
        FanOut(records_per_shard=3, tolerated_failure_percentage=34), handler="fail_on_three"
    )
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(config.model_dump(by_alias=True, mode="json")))
    initial = tmp_path / "in.json"
    initial.write_text(json.dumps(batch(*[float(v) for v in range(9)])))
    store = f"file://{tmp_path}/s"
    assert (
        main(["run", str(path), "--input", str(initial), "--store", store, "--workers", "1"]) == 0
    )
    out = capsys.readouterr().out
    assert (
        "Double: 1 of 3 shards failed (tolerated): their records are missing from the output "
        "(shards 1)" in out
    )
