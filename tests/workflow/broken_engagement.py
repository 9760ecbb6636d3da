"""The engagement workflow with a report stage that expects a field ScoreStage never writes."""

from __future__ import annotations

import json

from pydantic import BaseModel

from ceap_stage import stage
from ceap_stage.workflow import LambdaStep, WorkflowConfiguration, WorkflowType


class ScoreReport(BaseModel):
    customer_id: str
    total_amount: float


@stage(name="ReportStage")
def report_stage(scores: list[ScoreReport]) -> int:
    return len(scores)


def _step(name: str, handler: str) -> LambdaStep:
    return LambdaStep(state_name=name, function_name=name.lower(), handler=handler)


workflow = WorkflowConfiguration(
    workflow_name="engagement-broken",
    workflow_type=WorkflowType.EXPRESS,
    workflow_bucket="ceap-workflow-dev",
    source_queue="engagement-events",
    steps=[
        _step("ETLStage", "examples.engagement.stages:etl_stage"),
        _step("FilterStage", "examples.engagement.stages:filter_stage"),
        _step("ScoreStage", "examples.engagement.stages:score_stage"),
        _step("ReportStage", "tests.workflow.broken_engagement:report_stage"),
    ],
)


def sample_input() -> list[dict[str, object]]:
    """Two SQS records, each one customer session, as the pipe sends them."""
    event = {"event_id": "e", "type": "purchase", "occurred_at": "2026-01-15T09:00:00Z"}
    sessions = [
        {"session_id": f"s{i}", "customer_id": f"c{i}", "channel": "web", "events": [event]}
        for i in range(2)
    ]
    return [
        {"messageId": f"m{i}", "body": json.dumps(s), "eventSource": "aws:sqs"}
        for i, s in enumerate(sessions)
    ]
