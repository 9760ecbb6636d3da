"""The fan-out variant of the Lambda kind: a Lambda step with ``fan_out=FanOut(...)``.

Its states are a plan Task, a ``Map`` state in ``DISTRIBUTED`` mode over the plan's
``shards.jsonl`` (one EXPRESS child execution per shard, each invoking the same function with
one shard), and a collect Task that writes the stage's ``output.json`` (docs/contract.md
section 7)::

    "{stage} plan"     Task  lambda:invoke {..., "ceapPhase": "plan", "recordsPerShard": N}
    "{stage} shards"   Map   ItemReader s3:getObject shards.jsonl (JSONL) -> child executions
                             ItemSelector: the parent's execution name + the shard line
                             child: Task lambda:invoke {..., "ceapPhase": "shard", "shard": ...}
                             ResultWriter s3:putObject under the stage's map-results/
    "{stage}"          Task  lambda:invoke {..., "ceapPhase": "collect"} -> next step

Every one of them is caught into the Fail state. The role may start the state machine's own
child executions (and describe and stop them, as a Map Run does), read ``shards.jsonl`` and
write the map results under the stage's prefix, nothing broader.

Locally the step runs the same three phases: the plan and the collect in this process, the
shards in a pool of worker processes (``ceap-stage run --workers N``), each worker given the
handler's reference and the run's settings (whose ``store_url`` is the run's store) explicitly.

Rules: only a Lambda step can be fanned out (a Glue job scales with its workers); not the first
step (its input is the initial batch in the execution's input, at most 256 KB, which one
invocation handles: fan out the stage after it); only in a STANDARD workflow (Step Functions
runs Distributed Map in STANDARD workflows only); only list-like or ``Iterable[X]`` models.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ceap_stage._io import OutputRef, StageIO
from ceap_stage._settings import Settings

from ._kinds import (
    EXECUTION_NAME,
    Attempt,
    LocalRetry,
    LocalStepRun,
    WorkflowDraft,
    WorkflowType,
    chain,
    guarded,
    sub,
)
from ._lambda_kind import (
    LAMBDA_RETRY_ERRORS,
    FanOut,
    LambdaKind,
    LambdaStep,
    lambda_payload,
    local_context,
    pointer_counts,
)
from ._paths import escape_intrinsic_literal

if TYPE_CHECKING:
    from ._config import WorkflowConfiguration
    from ._loader import LoadedWorkflow

__all__ = [
    "FANOUT_KIND",
    "FanOutKind",
    "ShardFailure",
    "collect_payload",
    "plan_payload",
    "shard_payload",
    "shard_selector",
    "state_names",
]

# The longest suffix a fanned-out step's states add to its name (state names: at most 80).
_LONGEST_SUFFIX: Final = len(" shards")
_MAX_STATE_NAME: Final = 80


def state_names(stage: str) -> tuple[str, str, str]:
    """The plan, map and collect states of a fanned-out stage (the collect is the stage's).

    Example:
        >>> state_names("Score")
        ('Score plan', 'Score shards', 'Score')
    """
    return f"{stage} plan", f"{stage} shards", stage


def _fan_out(step: LambdaStep) -> FanOut:
    assert step.fan_out is not None  # the variant serves fanned-out steps only
    return step.fan_out


def plan_payload(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The plan Task's ``Payload``: the stage's event with ``ceapPhase: plan``."""
    step = FANOUT_KIND.step(config, index)
    return {
        **lambda_payload(config, index),
        "ceapPhase": "plan",
        "recordsPerShard": _fan_out(step).records_per_shard,
    }


def collect_payload(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The collect Task's ``Payload``: the stage's event with ``ceapPhase: collect``."""
    step = FANOUT_KIND.step(config, index)
    return {
        **lambda_payload(config, index),
        "ceapPhase": "collect",
        "toleratedFailurePercentage": _fan_out(step).tolerated_failure_percentage,
    }


def shard_selector(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The Map's ``ItemSelector``: evaluated in the *parent* execution for each shard line.

    A child execution has its own name, so the parent's (the contract's execution id) and its
    redrive count are taken here, from the parent's context object.
    """
    selector: dict[str, Any] = {"executionId.$": EXECUTION_NAME, "shard.$": "$$.Map.Item.Value"}
    if config.workflow_type is WorkflowType.STANDARD:
        selector["redriveCount.$"] = "$$.Execution.RedriveCount"
    return selector


def shard_payload(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The child execution's Task ``Payload``: the stage's event for one shard.

    Its input is what :func:`shard_selector` built; ``retryCount`` is the child task's own.
    """
    payload = {
        key: value
        for key, value in lambda_payload(config, index).items()
        if key not in ("executionId.$", "redriveCount.$", "retryCount.$")
    }
    payload["executionId.$"] = "$.executionId"
    payload["retryCount.$"] = "$$.State.RetryCount"
    if config.workflow_type is WorkflowType.STANDARD:
        payload["redriveCount.$"] = "$.redriveCount"
    payload["ceapPhase"] = "shard"
    payload["shard.$"] = "$.shard"
    return payload


def _stage_key_expression(stage: str, leaf: str) -> str:
    ref = OutputRef("b", "\x00", stage)
    template = escape_intrinsic_literal(f"{ref.prefix}{leaf}").replace("\x00", "{}")
    return f"States.Format('{template}', {EXECUTION_NAME})"


class ShardFailure(Exception):
    """A shard of a fanned-out step failed locally (its index and error are kept).

    Attributes:
        index: The shard's index.
        error: What it raised.
    """

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"shard {index} failed with {type(error).__name__}: {error}")
        self.index = index
        self.error = error


class FanOutKind(LambdaKind):
    """The Lambda kind's fan-out variant: steps whose ``fan_out`` is set.

    Example:
        >>> from ceap_stage.workflow import FanOut, LambdaStep
        >>> step = LambdaStep(state_name="Score", function_name="score",
        ...                   fan_out=FanOut(records_per_shard=10_000))
        >>> FANOUT_KIND.applies_to(step), FANOUT_KIND.display(step)
        (True, 'Lambda score (fanned out, 10000 records per shard)')
    """

    name: ClassVar[str] = "lambda-fan-out"
    variant_of: ClassVar[str | None] = "lambda"
    noun: ClassVar[str] = "fanned-out Lambda step"
    # Its output is always a manifest of the shard outputs: never one JSON document.
    output_formats: ClassVar[frozenset[str]] = frozenset()

    def applies_to(self, step: LambdaStep) -> bool:
        return step.fan_out is not None

    def display(self, step: LambdaStep) -> str:
        return (
            f"{super().display(step)} (fanned out, {_fan_out(step).records_per_shard} records "
            "per shard)"
        )

    def step(self, config: WorkflowConfiguration, index: int) -> LambdaStep:
        """Step ``index``, a fanned-out Lambda step."""
        step = self._step(config, index)
        if step.fan_out is None:
            raise ValueError(f"step {index} ({step.state_name}) is not fanned out")
        return step

    # -- configuration ------------------------------------------------------------------------

    def check(self, draft: WorkflowDraft, indices: Sequence[int]) -> list[str]:
        problems = super().check(draft, indices)
        for index in indices:
            step = draft.steps[index]
            assert step is not None
            where = f"steps[{index}] ({step.state_name}): fan_out"
            contract = getattr(step, "contract", "ceap")
            if contract != "ceap":
                problems.append(
                    f"{where}: a step with contract {contract!r} cannot be fanned out (only "
                    "a ceap-stage handler serves the plan, shard and collect phases)"
                )
            if index == 0:
                problems.append(
                    f"{where}: a first step cannot be fanned out (its input is the initial "
                    "batch in the execution's input, which one invocation handles); fan out "
                    "the step after it"
                )
            if draft.workflow_type is WorkflowType.EXPRESS:
                problems.append(
                    f"{where} needs workflow_type STANDARD (Step Functions runs a Distributed "
                    "Map in STANDARD workflows only)"
                )
            if len(step.state_name) + _LONGEST_SUFFIX > _MAX_STATE_NAME:
                problems.append(
                    f"{where}: the state_name of a fanned-out step may have at most "
                    f"{_MAX_STATE_NAME - _LONGEST_SUFFIX} characters (its states add "
                    "' plan' and ' shards')"
                )
        return problems

    def code_problems(self, step: LambdaStep) -> list[str]:
        """Models that cannot be fanned out, when the step's handler can be imported here."""
        from ceap_stage._fanout import fan_out_problems

        from ._loader import load_handler

        if step.handler is None:
            return []
        try:
            handler = load_handler(step.handler)
        except Exception:  # cannot be imported here: nothing to check now (plan checks again)
            return []
        runtime = getattr(handler, "runtime", None)
        spec = getattr(runtime, "spec", None)
        if spec is None:
            return []
        return fan_out_problems(spec, f"step {step.state_name}: fan_out ({step.handler})")

    # -- the state machine --------------------------------------------------------------------

    def entry_state(self, config: WorkflowConfiguration, index: int) -> str:
        return state_names(config.steps[index].state_name)[0]

    def states(
        self, config: WorkflowConfiguration, index: int, next_state: str | None
    ) -> dict[str, dict[str, Any]]:
        step = self.step(config, index)
        fan_out = _fan_out(step)
        plan_name, map_name, collect_name = state_names(step.state_name)
        retry = config.retry_config

        def task(comment: str, payload: dict[str, Any]) -> dict[str, Any]:
            state: dict[str, Any] = {
                "Type": "Task",
                "Comment": comment,
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": step.function_name, "Payload": payload},
                "ResultSelector": {"stage": step.state_name, "result.$": "$.Payload"},
                "ResultPath": "$",
            }
            return guarded(
                state,
                LAMBDA_RETRY_ERRORS,
                retry.lambda_max_attempts,
                retry.lambda_interval_seconds,
                retry.lambda_backoff_rate,
            )

        shard_task: dict[str, Any] = {
            "Type": "Task",
            "Comment": f"One shard of {step.state_name}",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": step.function_name,
                "Payload": shard_payload(config, index),
            },
            "ResultSelector": {"result.$": "$.Payload"},
            "End": True,
        }
        if retry.lambda_max_attempts:
            shard_task["Retry"] = [
                {
                    "ErrorEquals": list(LAMBDA_RETRY_ERRORS),
                    "IntervalSeconds": retry.lambda_interval_seconds,
                    "MaxAttempts": retry.lambda_max_attempts,
                    "BackoffRate": retry.lambda_backoff_rate,
                }
            ]
        distributed_map: dict[str, Any] = {
            "Type": "Map",
            "Comment": f"The shards of {step.state_name}, one child execution each",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSONL"},
                "Parameters": {
                    "Bucket": config.workflow_bucket,
                    "Key.$": _stage_key_expression(step.state_name, "shards.jsonl"),
                },
            },
            "ItemSelector": shard_selector(config, index),
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "StartAt": "Shard",
                "States": {"Shard": shard_task},
            },
            "MaxConcurrency": fan_out.max_concurrency,
            "ToleratedFailurePercentage": fan_out.tolerated_failure_percentage,
            "ResultWriter": {
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {
                    "Bucket": config.workflow_bucket,
                    "Prefix.$": _stage_key_expression(step.state_name, "map-results"),
                },
            },
            # The plan's pointer goes on to the collect; the map's results stay in S3.
            "ResultPath": None,
            "Next": collect_name,
        }
        distributed_map["Catch"] = guarded({}, (), 0, 0, 1.0)["Catch"]
        plan = task(f"Plan the shards of {step.state_name}", plan_payload(config, index))
        plan["Next"] = map_name
        collect = task(
            f"Collect the shards of {step.state_name} into its output",
            collect_payload(config, index),
        )
        return {
            plan_name: plan,
            map_name: distributed_map,
            collect_name: chain(collect, next_state),
        }

    def policy_statements(
        self, config: WorkflowConfiguration, indices: Sequence[int]
    ) -> list[dict[str, Any]]:
        return [
            *super().policy_statements(config, indices),
            *self.machine_statements(config, indices, deployed=False),
        ]

    def machine_statements(
        self, config: WorkflowConfiguration, indices: Sequence[int], *, deployed: bool
    ) -> list[dict[str, Any]]:
        """Start, describe and stop the state machine's own child executions; read the
        stages' ``shards.jsonl``; write their map results. Nothing broader."""
        name = f"{config.workflow_name}-${{Environment}}" if deployed else config.workflow_name
        arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
        if deployed:
            objects = "${WorkflowBucket.Arn}/executions/*/"
        else:
            objects = "arn:${AWS::Partition}:s3:::" + config.workflow_bucket + "/executions/*/"
        stages = [self.step(config, i).state_name for i in indices]
        return [
            {
                "Effect": "Allow",
                "Action": "states:StartExecution",
                "Resource": sub(f"{arn}:stateMachine:{name}"),
            },
            {
                "Effect": "Allow",
                "Action": ["states:DescribeExecution", "states:StopExecution"],
                "Resource": sub(f"{arn}:execution:{name}/*"),
            },
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [sub(f"{objects}{stage}/shards.jsonl") for stage in stages],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                "Resource": [sub(f"{objects}{stage}/map-results/*") for stage in stages],
            },
        ]

    # -- local runs ---------------------------------------------------------------------------

    def local_problems(self, step: LambdaStep, workflow: LoadedWorkflow) -> list[str]:
        problems = super().local_problems(step, workflow)
        if problems or step.handler is None:
            return problems
        from ._loader import load_handler

        if getattr(load_handler(step.handler), "runtime", None) is None:
            return [
                f"fanned-out Lambda step {step.state_name}: its handler {step.handler} must be "
                "a @stage function or a WorkflowLambdaHandler to run locally"
            ]
        return self.code_problems(step)

    def local_attempt(self, run: LocalStepRun) -> Attempt:
        """Plan here, the shards in a pool of ``run.workers`` processes, collect here."""
        from ceap_stage._fanout import read_plan

        from ._kinds import context_object
        from ._loader import load_handler
        from ._paths import evaluate_parameters

        config, index = run.config, run.index
        step = self.step(config, index)
        fan_out = _fan_out(step)
        assert step.handler is not None  # local_problems refused a step without one
        runtime = load_handler(step.handler).runtime  # type: ignore[attr-defined]
        invoke: Callable[[Any, Any], Any] = runtime.configured(
            store=run.store, settings=run.settings
        ).invoke
        function = step.function_name
        retry = self.local_retry(config)
        # Workers get the run's settings explicitly (their store_url is the run's store), or
        # none when the store cannot be opened by URL in another process.
        worker_settings = run.settings if _reopenable(run.store) else None
        io = StageIO(run.store)
        ref = OutputRef(config.workflow_bucket, run.execution_id, step.state_name)

        def event(payload: dict[str, Any], retry_count: int, state_input: Any = None) -> Any:
            context = context_object(
                config,
                execution_id=run.execution_id,
                state_name=step.state_name,
                retry_count=retry_count,
            )
            return evaluate_parameters(payload, state_input, context)

        def attempt(retry_count: int) -> tuple[int | None, int | None]:
            with run.stage_scope():
                invoke(event(plan_payload(config, index), retry_count), local_context(function))
            shards = read_plan(io, ref)
            selector = shard_selector(config, index)
            payload = shard_payload(config, index)
            events = []
            for shard in shards:
                item = {"Map": {"Item": {"Index": shard.index, "Value": _line(shard)}}}
                child_input = _select(selector, config, run.execution_id, step.state_name, item)
                events.append(event(payload, 0, child_input))
            failures = _run_shards(
                events,
                handler=step.handler or "",
                settings=worker_settings,
                local_invoke=invoke,
                workers=run.workers,
                retry=retry,
                delay_scale=run.retry_delay_scale,
                function=function,
                progress=run.report_shards,
                details=run.details,
            )
            if failures:
                for failure in failures:
                    run.report_shard_failure(failure.index, failure.error)
                run.details["failed_shards"] = [f.index for f in failures]
                if len(failures) * 100 > fan_out.tolerated_failure_percentage * len(shards):
                    raise failures[0].error
            with run.stage_scope():
                pointer = invoke(
                    event(collect_payload(config, index), retry_count), local_context(function)
                )
            run.details["shards"] = len(shards)
            return pointer_counts(pointer)

        return attempt

    def local_retry(self, config: WorkflowConfiguration) -> LocalRetry:
        return super().local_retry(config)


def _reopenable(store: Any) -> bool:
    """Whether a worker process can open the run's store from the settings' ``store_url``."""
    from ceap_stage._s3 import S3Store
    from ceap_stage._store import LocalStore

    return type(store) in (LocalStore, S3Store)


def _line(shard: Any) -> Any:
    import orjson

    return orjson.loads(shard.to_line())


def _select(
    selector: dict[str, Any],
    config: WorkflowConfiguration,
    execution_id: str,
    state_name: str,
    item: dict[str, Any],
) -> Any:
    """The ``ItemSelector`` evaluated as the parent execution evaluates it for one item."""
    from ._kinds import context_object
    from ._paths import evaluate_parameters

    context = {**context_object(config, execution_id=execution_id, state_name=state_name), **item}
    return evaluate_parameters(selector, None, context)


# -- the shards, in worker processes -----------------------------------------------------------

# A worker's handlers, by (handler reference, settings): loaded once per process.
_WORKER_INVOKERS: dict[tuple[str, Settings], Callable[[Any, Any], Any]] = {}


def _worker_invoke(handler: str, settings: Settings) -> Callable[[Any, Any], Any]:
    """The handler's runtime, configured with the settings the parent passed (and so its
    store, from ``settings.store_url``); nothing is read from the environment."""
    key = (handler, settings)
    invoker = _WORKER_INVOKERS.get(key)
    if invoker is None:
        from ._loader import load_handler

        runtime = load_handler(handler).runtime  # type: ignore[attr-defined]
        invoker = _WORKER_INVOKERS[key] = runtime.configured(settings=settings).invoke
    return invoker


def run_shard(
    invoke: Callable[[Any, Any], Any],
    event: dict[str, Any],
    retry: LocalRetry,
    delay_scale: float,
    function: str,
) -> dict[str, Any]:
    """One shard, retried as the child execution's ``Retry`` says."""
    attempt = 0
    while True:
        try:
            pointer: dict[str, Any] = invoke(
                {**event, "retryCount": attempt},
                local_context(function),
            )
            return pointer
        except Exception as exc:
            wait = retry.wait_after(exc, attempt, delay_scale)
            if wait is None:
                raise
            if wait > 0:
                time.sleep(wait)
            attempt += 1


def _shard_in_worker(
    handler: str,
    settings: Settings,
    event: dict[str, Any],
    *,
    retry: LocalRetry,
    delay_scale: float,
    function: str,
) -> tuple[dict[str, Any], int]:
    """Run one shard in a worker process; return its pointer and the process's peak memory."""
    import resource

    pointer = run_shard(_worker_invoke(handler, settings), event, retry, delay_scale, function)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return pointer, peak_kib * 1024


def _run_shards(
    events: list[dict[str, Any]],
    *,
    handler: str,
    settings: Settings | None,
    local_invoke: Callable[[Any, Any], Any],
    workers: int,
    retry: LocalRetry,
    delay_scale: float,
    function: str,
    progress: Callable[[int, int], None],
    details: dict[str, Any],
) -> list[ShardFailure]:
    """Run the shard events, in this process (one worker) or in a process pool."""
    total = len(events)
    failures: list[ShardFailure] = []
    progress(0, total)
    if workers <= 1 or total <= 1 or settings is None:
        for done, event in enumerate(events, start=1):
            try:
                run_shard(local_invoke, event, retry, delay_scale, function)
            except Exception as exc:
                failures.append(ShardFailure(event["shard"]["index"], exc))
            progress(done, total)
        return failures
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    peak = 0
    pool = ProcessPoolExecutor(max_workers=min(workers, total), mp_context=context)
    try:
        futures = {
            pool.submit(
                _shard_in_worker,
                handler,
                settings,
                event,
                retry=retry,
                delay_scale=delay_scale,
                function=function,
            ): event["shard"]["index"]
            for event in events
        }
        for done, future in enumerate(as_completed(futures), start=1):
            try:
                _, memory = future.result()
                peak = max(peak, memory)
            except Exception as exc:
                failures.append(ShardFailure(futures[future], exc))
            progress(done, total)
    except BaseException:  # Ctrl-C (KeyboardInterrupt) or a failure of the pool itself
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    details["workers"] = min(workers, total)
    details["peak_shard_process_bytes"] = peak
    failures.sort(key=lambda f: f.index)
    return failures


def _stop(pool: Any) -> None:
    """Stop ``pool`` at once: drop the shards not started and end the worker processes.

    ``shutdown(wait=True)``, what leaving a ``with`` block does, would first run every queued
    shard (a minute or more after a Ctrl-C), and a second Ctrl-C during that wait can leave the
    pool's threads waiting for good. A shard stopped midway leaves no ``output.json`` of the
    stage (each object is written whole or not at all); running the stage again redoes its
    shards.
    """
    processes = list(getattr(pool, "_processes", {}).values())  # before shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


#: The registered fan-out variant of the Lambda kind.
FANOUT_KIND: Final = FanOutKind()
