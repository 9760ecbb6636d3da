"""Generate a CloudFormation template (JSON) that deploys a workflow.

Resources:

- the workflow bucket, with a lifecycle rule expiring ``executions/`` after 7 days;
- the state machine (the definition of :func:`~ceap_stage.workflow.build_definition`) and the
  role it runs as, with the statements each step kind asks for (invoke the steps' functions,
  run and watch the steps' Glue jobs, write the staged initial input);
- the EventBridge Pipe from the source queue to the state machine (``REQUEST_RESPONSE`` for
  EXPRESS, ``FIRE_AND_FORGET`` for STANDARD) and its role, when the workflow has a
  ``source_queue`` (without one, executions are started another way);
- for STANDARD: a dead-letter queue and an EventBridge rule sending the state machine's
  FAILED, TIMED_OUT and ABORTED executions to it.

- the resources and outputs a step kind adds (none today).

The Lambda functions, the Glue jobs and the source queue exist already (they are referenced by
name or ARN).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ._asl import build_definition
from ._config import WorkflowConfiguration, WorkflowType
from ._kinds import StepKind, kind_of, registered_kinds, sub

__all__ = ["EXECUTIONS_EXPIRY_DAYS", "build_template", "template_json"]

#: Days after which intermediate data under ``executions/`` expires.
EXECUTIONS_EXPIRY_DAYS: Final = 7
_PIPE_BATCH_SIZE: Final = 50
_PIPE_BATCHING_WINDOW_SECONDS: Final = 5


def _queue_arn(queue: str) -> Any:
    if queue.startswith("arn:"):
        return queue
    return sub(f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{queue}")


def _kind_indices(config: WorkflowConfiguration) -> list[tuple[StepKind[Any], list[int]]]:
    """Each registered kind with the indices of its steps, kinds without steps left out."""
    found: list[tuple[StepKind[Any], list[int]]] = []
    for kind in registered_kinds():
        indices = [i for i, step in enumerate(config.steps) if kind_of(step) is kind]
        if indices:
            found.append((kind, indices))
    return found


def _assume(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def _state_machine_policy(config: WorkflowConfiguration) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for kind, indices in _kind_indices(config):
        statements.extend(kind.policy_statements(config, indices))
    return statements


def build_template(config: WorkflowConfiguration) -> dict[str, Any]:
    """The CloudFormation template (as a dict) that deploys ``config``.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> t = build_template(wf)
        >>> t["Resources"]["SourcePipe"]["Properties"]["TargetParameters"]
        {'StepFunctionStateMachineParameters': {'InvocationType': 'REQUEST_RESPONSE'}}
    """
    express = config.workflow_type is WorkflowType.EXPRESS
    source_arn = _queue_arn(config.source_queue) if config.source_queue else None
    resources: dict[str, Any] = {
        "WorkflowBucket": {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": config.workflow_bucket,
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "LifecycleConfiguration": {
                    "Rules": [
                        {
                            "Id": "ExpireExecutionData",
                            "Status": "Enabled",
                            "Prefix": "executions/",
                            "ExpirationInDays": EXECUTIONS_EXPIRY_DAYS,
                        }
                    ]
                },
            },
        },
        "StateMachineRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _assume("states.amazonaws.com"),
                "Policies": [
                    {
                        "PolicyName": "RunWorkflowSteps",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": _state_machine_policy(config),
                        },
                    }
                ],
            },
        },
        "StateMachine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": config.workflow_name,
                "StateMachineType": config.workflow_type.value,
                "RoleArn": {"Fn::GetAtt": ["StateMachineRole", "Arn"]},
                "Definition": build_definition(config),
            },
        },
        "PipeRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _assume("pipes.amazonaws.com"),
                "Policies": [
                    {
                        "PolicyName": "ReadSourceStartExecutions",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": [
                                        "sqs:ReceiveMessage",
                                        "sqs:DeleteMessage",
                                        "sqs:GetQueueAttributes",
                                    ],
                                    "Resource": source_arn,
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": (
                                        "states:StartSyncExecution"
                                        if express
                                        else "states:StartExecution"
                                    ),
                                    "Resource": {"Ref": "StateMachine"},
                                },
                            ],
                        },
                    }
                ],
            },
        },
        "SourcePipe": {
            "Type": "AWS::Pipes::Pipe",
            "Properties": {
                "Description": f"Starts {config.workflow_name} executions from SQS batches",
                "RoleArn": {"Fn::GetAtt": ["PipeRole", "Arn"]},
                "Source": source_arn,
                "SourceParameters": {
                    "SqsQueueParameters": {
                        "BatchSize": _PIPE_BATCH_SIZE,
                        "MaximumBatchingWindowInSeconds": _PIPE_BATCHING_WINDOW_SECONDS,
                    },
                },
                "Target": {"Ref": "StateMachine"},
                "TargetParameters": {
                    "StepFunctionStateMachineParameters": {
                        "InvocationType": "REQUEST_RESPONSE" if express else "FIRE_AND_FORGET"
                    }
                },
            },
        },
    }
    if source_arn is None:  # started another way: no pipe
        del resources["PipeRole"], resources["SourcePipe"]
    outputs: dict[str, Any] = {
        "StateMachineArn": {"Value": {"Ref": "StateMachine"}},
        "WorkflowBucketName": {"Value": {"Ref": "WorkflowBucket"}},
    }
    if not express:
        resources["FailedExecutionsQueue"] = {
            "Type": "AWS::SQS::Queue",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"MessageRetentionPeriod": 1_209_600, "SqsManagedSseEnabled": True},
        }
        resources["FailedExecutionsRule"] = {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": f"Failed, timed-out and aborted {config.workflow_name} executions",
                "EventPattern": {
                    "source": ["aws.states"],
                    "detail-type": ["Step Functions Execution Status Change"],
                    "detail": {
                        "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                        "stateMachineArn": [{"Ref": "StateMachine"}],
                    },
                },
                "State": "ENABLED",
                "Targets": [
                    {
                        "Id": "FailedExecutionsQueue",
                        "Arn": {"Fn::GetAtt": ["FailedExecutionsQueue", "Arn"]},
                    }
                ],
            },
        }
        resources["FailedExecutionsQueuePolicy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "FailedExecutionsQueue"}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["FailedExecutionsQueue", "Arn"]},
                            "Condition": {
                                "ArnEquals": {
                                    "aws:SourceArn": {"Fn::GetAtt": ["FailedExecutionsRule", "Arn"]}
                                }
                            },
                        }
                    ],
                },
            },
        }
        outputs["FailedExecutionsQueueUrl"] = {"Value": {"Ref": "FailedExecutionsQueue"}}
    for kind, indices in _kind_indices(config):
        resources.update(kind.resources(config, indices))
        outputs.update(kind.outputs(config, indices))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"ceap-stage workflow {config.workflow_name} ({config.workflow_type.value}): "
            f"{' -> '.join(config.state_names)}"
        ),
        "Resources": resources,
        "Outputs": outputs,
    }


def template_json(config: WorkflowConfiguration, *, indent: bool = True) -> str:
    """:func:`build_template` as JSON text (indented by default).

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> template_json(wf, indent=False)[:40]
        '{"AWSTemplateFormatVersion":"2010-09-09"'
    """
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(build_template(config), option=option).decode()
