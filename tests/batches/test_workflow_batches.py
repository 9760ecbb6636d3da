"""batchItemFailures end to end: the generated machine (moto), the local runner, the template."""

from __future__ import annotations

from typing import Any

import pytest

from ceap_stage import LocalStore
from ceap_stage.testing import FakeLambdaContext
from ceap_stage.workflow import (
    LambdaStep,
    LocalRunner,
    WorkflowConfiguration,
    WorkflowType,
    build_definition,
    build_template,
    load_handler,
)
from tests.workflow._moto_sfn import StepFunctionsHarness

from .sqs_records import INVALID, batch_of_50, message_id

EXPECTED = [{"itemIdentifier": message_id(n)} for n in INVALID]


def _workflow(
    workflow_type: WorkflowType = WorkflowType.EXPRESS, first: str = "ingest"
) -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name=f"queue-{workflow_type.value.lower()}-{first.replace('_', '-')}",
        workflow_type=workflow_type,
        workflow_bucket="ceap-batches",
        source_queue="engagement-events",
        steps=[
            LambdaStep(
                state_name="Ingest",
                function_name="ingest-fn",
                handler=f"tests.batches.handlers:{first}",
            ),
            LambdaStep(
                state_name="Rank", function_name="rank-fn", handler="tests.batches.handlers:rank"
            ),
        ],
    )


def _in_lambda(runtime: Any) -> Any:
    def handler(payload: dict[str, Any]) -> Any:
        return runtime.invoke(payload, FakeLambdaContext())

    return handler


def _run_in_moto(
    sfn: StepFunctionsHarness, config: WorkflowConfiguration, store: LocalStore, name: str
) -> Any:
    for step in config.steps:
        assert isinstance(step, LambdaStep)
        assert step.handler is not None
        runtime = load_handler(step.handler).runtime  # type: ignore[attr-defined]
        sfn.lambdas.behaviours[step.function_name] = _in_lambda(runtime.using_store(store))
    return sfn.execute(sfn.deploy(config), name, batch_of_50())


def test_express_execution_returns_exactly_the_rejected_messages(
    sfn: StepFunctionsHarness, tmp_path
):
    store = LocalStore(tmp_path)
    config = _workflow()
    execution = _run_in_moto(sfn, config, store, "exec-batch-1")
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"batchItemFailures": EXPECTED}
    assert execution.entered() == [
        "Ingest",
        "Rank",
        "QueueBatchOutcome",
        "ReturnBatchItemFailures",
    ]
    ranked = store.get("ceap-batches", "executions/exec-batch-1/Rank/output.json")
    assert ranked is not None
    assert len(ranked.body.decode().split(",")) == 47


def test_express_execution_without_reject_fails_on_one_invalid_message(
    sfn: StepFunctionsHarness, tmp_path
):
    store = LocalStore(tmp_path)
    config = _workflow(first="ingest_strict")
    execution = _run_in_moto(sfn, config, store, "exec-batch-2")
    assert execution.status == "FAILED"
    assert execution.error == "InputValidationError"
    assert message_id(INVALID[0]) in (execution.cause or "")


def test_the_local_runner_reports_the_same_failures(tmp_path):
    store = LocalStore(tmp_path)
    result = LocalRunner(_workflow(), store=store).run(batch_of_50(), execution_id="run-b1")
    assert result.succeeded
    assert result.batch_item_failures == EXPECTED
    assert [s.rejected for s in result.stages] == [3, None]
    assert [s.records for s in result.stages] == [47, 47]


def test_standard_workflows_still_write_and_count_the_rejects(tmp_path):
    config = _workflow(WorkflowType.STANDARD)
    store = LocalStore(tmp_path)
    result = LocalRunner(config, store=store).run(batch_of_50(), execution_id="run-b2")
    assert result.succeeded
    assert result.stages[0].rejected == 3
    assert result.batch_item_failures is None  # FIRE_AND_FORGET: the queue never sees them
    assert store.get("ceap-batches", "executions/run-b2/Ingest/rejected.jsonl") is not None
    states = build_definition(config)["States"]
    assert "Assign" not in states["Ingest"]
    assert "QueueBatchOutcome" not in states
    pipe = build_template(config)["Resources"]["SourcePipe"]["Properties"]
    assert pipe["TargetParameters"]["StepFunctionStateMachineParameters"] == {
        "InvocationType": "FIRE_AND_FORGET"
    }


def test_the_express_definition_and_its_pipe():
    config = _workflow()
    definition = build_definition(config)
    states = definition["States"]
    assert states["Ingest"]["Assign"] == {"queueBatch.$": "$.Payload"}
    assert "Assign" not in states["Rank"]
    assert states["Rank"]["Next"] == "QueueBatchOutcome"
    assert "End" not in states["Rank"]
    assert states["QueueBatchOutcome"]["Choices"] == [
        {
            "Variable": "$queueBatch.batchItemFailures",
            "IsPresent": True,
            "Next": "ReturnBatchItemFailures",
        }
    ]
    assert states["ReturnBatchItemFailures"]["Parameters"] == {
        "batchItemFailures.$": "$queueBatch.batchItemFailures"
    }
    template = build_template(config)
    pipe = template["Resources"]["SourcePipe"]["Properties"]
    assert pipe["TargetParameters"]["StepFunctionStateMachineParameters"] == {
        "InvocationType": "REQUEST_RESPONSE"
    }
    assert pipe["SourceParameters"]["SqsQueueParameters"]["BatchSize"] == 50


@pytest.mark.parametrize(
    "name", ["QueueBatchOutcome", "ReturnBatchItemFailures", "WorkflowSucceeded"]
)
def test_the_generated_state_names_are_reserved(name):
    with pytest.raises(ValueError, match="reserved"):
        LambdaStep(state_name=name, function_name="fa")


def test_a_rerun_in_fail_mode_reports_no_stale_rejects(tmp_path):
    store = LocalStore(tmp_path)
    LocalRunner(_workflow(WorkflowType.STANDARD), store=store).run(
        batch_of_50(), execution_id="run-mode"
    )
    valid = [m for n, m in enumerate(batch_of_50()) if n not in INVALID]
    strict = LocalRunner(_workflow(WorkflowType.EXPRESS, first="ingest_strict"), store=store)
    # The first stage alone, again, in the same execution (a plain rerun of the id is refused).
    result = strict.run_only("Ingest", execution_id="run-mode", initial_input=valid)
    assert result.succeeded
    assert result.stages[0].rejected is None
    assert result.batch_item_failures is None
    assert store.get("ceap-batches", "executions/run-mode/Ingest/rejected.jsonl") is None
