"""The CloudFormation template: cfn-lint clean, and the pieces the issue asks for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    WorkflowConfiguration,
    WorkflowType,
    build_definition,
    build_template,
    load_workflow,
    template_json,
)


def _lint(template: dict[str, Any]) -> list[str]:
    from cfnlint.api import lint  # type: ignore[import-untyped]

    matches = lint(json.dumps(template), regions=["us-east-1", "eu-west-1"])
    return [f"{m.rule.id}: {m.message}" for m in matches]


def _glue_first_arns() -> WorkflowConfiguration:
    return WorkflowConfiguration(
        workflow_name="glue-first",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            GlueStep(state_name="Prepare", job_name="prepare-job"),
            LambdaStep(
                state_name="Publish",
                function_name="arn:aws:lambda:eu-west-1:123456789012:function:publish:live",
            ),
            LambdaStep(state_name="Notify", function_name="123456789012:function:notify"),
        ],
        workflow_bucket="ceap-glue-first",
        source_queue="arn:aws:sqs:eu-west-1:123456789012:in.fifo",
    )


@pytest.mark.parametrize(
    "config",
    [
        load_workflow("examples/engagement/workflow.py").config,
        load_workflow("examples/engagement/workflow_standard.py").config,
        _glue_first_arns(),
        load_workflow("examples/hybrid/workflow.py").config,
    ],
    ids=["express", "standard", "glue-first-arns", "hybrid-kotlin"],
)
def test_templates_pass_cfn_lint(config):
    assert _lint(build_template(config)) == []
    assert json.loads(template_json(config)) == build_template(config)


def test_cfn_lint_does_flag_a_broken_template():
    template = build_template(load_workflow("examples/engagement/workflow.py").config)
    template["Resources"]["SourcePipe"]["Properties"]["Target"] = {"Ref": "NoSuchResource"}
    assert any("NoSuchResource" in problem for problem in _lint(template))


def test_express_template_starts_executions_synchronously_and_has_no_failure_rule():
    config = load_workflow("examples/engagement/workflow.py").config
    resources = build_template(config)["Resources"]
    machine = resources["StateMachine"]["Properties"]
    assert machine["StateMachineType"] == "EXPRESS"
    assert machine["StateMachineName"] == "engagement"
    assert machine["Definition"] == build_definition(config)
    pipe = resources["SourcePipe"]["Properties"]
    assert pipe["TargetParameters"]["StepFunctionStateMachineParameters"] == {
        "InvocationType": "REQUEST_RESPONSE"
    }
    assert pipe["Source"] == {
        "Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:engagement-events"
    }
    pipe_actions = [
        s["Action"]
        for s in resources["PipeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    ]
    assert "states:StartSyncExecution" in pipe_actions
    assert "FailedExecutionsRule" not in resources


def test_standard_template_sends_failed_executions_to_a_dead_letter_queue():
    resources = build_template(load_workflow("examples/engagement/workflow_standard.py").config)[
        "Resources"
    ]
    pipe = resources["SourcePipe"]["Properties"]
    assert pipe["TargetParameters"]["StepFunctionStateMachineParameters"] == {
        "InvocationType": "FIRE_AND_FORGET"
    }
    rule = resources["FailedExecutionsRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["status"] == ["FAILED", "TIMED_OUT", "ABORTED"]
    assert rule["EventPattern"]["detail"]["stateMachineArn"] == [{"Ref": "StateMachine"}]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["FailedExecutionsQueue", "Arn"]}
    policy = resources["FailedExecutionsQueuePolicy"]["Properties"]["PolicyDocument"]
    assert policy["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    statements = resources["StateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    glue = next(s for s in statements if "glue:StartJobRun" in s["Action"])
    job_arn = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:job/engagement-score"
    assert glue["Resource"] == [{"Fn::Sub": job_arn}]


def test_the_bucket_expires_execution_data_after_seven_days():
    bucket = build_template(load_workflow("examples/engagement/workflow.py").config)["Resources"][
        "WorkflowBucket"
    ]["Properties"]
    assert bucket["BucketName"] == "ceap-workflow-dev"
    assert bucket["LifecycleConfiguration"]["Rules"] == [
        {
            "Id": "ExpireExecutionData",
            "Status": "Enabled",
            "Prefix": "executions/",
            "ExpirationInDays": 7,
        }
    ]


def test_the_state_machine_may_invoke_exactly_its_functions_and_stage_the_input():
    statements = build_template(_glue_first_arns())["Resources"]["StateMachineRole"]["Properties"][
        "Policies"
    ][0]["PolicyDocument"]["Statement"]
    invoke = next(s for s in statements if s["Action"] == "lambda:InvokeFunction")
    assert invoke["Resource"] == [
        "arn:aws:lambda:eu-west-1:123456789012:function:publish",
        "arn:aws:lambda:eu-west-1:123456789012:function:publish:*",
        {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:123456789012:function:notify"},
        {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:123456789012:function:notify:*"},
    ]
    put = next(s for s in statements if s["Action"] == "s3:PutObject")
    assert put["Resource"] == {"Fn::Sub": "${WorkflowBucket.Arn}/executions/*"}
