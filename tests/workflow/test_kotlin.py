"""Kotlin CEAP stages in a ceap-stage workflow (docs/contract.md section 9).

The configuration (``contract``), the event of the step before (``outputFormat``), the Choice
that turns ``status: FAILED`` into ``StageFailed`` (shape, moto's interpreter), and local runs
through a stand-in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceap_stage import InputValidationError, LocalStore, StageFailed
from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    LocalRunner,
    WorkflowConfiguration,
    WorkflowConfigurationError,
    WorkflowType,
    build_definition,
    lambda_event,
    load_workflow,
)
from ceap_stage.workflow._kinds import kind_of
from ceap_stage.workflow._runner import LocalRunError

from ._moto_sfn import StepFunctionsHarness

_H = "tests.workflow.handlers"
_BUCKET = "ceap-kotlin-test"
BATCH = [
    {"messageId": "m-1", "body": json.dumps({"id": 1, "value": 2.5}), "eventSource": "aws:sqs"},
    {"messageId": "m-2", "body": json.dumps({"id": 2, "value": 4}), "eventSource": "aws:sqs"},
]


def _hybrid(
    *, kotlin: dict[str, Any] | None = None, last: bool = False, workflow_type: str = "EXPRESS"
) -> WorkflowConfiguration:
    options = kotlin if kotlin is not None else {"handler": f"{_H}:kotlin_like"}
    steps: list[LambdaStep | GlueStep] = [
        LambdaStep(state_name="Load", function_name="load-fn", handler=f"{_H}:first"),
        LambdaStep(
            state_name="Score", function_name="score-kotlin", contract="ceap-kotlin", **options
        ),
    ]
    if not last:
        steps.append(
            LambdaStep(state_name="Publish", function_name="publish-fn", handler=f"{_H}:double")
        )
    return WorkflowConfiguration(
        workflow_name="hybrid",
        workflow_type=WorkflowType(workflow_type),
        steps=steps,
        workflow_bucket=_BUCKET,
        source_queue="in",
    )


# -- configuration --------------------------------------------------------------------------


def test_contract_is_a_field_of_lambda_steps_in_code_and_in_files():
    config = WorkflowConfiguration.parse(
        {
            "workflowName": "w",
            "steps": [
                {"stateName": "A", "functionName": "fa"},
                {"stateName": "K", "functionName": "fk", "contract": "ceap-kotlin"},
            ],
            "workflowBucket": "bkt-1",
            "sourceQueue": "q",
        }
    )
    assert [step.contract for step in config.steps] == ["ceap", "ceap-kotlin"]  # type: ignore[union-attr]
    assert [kind_of(step).name for step in config.steps] == ["lambda", "ceap-kotlin"]
    assert [step.type for step in config.steps] == ["lambda", "lambda"]


@pytest.mark.parametrize("contract", ["kotlin", "CEAP-KOTLIN", "", 3])
def test_an_unknown_contract_is_a_configuration_error_naming_the_field(contract: Any):
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration.parse(
            {
                "workflowName": "w",
                "steps": [{"stateName": "K", "functionName": "fk", "contract": contract}],
                "workflowBucket": "bkt-1",
                "sourceQueue": "q",
            }
        )
    message = str(caught.value)
    assert "steps.0.contract" in message
    assert "'ceap-kotlin'" in message
    assert repr(contract) in message


def test_a_recorded_output_needs_the_kotlin_contract():
    with pytest.raises(WorkflowConfigurationError, match="recorded_output stands in for a Kotlin"):
        WorkflowConfiguration.parse(
            {
                "workflowName": "w",
                "steps": [{"stateName": "A", "functionName": "fa", "recordedOutput": "out.json"}],
                "workflowBucket": "bkt-1",
                "sourceQueue": "q",
            }
        )


def test_a_kotlin_step_after_a_glue_step_is_refused():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration(
            workflow_name="w",
            workflow_type=WorkflowType.STANDARD,
            steps=[
                GlueStep(state_name="Enrich", job_name="enrich-job"),
                LambdaStep(state_name="Score", function_name="fk", contract="ceap-kotlin"),
            ],
            workflow_bucket="bkt-1",
            source_queue="q",
        )
    message = str(caught.value)
    assert "Score is a Kotlin CEAP stage" in message
    assert "Enrich (Glue step)" in message
    assert "manifest" in message


# -- the state machine ----------------------------------------------------------------------


def test_only_the_step_before_a_kotlin_step_is_asked_for_one_json_document():
    config = _hybrid()
    events = [lambda_event(config, i, execution_id="run-1") for i in range(3)]
    assert [event.get("outputFormat") for event in events] == ["json", None, None]
    payload = build_definition(config)["States"]["Load"]["Parameters"]["Payload"]
    assert payload["outputFormat"] == "json"
    steps = [step.model_dump() for step in config.steps]
    steps[1]["contract"] = "ceap"
    plain = WorkflowConfiguration.parse({**config.model_dump(), "steps": steps})
    assert "outputFormat" not in lambda_event(plain, 0, execution_id="run-1")


def test_a_kotlin_task_is_followed_by_a_choice_on_its_status():
    states = build_definition(_hybrid())["States"]
    assert states["Score"]["Resource"] == "arn:aws:states:::lambda:invoke"
    assert states["Score"]["Next"] == "Score status"
    choice = states["Score status"]
    assert choice["Type"] == "Choice"
    assert choice["Default"] == "Publish"
    targets = [rule["Next"] for rule in choice["Choices"]]
    assert targets == ["Score failed", "Score failed (no message)"]
    assert {"Variable": "$.result.status", "StringEquals": "FAILED"} in choice["Choices"][0]["And"]
    assert states["Score failed"] == {
        "Type": "Fail",
        "Comment": "Kotlin stage Score returned status FAILED",
        "Error": "StageFailed",
        "CausePath": "$.result.errorMessage",
    }
    assert states["Score failed (no message)"]["Error"] == "StageFailed"


def test_a_last_kotlin_step_succeeds_through_a_succeed_state():
    states = build_definition(_hybrid(last=True, workflow_type="STANDARD"))["States"]
    assert states["Score status"]["Default"] == "Score succeeded"
    assert states["Score succeeded"]["Type"] == "Succeed"
    # EXPRESS: it goes on to the Choice that answers the pipe (docs/batches.md), data unchanged.
    states = build_definition(_hybrid(last=True))["States"]
    assert states["Score status"]["Default"] == "Score succeeded"
    assert states["Score succeeded"]["Type"] == "Pass"
    assert states["Score succeeded"]["Next"] == "QueueBatchOutcome"
    assert "Parameters" not in states["Score succeeded"]


def test_the_kotlin_function_may_be_invoked_by_the_role():
    template = _hybrid().to_cloudformation()
    policy = json.dumps(template["Resources"])
    assert "function:score-kotlin" in policy


# -- moto's interpreter ---------------------------------------------------------------------


def _moto_config() -> WorkflowConfiguration:
    return _hybrid(
        kotlin={},
        workflow_type="STANDARD",
    )


def test_a_failed_kotlin_result_fails_the_execution_with_stage_failed(sfn: StepFunctionsHarness):
    sfn.lambdas.behaviours["score-kotlin"] = lambda payload: {
        "status": "FAILED",
        "stage": payload["currentStage"],
        "errorMessage": "no candidates for program p-1",
    }
    execution = sfn.execute(sfn.deploy(_moto_config()), "exec-kotlin-failed", BATCH)
    assert execution.status == "FAILED"
    assert execution.error == "StageFailed"
    assert execution.cause == "no candidates for program p-1"
    assert execution.entered() == ["Load", "Score", "Score status", "Score failed"]
    assert sfn.lambdas.payloads("publish-fn") == []
    assert len(sfn.lambdas.payloads("score-kotlin")) == 1  # not retried
    assert sfn.lambdas.payloads("load-fn")[0]["outputFormat"] == "json"
    assert "outputFormat" not in sfn.lambdas.payloads("score-kotlin")[0]


def test_a_failed_kotlin_result_without_a_message_still_fails(sfn: StepFunctionsHarness):
    sfn.lambdas.behaviours["score-kotlin"] = lambda payload: {"status": "FAILED"}
    execution = sfn.execute(sfn.deploy(_moto_config()), "exec-kotlin-nomessage", BATCH)
    assert execution.status == "FAILED"
    assert execution.error == "StageFailed"
    assert execution.cause is not None
    assert "Score returned status FAILED without an errorMessage" in execution.cause


def test_a_successful_kotlin_result_goes_on_to_the_next_step(sfn: StepFunctionsHarness):
    sfn.lambdas.behaviours["score-kotlin"] = lambda payload: {
        "status": "SUCCESS",
        "stage": payload["currentStage"],
        "recordsProcessed": 2,
    }
    config = _moto_config()
    execution = sfn.execute(sfn.deploy(config), "exec-kotlin-ok", BATCH)
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.entered() == ["Load", "Score", "Score status", "Publish"]
    assert sfn.lambdas.payloads("publish-fn") == [
        lambda_event(config, 2, execution_id="exec-kotlin-ok")
    ]


def test_a_last_kotlin_step_that_succeeds_ends_the_execution(sfn: StepFunctionsHarness):
    sfn.lambdas.behaviours["score-kotlin"] = lambda payload: {"status": "SUCCESS"}
    execution = sfn.execute(sfn.deploy(_hybrid(kotlin={}, last=True)), "exec-kotlin-last", BATCH)
    assert execution.status == "SUCCEEDED", execution.cause
    # EXPRESS: then the Choice that answers the pipe, which finds no batchItemFailures.
    assert execution.entered()[-3:] == ["Score succeeded", "QueueBatchOutcome", "WorkflowSucceeded"]
    assert execution.output == {"stage": "Score", "result": {"status": "SUCCESS"}}


# -- local runs -----------------------------------------------------------------------------


def test_a_kotlin_step_without_a_stand_in_is_refused_before_anything_runs(tmp_path: Path):
    store = LocalStore(tmp_path)
    runner = LocalRunner(_hybrid(kotlin={}), store=store)
    with pytest.raises(LocalRunError) as caught:
        runner.run(BATCH, execution_id="run-missing")
    message = str(caught.value)
    assert "Kotlin step Score (contract 'ceap-kotlin')" in message
    assert "needs a stand-in" in message
    assert "recorded_output" in message
    assert list(tmp_path.rglob("*")) == []  # not even the first step ran


def test_a_missing_recorded_output_is_refused_before_anything_runs(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    missing = tmp_path / "nowhere.json"
    runner = LocalRunner(_hybrid(kotlin={"recorded_output": str(missing)}), store=store)
    with pytest.raises(LocalRunError, match=r"Kotlin step Score .*no recorded output at"):
        runner.run(BATCH, execution_id="run-missing")
    assert not (tmp_path / "store").exists()


def test_a_recorded_output_that_is_not_one_json_document_is_refused(tmp_path: Path):
    recorded = tmp_path / "output.json"
    recorded.write_text('{"a": 1}\n{"a": 2}\n')
    runner = LocalRunner(_hybrid(kotlin={"recorded_output": str(recorded)}))
    with pytest.raises(LocalRunError, match="is not one JSON document"):
        runner.check()


def test_the_stand_in_reads_one_document_and_its_output_feeds_the_next_step(tmp_path: Path):
    store = LocalStore(tmp_path)
    result = LocalRunner(_hybrid(), store=store).run(BATCH, execution_id="run-ok")
    assert result.succeeded, result.error
    assert [s.status for s in result.stages] == ["SUCCEEDED"] * 3
    score = store.get(_BUCKET, "executions/run-ok/Score/output.json")
    assert score is not None
    assert json.loads(score.body) == [{"id": 1, "value": 2.5}, {"id": 2, "value": 4.0}]
    final = store.get(_BUCKET, "executions/run-ok/Publish/output.json")
    assert final is not None
    assert json.loads(final.body) == [{"id": 1, "value": 5.0}, {"id": 2, "value": 8.0}]


def test_the_step_before_a_kotlin_step_writes_one_document_not_a_manifest(tmp_path: Path):
    batch = [
        {"messageId": f"m-{i}", "body": json.dumps({"id": i, "value": i / 2})} for i in range(10)
    ]
    records = [{"id": i, "value": i / 2} for i in range(10)]
    steps = [
        LambdaStep(state_name="Load", function_name="load-fn", handler=f"{_H}:small_objects"),
        LambdaStep(state_name="Next", function_name="next-fn", handler=f"{_H}:double"),
    ]
    plain = WorkflowConfiguration(
        workflow_name="plain", steps=steps, workflow_bucket=_BUCKET, source_queue="in"
    )
    store = LocalStore(tmp_path)
    assert LocalRunner(plain, store=store).run(batch, execution_id="run-plain").succeeded
    manifest = store.get(_BUCKET, "executions/run-plain/Load/output.json")
    assert manifest is not None
    assert b"manifest/1" in manifest.body  # what the Kotlin stage would have read as its data

    steps[1] = LambdaStep(
        state_name="Next",
        function_name="next-kt",
        contract="ceap-kotlin",
        handler=f"{_H}:kotlin_like",
    )
    hybrid = WorkflowConfiguration(
        workflow_name="hybrid", steps=steps, workflow_bucket=_BUCKET, source_queue="in"
    )
    result = LocalRunner(hybrid, store=store).run(batch, execution_id="run-doc")
    assert result.succeeded, result.error
    assert store.list_keys(_BUCKET, "executions/run-doc/Load/") == [
        "executions/run-doc/Load/output.json"
    ]
    document = store.get(_BUCKET, "executions/run-doc/Load/output.json")
    assert document is not None
    assert json.loads(document.body) == records
    echoed = store.get(_BUCKET, "executions/run-doc/Next/output.json")
    assert echoed is not None
    assert json.loads(echoed.body) == json.loads(document.body)


def test_a_failing_stand_in_is_stage_failed_and_not_retried(tmp_path: Path):
    from tests.workflow import handlers

    store = LocalStore(tmp_path)
    config = _hybrid(kotlin={"handler": f"{_H}:kotlin_failing"})
    waits: list[float] = []
    result = LocalRunner(config, store=store, sleep=waits.append).run(
        BATCH, execution_id="run-failed"
    )
    assert not result.succeeded
    score = result.stages[1]
    assert (score.status, score.error_type, score.attempts) == ("FAILED", "StageFailed", 1)
    assert isinstance(result.error, StageFailed)
    assert "ValueError: no candidates (simulated)" in str(result.error)
    assert result.error.stage == "Score"
    assert waits == []
    assert handlers.KOTLIN_CALLS == 1
    assert store.list_keys(_BUCKET, "executions/run-failed/Score/") == []
    assert result.stages[2].status == "NOT_RUN"


def test_a_recorded_output_stands_in_for_the_kotlin_stage(tmp_path: Path):
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps([{"id": 7, "value": 1.5}]))
    store = LocalStore(tmp_path / "store")
    config = _hybrid(kotlin={"recorded_output": str(recorded)})
    result = LocalRunner(config, store=store).run(BATCH, execution_id="run-recorded")
    assert result.succeeded, result.error
    final = store.get(_BUCKET, "executions/run-recorded/Publish/output.json")
    assert final is not None
    assert json.loads(final.body) == [{"id": 7, "value": 3.0}]


def test_json_lines_before_a_kotlin_stand_in_is_an_input_validation_error(tmp_path: Path):
    # A plain (not ceap-stage) handler ignores outputFormat and writes JSON Lines: the Kotlin stage
    # would read its first record only, so the runner refuses it.
    store = LocalStore(tmp_path)
    config = WorkflowConfiguration(
        workflow_name="hybrid",
        steps=[
            LambdaStep(state_name="Load", function_name="load-fn", handler=f"{_H}:jsonl_writer"),
            LambdaStep(
                state_name="Score",
                function_name="score-kotlin",
                contract="ceap-kotlin",
                handler=f"{_H}:kotlin_like",
            ),
        ],
        workflow_bucket=_BUCKET,
        source_queue="in",
    )
    result = LocalRunner(config, store=store).run(BATCH, execution_id="run-jsonl")
    assert not result.succeeded
    assert isinstance(result.error, InputValidationError)
    assert "reads output.json as one JSON document" in str(result.error)
    assert "wrote jsonl" in str(result.error)
    assert store.list_keys(_BUCKET, "executions/run-jsonl/Score/") == []


# -- the worked example -----------------------------------------------------------------------


def test_the_hybrid_example_runs_locally_with_its_stand_in(tmp_path: Path):
    loaded = load_workflow("examples/hybrid/workflow.py")
    assert loaded.sample_input is not None
    store = LocalStore(tmp_path)
    result = LocalRunner(loaded, store=store).run(loaded.sample_input(), execution_id="run-ex")
    assert result.succeeded, result.error
    bucket = loaded.config.workflow_bucket
    candidates = store.get(bucket, "executions/run-ex/CandidatesStage/output.json")
    assert candidates is not None
    written = json.loads(candidates.body)  # one JSON document, camelCase
    assert written[0].keys() == {"customerId", "programId", "marketplace", "engagementScore"}
    scored = store.get(bucket, "executions/run-ex/ScoreStage/output.json")
    assert scored is not None
    kotlin_output = json.loads(scored.body)
    assert kotlin_output.keys() == {"candidates", "metrics", "programId", "marketplace"}
    deliveries_obj = store.get(bucket, "executions/run-ex/DeliveryStage/output.json")
    assert deliveries_obj is not None
    deliveries = json.loads(deliveries_obj.body)
    assert len(deliveries) == kotlin_output["metrics"]["candidatesOut"] > 0
    assert deliveries[0].keys() == {
        "customerId",
        "programId",
        "marketplace",
        "channel",
        "modelScore",
    }
    by_customer = {c["customerId"]: c["modelScore"] for c in kotlin_output["candidates"]}
    for delivery in deliveries:
        assert delivery["modelScore"] == by_customer[delivery["customerId"]]
        assert delivery["channel"] == ("push" if delivery["modelScore"] >= 0.8 else "email")


def test_the_hybrid_example_replays_its_recorded_kotlin_output(tmp_path: Path):
    loaded = load_workflow("examples/hybrid/workflow.py")
    assert loaded.sample_input is not None
    steps = [step.model_dump() for step in loaded.config.steps]
    steps[1] = {**steps[1], "handler": None, "recorded_output": "recorded/score_output.json"}
    config = WorkflowConfiguration.parse({**loaded.config.model_dump(), "steps": steps})
    replay = type(loaded)(config, loaded.source, loaded.base_dir)
    store = LocalStore(tmp_path)
    result = LocalRunner(replay, store=store).run(loaded.sample_input(), execution_id="run-rec")
    assert result.succeeded, result.error
    final = store.get(config.workflow_bucket, "executions/run-rec/DeliveryStage/output.json")
    assert final is not None
    assert [d["customerId"] for d in json.loads(final.body)] == ["c-002", "c-013"]


@pytest.mark.node
def test_kotlin_states_of_a_long_step_name_fit_state_name_limits(tmp_path: Path):
    from ._asl_tools import validate_definitions

    long_a, long_b = "K" * 79 + "a", "K" * 79 + "b"
    config = WorkflowConfiguration(
        workflow_name="long",
        steps=[
            LambdaStep(state_name="Load", function_name="load-fn"),
            LambdaStep(state_name=long_a, function_name="fa", contract="ceap-kotlin"),
            LambdaStep(state_name=long_b, function_name="fb", contract="ceap-kotlin"),
        ],
        workflow_bucket=_BUCKET,
        source_queue="in",
    )
    definition = build_definition(config)
    names = list(definition["States"])
    assert all(len(name) <= 80 for name in names)
    # tasks, Choice/Fail x2, Succeed, Fail, and the EXPRESS batch outcome states
    assert len(names) == len(set(names)) == 3 + 3 + 4 + 1 + 3
    assert validate_definitions([definition], tmp_path) == {}


def test_check_leaves_the_edges_of_a_kotlin_stage_unchecked_and_says_why():
    from ceap_stage.workflow import check_workflow

    report = check_workflow(load_workflow("examples/hybrid/workflow.py"))
    verdicts = [(edge.writer, edge.reader, edge.verdict) for edge in report.edges]
    assert verdicts[1:] == [
        ("CandidatesStage", "ScoreStage", "UNCHECKED"),
        ("ScoreStage", "DeliveryStage", "UNCHECKED"),
    ]
    into, out_of = report.edges[1].detail, report.edges[2].detail
    assert "Kotlin CEAP stage (contract 'ceap-kotlin')" in into
    assert "outputFormat json" in into
    assert "writes one JSON document" in out_of
    assert report.problems == ()
