"""A fanned-out stage over a large generated input.

``Generate`` makes the records (``sample_input()`` asks for 200,000; the benchmark for a
million); ``Score`` is fanned out: in AWS, a Distributed Map runs one child execution per shard
of 50,000 records; locally, ``ceap-stage run examples/fanout/workflow.py --workers 2`` runs the
shards in two processes. The output of ``Score`` is one manifest, read by the next stage like
any other.
"""

from __future__ import annotations

import json
from typing import Any

from ceap_stage.workflow import FanOut, LambdaStep, WorkflowConfiguration, WorkflowType

_STAGES = "examples.fanout.stages"


def scoring_workflow(records_per_shard: int | None = 50_000) -> WorkflowConfiguration:
    """The workflow, its ``Score`` step fanned out (None: one invocation scores everything)."""
    fan_out = (
        None
        if records_per_shard is None
        else FanOut(records_per_shard=records_per_shard, max_concurrency=100)
    )
    return WorkflowConfiguration(
        workflow_name="sensor-scoring",
        workflow_type=WorkflowType.STANDARD,  # Distributed Map runs in STANDARD workflows
        steps=[
            LambdaStep(
                state_name="Generate",
                function_name="sensor-generate",
                handler=f"{_STAGES}:generate",
            ),
            LambdaStep(
                state_name="Score",
                function_name="sensor-score",
                handler=f"{_STAGES}:score",
                fan_out=fan_out,
            ),
        ],
        workflow_bucket="ceap-sensor-scoring",
        source_queue="sensor-batches",
    )


workflow = scoring_workflow()


def sample_input(records: int = 200_000) -> list[dict[str, Any]]:
    """One SQS message asking for ``records`` readings, as the pipe delivers it."""
    return [
        {
            "messageId": "m-0",
            "body": json.dumps({"records": records}),
            "eventSource": "aws:sqs",
        }
    ]
