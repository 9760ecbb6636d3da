"""A hybrid workflow during a migration: Python, Kotlin, Python.

``CandidatesStage`` and ``DeliveryStage`` are ceap-stage handlers; ``ScoreStage`` is still the
Kotlin CEAP Lambda (``contract="ceap-kotlin"``). The generated state machine asks
``CandidatesStage`` for one JSON document and turns a ``status: FAILED`` from ``ScoreStage`` into
a failed execution (``StageFailed``). ``ceap-stage run examples/hybrid/workflow.py`` runs it
locally, the Kotlin stage through its Python stand-in (``recorded_output`` would replay a
recorded ``output.json`` instead).
"""

from __future__ import annotations

import json
from typing import Any

from ceap_stage.workflow import LambdaStep, WorkflowConfiguration, WorkflowType

workflow = WorkflowConfiguration(
    workflow_name="hybrid-engagement",
    workflow_type=WorkflowType.EXPRESS,
    steps=[
        LambdaStep(
            state_name="CandidatesStage",
            function_name="hybrid-candidates",
            handler="examples.hybrid.stages:candidates_stage",
        ),
        LambdaStep(
            state_name="ScoreStage",
            function_name="ceap-score-kotlin",
            contract="ceap-kotlin",
            handler="examples.hybrid.kotlin_stand_in:score_stage",
        ),
        LambdaStep(
            state_name="DeliveryStage",
            function_name="hybrid-delivery",
            handler="examples.hybrid.stages:delivery_stage",
        ),
    ],
    workflow_bucket="ceap-workflow-dev",
    source_queue="hybrid-engagement-events",
)


def sample_input() -> list[dict[str, Any]]:
    """What the pipe would send: a batch of SQS records, one engagement message each."""
    messages = [
        {
            "customerId": f"c-{n:03d}",
            "programId": "prime-day",
            "marketplace": "US",
            "engagementScore": float(n * 7 % 120),
            "optedIn": n % 5 != 0,
        }
        for n in range(20)
    ]
    return [
        {"messageId": f"m-{n:03d}", "body": json.dumps(message), "eventSource": "aws:sqs"}
        for n, message in enumerate(messages)
    ]
