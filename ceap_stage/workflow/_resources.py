"""What the deployment template's parts share: where the packaged artifacts are, names, the
stage roles' bucket statements, alarms, and the checkov skips with their reasons.

The step kinds build their own resources from these (:meth:`StepKind.deployed_resources`);
:func:`ceap_stage.workflow._stack.build_stack_template` assembles the template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ceap_stage._powertools import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from ._config import WorkflowConfiguration

__all__ = [
    "DEFAULT_NAMESPACE",
    "SKIP_CONCURRENCY",
    "SKIP_DLQ",
    "SKIP_ENV_KMS",
    "SKIP_LOG_KMS",
    "SKIP_LOG_YEAR",
    "SKIP_SIGNING",
    "SKIP_STAR",
    "SKIP_VPC",
    "DeployedTarget",
    "StackArtifacts",
    "alarm",
    "assume",
    "bucket_statements",
    "checkov_skip",
    "failures_alarm",
    "layer_logical",
    "logical",
    "named",
]


@dataclass(frozen=True)
class DeployedTarget:
    """How the state machine reaches a step the template creates.

    Attributes:
        name: What the definition names today (the step's function or job name).
        variable: The ``Fn::Sub`` variable that replaces it in the definition.
        value: The variable's value: a reference to the created resource.
        grant: The IAM statement the state machine's role needs to run it.
        output: The stack output naming it: ``(key, value)``.

    Example:
        >>> DeployedTarget("fa", "AFunctionArn", {"Fn::GetAtt": ["AFunction", "Arn"]},
        ...                {}, ("AFunctionName", {"Ref": "AFunction"})).variable
        'AFunctionArn'
    """

    name: str
    variable: str
    value: Any
    grant: dict[str, Any]
    output: tuple[str, Any]


@dataclass(frozen=True)
class StackArtifacts:
    """Where ``package`` put what the template refers to.

    Attributes:
        bucket: The artifacts bucket (the ``ArtifactsBucket`` parameter's default).
        code: Lambda state name -> the S3 key of its code zip.
        handlers: Lambda state name -> the handler as Lambda names it (``module.name``).
        layers: ``(runtime, architecture)`` -> the S3 key of the layer zip.
        layer_arn: A published layer to use instead (then ``layers`` is empty).
        glue_scripts: Glue state name -> the S3 key of its script.
        wheel: The S3 key of the ceap-stage wheel the Glue jobs install.

    Example:
        >>> StackArtifacts("my-artifacts").layer_arn is None
        True
    """

    bucket: str
    code: dict[str, str] = field(default_factory=dict)
    handlers: dict[str, str] = field(default_factory=dict)
    layers: dict[tuple[str, str], str] = field(default_factory=dict)
    layer_arn: str | None = None
    glue_scripts: dict[str, str] = field(default_factory=dict)
    wheel: str | None = None


def logical(name: str) -> str:
    """A state name as a CloudFormation logical id part: ``"ETL-Stage"`` -> ``"ETLStage"``."""
    return re.sub(r"[^A-Za-z0-9]", "", name) or "Step"


def sub(text: str) -> dict[str, str]:
    """``{"Fn::Sub": text}``."""
    return {"Fn::Sub": text}


def named(name: str) -> dict[str, str]:
    """A resource name per environment: ``<name>-<Environment>``."""
    return sub(f"{name}-${{Environment}}")


def layer_logical(runtime: str, architecture: str) -> str:
    """The logical id of the layer version for a runtime and architecture."""
    return f"CeapStageLayer{logical(runtime).title()}{logical(architecture).title()}"


def assume(service: str) -> dict[str, Any]:
    """A trust policy letting ``service`` assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }


def checkov_skip(*checks: tuple[str, str]) -> dict[str, Any]:
    """Resource Metadata skipping checkov checks that do not apply, each with the reason."""
    return {"checkov": {"skip": [{"id": i, "comment": why} for i, why in checks]}}


SKIP_VPC: Final = ("CKV_AWS_117", "the stage reaches only S3 and CloudWatch; no VPC resources")
SKIP_DLQ: Final = (
    "CKV_AWS_116",
    "invoked synchronously by Step Functions, which retries and catches failures",
)
SKIP_SIGNING: Final = ("CKV_AWS_272", "code signing is an account policy, not the workflow's")
SKIP_ENV_KMS: Final = ("CKV_AWS_173", "environment variables hold names only, no secrets")
SKIP_CONCURRENCY: Final = ("CKV_AWS_115", "reserved_concurrency is a step option, unset here")
SKIP_LOG_KMS: Final = ("CKV_AWS_158", "log lines hold ids, keys, sizes and durations, no payloads")
SKIP_LOG_YEAR: Final = ("CKV_AWS_338", "retention is the LogRetentionDays parameter")
SKIP_STAR: Final = ("CKV_AWS_111", "X-Ray and log delivery APIs take no resource-level ARNs")


def _stage_prefix(stage: str) -> dict[str, str]:
    return sub(f"${{WorkflowBucket.Arn}}/executions/*/{stage}/*")


def bucket_statements(stage: str, previous: str | None) -> list[dict[str, Any]]:
    """Read the previous stage's outputs, read and write its own prefix, nothing else."""
    statements: list[dict[str, Any]] = []
    prefixes = [f"executions/*/{stage}/*"]
    if previous is not None:
        statements.append(
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": _stage_prefix(previous)}
        )
        prefixes.insert(0, f"executions/*/{previous}/*")
    statements.append(
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": _stage_prefix(stage),
        }
    )
    # Listing those prefixes lets a missing object read as "not found" (404), not "denied".
    statements.append(
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": {"Fn::GetAtt": ["WorkflowBucket", "Arn"]},
            "Condition": {"StringLike": {"s3:prefix": prefixes}},
        }
    )
    return statements


def failures_alarm(config: WorkflowConfiguration, stage: str, namespace: str) -> dict[str, Any]:
    """An alarm on the stage's ``StageFailures`` metric (workflow and stage dimensions)."""
    return alarm(
        f"{config.workflow_name}: stage {stage} failed",
        namespace,
        "StageFailures",
        [{"Name": "workflow", "Value": config.workflow_name}, {"Name": "stage", "Value": stage}],
    )


def alarm(
    description: str, namespace: str, metric: str, dimensions: list[dict[str, Any]]
) -> dict[str, Any]:
    """An alarm that fires when ``metric`` sums to 1 or more in five minutes.

    It notifies the ``AlarmTopicArn`` parameter's topic when the stack is given one
    (condition ``HasAlarmTopic``); missing data does not breach it.

    Example:
        >>> a = alarm("w: an execution failed", "AWS/States", "ExecutionsFailed", [])
        >>> a["Properties"]["MetricName"], a["Properties"]["Threshold"]
        ('ExecutionsFailed', 1)
    """
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": dimensions,
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            },
        },
    }
