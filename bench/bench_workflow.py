"""The local runner's overhead, and the cost of generating a state machine.

- ``runner``: ``LocalRunner.run`` on the EXPRESS engagement example against calling the five
  handlers directly with hand-built events on the same kind of store. The difference is what the
  runner adds per run (evaluating the ASL Payload templates, fake contexts, reading back sizes).
- ``asl``: building the ASL and the CloudFormation template of a 20-step STANDARD workflow,
  against dumping an equally large dict to JSON (a floor for "produce a document that size").
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import orjson

from ._harness import Result, interleaved


def _runner_figures() -> Result:
    from ceap_stage import LocalStore
    from ceap_stage.testing import FakeLambdaContext, build_event
    from ceap_stage.workflow import LocalRunner, load_handler, load_workflow

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    loaded = load_workflow("examples/engagement/workflow.py")
    assert loaded.sample_input is not None
    batch = loaded.sample_input()
    config = loaded.config
    runner_root = tempfile.mkdtemp(prefix="bench-runner-")
    direct_root = tempfile.mkdtemp(prefix="bench-direct-")
    runner = LocalRunner(loaded, store=LocalStore(runner_root))
    direct_store = LocalStore(direct_root)
    runtimes: list[Any] = []
    for step in config.steps:
        assert step.type == "lambda"
        handler = load_handler(step.handler)  # type: ignore[arg-type]
        runtimes.append(handler.runtime.using_store(direct_store))  # type: ignore[attr-defined]
    names = config.state_names
    counter = {"n": 0}

    def with_runner() -> None:
        counter["n"] += 1
        result = runner.run(batch, execution_id=f"bench-runner-{counter['n']}")
        assert result.succeeded

    def direct() -> None:
        counter["n"] += 1
        execution = f"bench-direct-{counter['n']}"
        for index, runtime in enumerate(runtimes):
            extra = {"initial_data": batch} if index == 0 else {}
            event = build_event(
                execution_id=execution,
                current_stage=names[index],
                previous_stage=names[index - 1] if index else None,
                workflow_bucket=config.workflow_bucket,
                workflow_name=config.workflow_name,
                **extra,
            )
            runtime.invoke(event, FakeLambdaContext())

    value, baseline = interleaved(with_runner, direct, number=5, repeat=7)
    return Result(
        "runner: engagement EXPRESS run vs direct handler calls",
        value * 1000,
        baseline * 1000,
        "ms",
        target=1.5,
        note="5 stages, 50 SQS messages",
    )


def _asl_figures() -> Result:
    from ceap_stage.workflow import (
        GlueStep,
        LambdaStep,
        WorkflowConfiguration,
        WorkflowType,
        build_definition,
        build_template,
    )

    steps: list[LambdaStep | GlueStep] = []
    for i in range(20):
        if i % 4 == 3:
            steps.append(GlueStep(state_name=f"Glue{i}", job_name=f"job-{i}"))
        else:
            steps.append(LambdaStep(state_name=f"Stage{i}", function_name=f"fn-{i}"))
    config = WorkflowConfiguration(
        workflow_name="bench",
        workflow_type=WorkflowType.STANDARD,
        steps=steps,
        workflow_bucket="ceap-bench",
        source_queue="in",
    )
    template = build_template(config)

    def generate() -> None:
        orjson.dumps(build_definition(config))
        orjson.dumps(build_template(config))

    def dump_only() -> None:
        orjson.dumps(template["Resources"]["StateMachine"]["Properties"]["Definition"])
        orjson.dumps(template)

    value, baseline = interleaved(generate, dump_only, number=200, repeat=7)
    return Result(
        "asl: definition + template of 20 steps vs json dump",
        value * 1e6,
        baseline * 1e6,
        "us",
        note="absolute cost matters: generated once per deploy",
    )


def run() -> list[Result]:
    """The runner's overhead and the generation cost."""
    return [_runner_figures(), _asl_figures()]
