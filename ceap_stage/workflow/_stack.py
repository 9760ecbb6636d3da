"""The complete CloudFormation template ``ceap-stage package`` writes: the orchestration template
of :func:`~ceap_stage.workflow.build_template`, plus what creates the steps themselves.

Added to the orchestration template:

- **Parameters** ``Environment`` (names every resource ``<name>-<Environment>``: dev and prod from
  one template), ``WorkflowBucketName`` (empty: CloudFormation names the bucket),
  ``ArtifactsBucket``, ``LogRetentionDays``, ``AlarmTopicArn`` (empty: alarms notify nobody) and,
  with a published layer, ``LayerArn``;
- per Lambda step (``LambdaKind.deployed_resources``): the function (handler ``module.name``, the
  layer, ``CEAP_WORKFLOW_BUCKET`` and ``POWERTOOLS_SERVICE_NAME``, active tracing), its log group
  with retention, its own role (read the previous stage's outputs, write its own prefix, its log
  group, X-Ray) and an alarm on its ``StageFailures`` metric;
- per Glue step (``GlueKind.deployed_resources``): the job (its script and the ceap-stage wheel from
  the artifacts bucket), its own role and an alarm on ``StageFailures``;
- a ceap-stage layer version per runtime and architecture in use;
- the state machine's ``LoggingConfiguration`` (EXPRESS: ``ALL``; STANDARD: ``ERROR``; execution
  data never logged) to a log group, ``TracingConfiguration``, and an alarm on failed executions;
- a dead-letter queue on the failed-executions rule's target (STANDARD).

The state machine definition is the one :func:`~ceap_stage.workflow.build_definition` makes, with
the bucket, function and job names replaced by references to the resources (``Fn::Sub``).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ._config import LambdaStep, WorkflowConfiguration, WorkflowType
from ._kinds import kind_of, registered_kinds
from ._resources import (
    SKIP_LOG_KMS,
    SKIP_LOG_YEAR,
    SKIP_STAR,
    StackArtifacts,
    alarm,
    checkov_skip,
    layer_logical,
    named,
    sub,
)
from ._template import build_template

__all__ = ["StackArtifacts", "build_stack_template", "lambda_target"]


def lambda_target(step: LambdaStep) -> tuple[str, str]:
    """A Lambda step's ``(runtime, architecture)``, e.g. ``("python3.12", "x86_64")``."""
    return step.runtime, step.architecture


_RETENTION_DAYS: Final = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827)
_ENVIRONMENT_PATTERN: Final = "^[a-z][a-z0-9]{0,9}$"


def _created(config: WorkflowConfiguration, artifacts: StackArtifacts) -> list[int]:
    """The indexes of the steps this template creates (the others exist already)."""
    return [
        i
        for i, step in enumerate(config.steps)
        if step.state_name in artifacts.code or step.state_name in artifacts.glue_scripts
    ]


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, str) and value in names:
        return f"${{{names[value]}}}"
    return value


def build_stack_template(
    config: WorkflowConfiguration, artifacts: StackArtifacts
) -> dict[str, Any]:
    """The complete template deploying ``config`` with the packaged ``artifacts``.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> t = build_stack_template(wf, StackArtifacts("art", code={"A": "k.zip"},
        ...     handlers={"A": "m.h"}, layers={("python3.12", "x86_64"): "l.zip"}))
        >>> t["Resources"]["AFunction"]["Properties"]["Handler"]
        'm.h'
    """
    template = build_template(config)
    resources: dict[str, Any] = template["Resources"]
    outputs: dict[str, Any] = template["Outputs"]
    express = config.workflow_type is WorkflowType.EXPRESS
    template["Parameters"] = {
        "Environment": {
            "Type": "String",
            "Default": "dev",
            "AllowedPattern": _ENVIRONMENT_PATTERN,
            "Description": "Suffix of every name (dev, prod, ...): 1-10 lower-case letters/digits",
        },
        "WorkflowBucketName": {
            "Type": "String",
            "Default": "",
            "Description": "The workflow bucket's name (empty: CloudFormation names it)",
        },
        "ArtifactsBucket": {
            "Type": "String",
            "Default": artifacts.bucket,
            "Description": "The bucket holding the packaged code, layer and Glue artifacts",
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 30,
            "AllowedValues": list(_RETENTION_DAYS),
            "Description": "How long the functions' and the state machine's logs are kept",
        },
        "AlarmTopicArn": {
            "Type": "String",
            "Default": "",
            "Description": "An SNS topic the alarms notify (empty: none)",
        },
    }
    template["Conditions"] = {
        "HasWorkflowBucketName": {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkflowBucketName"}, ""]}]},
        "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]},
    }
    if artifacts.layer_arn is not None:
        template["Parameters"]["LayerArn"] = {
            "Type": "String",
            "Default": artifacts.layer_arn,
            "Description": "The published ceap-stage layer version the functions use",
        }
    bucket = resources["WorkflowBucket"]["Properties"]
    bucket["BucketName"] = {
        "Fn::If": ["HasWorkflowBucketName", {"Ref": "WorkflowBucketName"}, {"Ref": "AWS::NoValue"}]
    }
    resources["WorkflowBucket"]["Metadata"] = checkov_skip(
        ("CKV_AWS_18", "holds intermediate data that expires; access is logged by CloudTrail"),
        ("CKV_AWS_21", "intermediate data, written once per execution and expired"),
    )

    # The steps' own resources, and their names in the definition.
    created = _created(config, artifacts)
    names: dict[str, str] = {config.workflow_bucket: "WorkflowBucket"}
    substitutions: dict[str, Any] = {"WorkflowBucket": {"Ref": "WorkflowBucket"}}
    grants: list[dict[str, Any]] = []
    for index in created:
        kind = kind_of(config.steps[index])
        resources.update(kind.deployed_resources(config, index, artifacts))
        target = kind.deployed_target(config, index)
        assert target is not None, f"{kind.name} creates resources but names no target"
        names[target.name] = target.variable
        substitutions[target.variable] = target.value
        grants.append(target.grant)
        outputs[target.output[0]] = {"Value": target.output[1]}
    # What the state machine needs beyond reaching the created steps (a fan-out's children).
    for kind in registered_kinds():
        mine = [i for i in created if kind_of(config.steps[i]) is kind]
        if mine:
            grants += kind.machine_statements(config, mine, deployed=True)
    # The steps this template does not create keep their grants by name.
    for kind in registered_kinds():
        existing = [
            i for i, step in enumerate(config.steps) if kind_of(step) is kind and i not in created
        ]
        if existing:
            grants += kind.policy_statements(config, existing)
    if kind_of(config.steps[0]).reads_staged_input and not any(
        g.get("Action") == "s3:PutObject" for g in grants
    ):  # StageInitialInput writes the initial input
        grants.append(
            {
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": sub("${WorkflowBucket.Arn}/executions/*"),
            }
        )
    for (runtime, architecture), key in sorted(artifacts.layers.items()):
        resources[layer_logical(runtime, architecture)] = {
            "Type": "AWS::Lambda::LayerVersion",
            "Properties": {
                "LayerName": sub(
                    f"{config.workflow_name}-ceap-stage-{runtime.replace('.', '')}-"
                    f"{architecture.replace('_', '')}-${{Environment}}"
                ),
                "Description": "ceap-stage and its dependencies",
                "CompatibleRuntimes": [runtime],
                "CompatibleArchitectures": [architecture],
                "Content": {"S3Bucket": {"Ref": "ArtifactsBucket"}, "S3Key": key},
            },
        }

    # The state machine: substitutions, its role, logs, tracing, alarm.
    machine = resources["StateMachine"]["Properties"]
    machine["StateMachineName"] = named(config.workflow_name)
    # DefinitionString with Fn::Sub (not Definition + DefinitionSubstitutions): the same on AWS,
    # and what CloudFormation emulators (moto) resolve too.
    definition = _substitute(machine.pop("Definition"), names)
    machine["DefinitionString"] = {"Fn::Sub": [orjson.dumps(definition).decode(), substitutions]}
    machine["LoggingConfiguration"] = {
        "Level": "ALL" if express else "ERROR",
        "IncludeExecutionData": False,  # never log payloads
        "Destinations": [
            {
                "CloudWatchLogsLogGroup": {
                    "LogGroupArn": {"Fn::GetAtt": ["StateMachineLogGroup", "Arn"]}
                }
            }
        ],
    }
    machine["TracingConfiguration"] = {"Enabled": True}
    resources["StateMachineLogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Metadata": checkov_skip(SKIP_LOG_KMS, SKIP_LOG_YEAR),
        "Properties": {
            "LogGroupName": sub(f"/aws/vendedlogs/states/{config.workflow_name}-${{Environment}}"),
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        },
    }
    kept = grants
    kept += [
        {
            # Log delivery and X-Ray take no resource-level ARNs.
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ],
            "Resource": "*",
        }
    ]
    resources["StateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] = kept
    resources["StateMachineRole"]["Metadata"] = checkov_skip(SKIP_STAR)
    resources["FailedExecutionsAlarm"] = alarm(
        f"{config.workflow_name}: an execution failed",
        "AWS/States",
        "ExecutionsFailed",
        [{"Name": "StateMachineArn", "Value": {"Ref": "StateMachine"}}],
    )
    if "FailedExecutionsRule" in resources:
        _dead_letter(resources)
    outputs["StateMachineName"] = {"Value": {"Fn::GetAtt": ["StateMachine", "Name"]}}
    template["Outputs"] = outputs
    order = ("AWSTemplateFormatVersion", "Description", "Parameters", "Conditions", "Resources")
    return {key: template[key] for key in (*order, "Outputs") if key in template}


#: cfn-lint-serverless wants a RedrivePolicy on every queue; these two are where failures end.
_END_OF_THE_LINE: Final = {
    "cfn-lint": {"config": {"ignore_checks": ["ES6000"]}},
    "Reasons": {
        "ES6000": "this queue holds failed executions for people to read: it is the dead-letter "
        "queue, with nothing after it"
    },
    **checkov_skip(
        ("CKV_AWS_27", "encrypted at rest with SQS-managed keys (SqsManagedSseEnabled)")
    ),
}


def _dead_letter(resources: dict[str, Any]) -> None:
    """Events the rule cannot deliver to its queue go to a dead-letter queue."""
    resources["FailedExecutionsQueue"]["Metadata"] = _END_OF_THE_LINE
    resources["FailedExecutionsDeadLetterQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Metadata": _END_OF_THE_LINE,
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {"MessageRetentionPeriod": 1_209_600, "SqsManagedSseEnabled": True},
    }
    target = resources["FailedExecutionsRule"]["Properties"]["Targets"][0]
    target["DeadLetterConfig"] = {"Arn": {"Fn::GetAtt": ["FailedExecutionsDeadLetterQueue", "Arn"]}}
    target["RetryPolicy"] = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86_400}
    policy = resources["FailedExecutionsQueuePolicy"]["Properties"]
    policy["Queues"].append({"Ref": "FailedExecutionsDeadLetterQueue"})
    statement = dict(policy["PolicyDocument"]["Statement"][0])
    statement["Resource"] = {"Fn::GetAtt": ["FailedExecutionsDeadLetterQueue", "Arn"]}
    policy["PolicyDocument"]["Statement"].append(statement)
