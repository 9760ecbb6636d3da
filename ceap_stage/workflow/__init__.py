"""Workflows: configuration, state machine (ASL) and CloudFormation generation, local runs.

Describe the pipeline once; generate what AWS runs from it, and run it on a laptop with the
exact events the state machine would send::

    from ceap_stage.workflow import LambdaStep, WorkflowConfiguration, WorkflowType

    workflow = WorkflowConfiguration(
        workflow_name="engagement",
        workflow_type=WorkflowType.EXPRESS,
        steps=[
            LambdaStep(state_name="ETLStage", function_name="engagement-etl",
                       handler="examples.engagement.stages:etl_stage"),
            LambdaStep(state_name="FilterStage", function_name="engagement-filter",
                       handler="examples.engagement.stages:filter_stage"),
        ],
        workflow_bucket="ceap-workflow-dev",
        source_queue="engagement-events",
    )
    asl = workflow.to_asl()                 # the Step Functions definition
    template = workflow.to_cloudformation() # the stack around it

The local runner (:class:`LocalRunner`, ``ceap-stage run``) and the client API that reads
executions (:class:`Execution`, :func:`list_executions`; see docs/debugging.md) are imported
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._asl import (
    GLUE_RETRY_ERRORS,
    LAMBDA_RETRY_ERRORS,
    build_definition,
    definition_json,
    glue_arguments,
    lambda_event,
)
from ._check import CheckReport, EdgeCheck, StageProblem, check_workflow
from ._config import (
    FanOut,
    GlueStep,
    LambdaStep,
    RetryConfiguration,
    Step,
    StepKindError,
    WorkflowConfiguration,
    WorkflowConfigurationError,
    WorkflowType,
)
from ._loader import LoadedWorkflow, load_handler, load_workflow
from ._template import build_template, template_json

if TYPE_CHECKING:
    from ._inspect import Execution, ExecutionSummary, InspectError, StageOutput, list_executions
    from ._runner import (
        ExecutionExistsError,
        LocalRunError,
        LocalRunner,
        RunResult,
        StageOutcome,
    )

__all__ = [
    "CheckReport",
    "EdgeCheck",
    "Execution",
    "ExecutionExistsError",
    "ExecutionSummary",
    "FanOut",
    "GLUE_RETRY_ERRORS",
    "GlueStep",
    "InspectError",
    "LAMBDA_RETRY_ERRORS",
    "LambdaStep",
    "LoadedWorkflow",
    "LocalRunError",
    "LocalRunner",
    "RetryConfiguration",
    "RunResult",
    "StageOutcome",
    "StageOutput",
    "StageProblem",
    "Step",
    "StepKindError",
    "WorkflowConfiguration",
    "WorkflowConfigurationError",
    "WorkflowType",
    "build_definition",
    "build_template",
    "check_workflow",
    "definition_json",
    "glue_arguments",
    "lambda_event",
    "list_executions",
    "load_handler",
    "load_workflow",
    "template_json",
]

_RUNNER_NAMES = frozenset(
    {"ExecutionExistsError", "LocalRunError", "LocalRunner", "RunResult", "StageOutcome"}
)
_INSPECT_NAMES = frozenset(
    {"Execution", "ExecutionSummary", "InspectError", "StageOutput", "list_executions"}
)


def __getattr__(name: str) -> object:
    # The runner and the client API are imported on first use: generating ASL needs neither.
    if name in _RUNNER_NAMES:
        from . import _runner

        return getattr(_runner, name)
    if name in _INSPECT_NAMES:
        from . import _inspect

        return getattr(_inspect, name)
    raise AttributeError(f"module 'ceap_stage.workflow' has no attribute {name!r}")
