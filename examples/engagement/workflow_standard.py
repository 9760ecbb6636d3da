"""The engagement pipeline as a STANDARD workflow whose ScoreStage is a Glue (Spark) job.

Same stages and same results as ``workflow.py``; scoring runs on Spark (``glue_score.py``),
which a STANDARD workflow can wait for (``glue:startJobRun.sync``).
"""

from __future__ import annotations

from typing import Any

from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    RetryConfiguration,
    WorkflowConfiguration,
    WorkflowType,
)

from .data import sample_batch

_STAGES = "examples.engagement.stages"

workflow = WorkflowConfiguration(
    workflow_name="engagement-standard",
    workflow_type=WorkflowType.STANDARD,
    steps=[
        LambdaStep(
            state_name="ETLStage", function_name="engagement-etl", handler=f"{_STAGES}:etl_stage"
        ),
        LambdaStep(
            state_name="FilterStage",
            function_name="engagement-filter",
            handler=f"{_STAGES}:filter_stage",
        ),
        GlueStep(state_name="ScoreStage", job_name="engagement-score", script="glue_score.py"),
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
    retry_config=RetryConfiguration(glue_max_attempts=1, glue_interval_minutes=10),
)


def sample_input() -> list[dict[str, Any]]:
    """What the pipe would send: a batch of 50 SQS messages, one customer session each."""
    return sample_batch(50)
