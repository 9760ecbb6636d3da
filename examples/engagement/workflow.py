"""The engagement pipeline as an EXPRESS workflow: five Lambda stages.

``ceap-stage run examples/engagement/workflow.py`` runs it locally on ``sample_input()``;
``ceap-stage asl`` / ``ceap-stage template`` print what to deploy.
"""

from __future__ import annotations

from typing import Any

from ceap_stage.workflow import LambdaStep, WorkflowConfiguration, WorkflowType

from .data import sample_batch

_STAGES = "examples.engagement.stages"

workflow = WorkflowConfiguration(
    workflow_name="engagement",
    workflow_type=WorkflowType.EXPRESS,
    steps=[
        LambdaStep(
            state_name="ETLStage", function_name="engagement-etl", handler=f"{_STAGES}:etl_stage"
        ),
        LambdaStep(
            state_name="FilterStage",
            function_name="engagement-filter",
            handler=f"{_STAGES}:filter_stage",
        ),
        LambdaStep(
            state_name="ScoreStage",
            function_name="engagement-score",
            handler=f"{_STAGES}:score_stage",
        ),
        LambdaStep(
            state_name="StoreStage",
            function_name="engagement-store",
            handler=f"{_STAGES}:store_stage",
        ),
        LambdaStep(
            state_name="ReactiveStage",
            function_name="engagement-reactive",
            handler=f"{_STAGES}:reactive_stage",
        ),
    ],
    workflow_bucket="ceap-workflow-dev",
    source_queue="engagement-events",
)


def sample_input() -> list[dict[str, Any]]:
    """What the pipe would send: a batch of 50 SQS messages, one customer session each."""
    return sample_batch(50)
