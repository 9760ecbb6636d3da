"""The Lambda step kind: a stage run by a Lambda function (``lambda:invoke``).

Its model (:class:`LambdaStep`), the event it receives (:func:`lambda_payload` as an ASL
template, :func:`lambda_event` evaluated), its task state, the role's ``lambda:InvokeFunction``
statement, and its local run (the handler called in-process with that event).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from ._compat import ContractSide, StageContract
from ._kinds import (
    EXECUTION_NAME,
    QUEUE_BATCH_VARIABLE,
    Attempt,
    LocalRetry,
    LocalStepRun,
    PackageSource,
    StepKind,
    StepModel,
    WorkflowType,
    _Model,
    chain,
    context_object,
    guarded,
    output_format_for,
    require_kind,
    sub,
)
from ._paths import evaluate_parameters
from ._resources import (
    DEFAULT_NAMESPACE,
    SKIP_CONCURRENCY,
    SKIP_DLQ,
    SKIP_ENV_KMS,
    SKIP_LOG_KMS,
    SKIP_LOG_YEAR,
    SKIP_SIGNING,
    SKIP_STAR,
    SKIP_VPC,
    DeployedTarget,
    StackArtifacts,
    assume,
    bucket_statements,
    checkov_skip,
    failures_alarm,
    layer_logical,
    logical,
    named,
)

if TYPE_CHECKING:
    from ceap_stage.testing import FakeLambdaContext

    from ._config import WorkflowConfiguration
    from ._loader import LoadedWorkflow

__all__ = [
    "CONTRACTS",
    "KOTLIN_CONTRACT",
    "LAMBDA_KIND",
    "MAX_FAN_OUT_CONCURRENCY",
    "LAMBDA_RETRY_ERRORS",
    "LAMBDA_SERVICE_ERRORS",
    "FanOut",
    "LambdaKind",
    "LambdaStep",
    "lambda_event",
    "lambda_payload",
]

#: Errors the Lambda service raises around an invocation (not the function's own errors).
LAMBDA_SERVICE_ERRORS: Final = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
#: What a Lambda step is retried on: the service errors and the contract's one retryable error.
LAMBDA_RETRY_ERRORS: Final = (*LAMBDA_SERVICE_ERRORS, "TransientStorageError")
_LAMBDA_TIMEOUT_MS: Final = 900_000
#: The contract of a stage that is a Kotlin CEAP handler (docs/contract.md section 9).
KOTLIN_CONTRACT: Final = "ceap-kotlin"
#: What a Lambda step's ``contract`` may say: ``ceap`` (a ceap-stage handler, the default) or
#: ``ceap-kotlin`` (a Kotlin CEAP stage during a migration).
CONTRACTS: Final = ("ceap", KOTLIN_CONTRACT)
#: The most child executions a Distributed Map runs at once.
MAX_FAN_OUT_CONCURRENCY: Final = 10_000

# A Lambda function name, partial ARN or full ARN (with an optional version or alias).
_FUNCTION_NAME = re.compile(
    r"(arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:|\d{12}:function:)?"
    r"[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]+))?"
)
#: The Lambda Python runtimes a step may use, and the architectures.
RUNTIMES: Final = ("python3.11", "python3.12", "python3.13")
ARCHITECTURES: Final = ("x86_64", "arm64")
# An environment variable name; the names Lambda reserves (AWS_*, _HANDLER, ...) and the ones
# the stack sets itself are refused.
_ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_STACK_SET: Final = frozenset({"CEAP_WORKFLOW_BUCKET"})
_LAMBDA_RESERVED: Final = frozenset(
    {"_HANDLER", "_X_AMZN_TRACE_ID", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ"}
)
# ``module.path:attribute`` (the attribute may be dotted).
_HANDLER_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class FanOut(_Model):
    """Run a Lambda stage over many invocations: a Step Functions Distributed Map of shards.

    The stage's function is invoked once to plan (cut the previous stage's output into shards
    of about ``records_per_shard`` records), once per shard, in child executions of the state
    machine, and once to collect the shard outputs into one manifest (docs/contract.md section 7).

    Args:
        records_per_shard: About how many records one invocation handles (>= 1).
        max_concurrency: The most shards running at once (1-10,000; default 1,000).
        tolerated_failure_percentage: The percentage of shards (a whole number, 0-100) that may
            fail without failing the stage; their records are missing from the output.
            Default 0.

    Example:
        >>> FanOut(records_per_shard=50_000).max_concurrency
        1000
    """

    records_per_shard: int = Field(ge=1)
    max_concurrency: int = Field(1000, ge=1, le=MAX_FAN_OUT_CONCURRENCY)
    tolerated_failure_percentage: int = Field(0, ge=0, le=100)


class LambdaStep(StepModel):
    """A stage run by a Lambda function.

    Args:
        state_name: The Step Functions state name, which is also the stage name (the
            ``currentStage`` of the event and the directory of its output).
        function_name: The Lambda function: a name, a partial ARN or a full ARN.
        handler: The handler as ``module:attribute`` (a ``@stage`` function or a
            ``WorkflowLambdaHandler`` instance): run locally, and packaged by
            ``ceap-stage package`` (Lambda calls ``module.attribute``). For a Kotlin step, its
            local stand-in: a Python callable with the Kotlin stage's behaviour.
        contract: What the function speaks: ``"ceap"`` (a ceap-stage handler, the default) or
            ``"ceap-kotlin"`` (a Kotlin CEAP stage: the stage before it writes one JSON
            document, and a returned ``status: FAILED`` fails the execution).
        recorded_output: For local runs of a Kotlin step: a recorded ``output.json`` that stands
            in for the stage (relative paths resolve against the configuration file's
            directory). Not part of the state machine.
        memory_mb: Deployment: the function's memory, 128-10240 MB (default 512).
        timeout_seconds: Deployment: the function's timeout, 1-900 s (default 60).
        architecture: Deployment: ``x86_64`` (default) or ``arm64``.
        runtime: Deployment: ``python3.11``, ``python3.12`` (default) or ``python3.13``.
        environment: Deployment: more environment variables of the function (the stack sets
            ``CEAP_WORKFLOW_BUCKET`` and ``POWERTOOLS_SERVICE_NAME``).
        reserved_concurrency: Deployment: reserved concurrent executions (default: none).
        fan_out: Run the stage over many invocations (:class:`FanOut`; ``fanOut`` in a file).

    Example:
        >>> LambdaStep(state_name="FilterStage", function_name="engagement-filter",
        ...            handler="examples.engagement.stages:filter_stage").type
        'lambda'
    """

    type: Literal["lambda"] = "lambda"
    function_name: str = Field(
        validation_alias=AliasChoices("function_name", "functionName", "lambdaFunctionKey")
    )
    handler: str | None = None
    memory_mb: int = Field(512, ge=128, le=10_240)
    timeout_seconds: int = Field(60, ge=1, le=900)
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    runtime: Literal["python3.11", "python3.12", "python3.13"] = "python3.12"
    environment: dict[str, str] = Field(default_factory=dict)
    reserved_concurrency: int | None = Field(None, ge=0, le=10_000)
    contract: Literal["ceap", "ceap-kotlin"] = "ceap"
    recorded_output: str | None = None
    fan_out: FanOut | None = None

    @field_validator("environment")
    @classmethod
    def _check_environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(
                    f"environment variable name {name!r} must be letters, digits and '_', "
                    "starting with a letter"
                )
            if name.startswith("AWS_") or name in _LAMBDA_RESERVED:
                raise ValueError(f"environment variable {name!r} is reserved by Lambda")
            if name in _STACK_SET:
                raise ValueError(f"environment variable {name!r} is set by the stack itself")
        return value

    @field_validator("contract", mode="before")
    @classmethod
    def _check_contract(cls, value: Any) -> Any:
        if value not in CONTRACTS:
            raise ValueError(
                f"contract must be 'ceap' (a ceap-stage handler, the default) or "
                f"'{KOTLIN_CONTRACT}' (a Kotlin CEAP stage); got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_recorded_output(self) -> LambdaStep:
        if self.recorded_output is not None and self.contract != KOTLIN_CONTRACT:
            raise ValueError(
                f"recorded_output stands in for a Kotlin stage: it needs contract="
                f"'{KOTLIN_CONTRACT}' (a ceap-stage step runs its handler)"
            )
        return self

    @field_validator("function_name")
    @classmethod
    def _check_function_name(cls, value: str) -> str:
        if not _FUNCTION_NAME.fullmatch(value):
            raise ValueError(
                "function_name must be a Lambda function name (1-64 letters, digits, '-' or "
                "'_'), optionally as a partial or full ARN with a version or alias"
            )
        return value

    @field_validator("handler")
    @classmethod
    def _check_handler(cls, value: str | None) -> str | None:
        if value is not None and not _HANDLER_REF.fullmatch(value):
            raise ValueError("handler must look like 'package.module:attribute'")
        return value


def _function_arns(name: str) -> list[Any]:
    """The function ARN and its qualified versions/aliases, for an IAM Resource."""
    if name.startswith("arn:"):
        base = ":".join(name.split(":")[:7])
    elif ":function:" in name:  # 123456789012:function:name[:qualifier]
        account, _, rest = name.partition(":function:")
        base_name = rest.split(":")[0]
        return [
            sub(f"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:{account}:function:{base_name}"),
            sub(
                f"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:{account}:function:{base_name}:*"
            ),
        ]
    else:
        base_name = name.split(":", maxsplit=1)[0]
        base = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:" + base_name
        return [sub(base), sub(base + ":*")]
    return [base, base + ":*"]


class LambdaKind(StepKind[LambdaStep]):
    """The Lambda step kind (registered as ``"lambda"``; the default when ``type`` is left out).

    Example:
        >>> LAMBDA_KIND.display(LambdaStep(state_name="A", function_name="fa"))
        'Lambda fa'
    """

    name: ClassVar[str] = "lambda"
    model: ClassVar[type[StepModel]] = LambdaStep
    label: ClassVar[str] = "Lambda"
    noun: ClassVar[str] = "Lambda step"
    identifying_fields: ClassVar[frozenset[str]] = frozenset(
        {"function_name", "functionName", "lambdaFunctionKey"}
    )
    input_function: ClassVar[str] = "lambda_event"
    output_formats: ClassVar[frozenset[str]] = frozenset({"json"})

    def target(self, step: LambdaStep) -> str:
        return step.function_name

    def states(
        self, config: WorkflowConfiguration, index: int, next_state: str | None
    ) -> dict[str, dict[str, Any]]:
        step = require_kind(config, index, self, "LambdaKind.states")
        retry = config.retry_config
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": f"Lambda stage {step.state_name}",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": step.function_name,
                "Payload": lambda_payload(config, index),
            },
            # Keep the stage's small result pointer, drop the Lambda invocation metadata.
            "ResultSelector": {"stage": step.state_name, "result.$": "$.Payload"},
            "ResultPath": "$",
        }
        if index == 0 and config.workflow_type is WorkflowType.EXPRESS:
            # The first stage's pointer says which queue messages it rejected (docs/batches.md);
            # kept in a variable for the states that end the execution (_asl.py).
            state["Assign"] = {f"{QUEUE_BATCH_VARIABLE}.$": "$.Payload"}
        guarded(
            state,
            LAMBDA_RETRY_ERRORS,
            retry.lambda_max_attempts,
            retry.lambda_interval_seconds,
            retry.lambda_backoff_rate,
        )
        return {step.state_name: chain(state, next_state)}

    def policy_statements(
        self, config: WorkflowConfiguration, indices: Sequence[int]
    ) -> list[dict[str, Any]]:
        resources: list[Any] = []
        for index in indices:
            resources.extend(_function_arns(self._step(config, index).function_name))
        return [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": resources}]

    def package_source(self, step: LambdaStep, workflow: LoadedWorkflow) -> PackageSource | None:
        """The step's handler; None for an existing function named by ARN."""
        if step.function_name.startswith("arn:") or ":function:" in step.function_name:
            return None  # an existing function, referenced as it is
        if step.handler is None:
            raise ValueError(
                "give it a handler ('package.module:name') to package its function, or name an "
                "existing function by ARN"
            )
        return PackageSource(handler=step.handler)

    def local_problems(self, step: LambdaStep, workflow: LoadedWorkflow) -> list[str]:
        from ._loader import load_handler

        if step.handler is None:
            return [
                f"Lambda step {step.state_name} names no handler ('module:attribute') "
                "to run locally"
            ]
        try:
            load_handler(step.handler)
        except ValueError as exc:
            return [f"Lambda step {step.state_name}: {exc}"]
        except Exception as exc:  # the module's own import-time error
            return [
                f"Lambda step {step.state_name}: importing {step.handler} raised "
                f"{type(exc).__name__}: {exc}"
            ]
        return []

    def step_input(
        self, config: WorkflowConfiguration, index: int, *, execution_id: str, state_input: Any
    ) -> Any:
        """The event :func:`lambda_event` builds (``initialData`` for a first step only)."""
        return lambda_event(
            config,
            index,
            execution_id=execution_id,
            state_input=state_input if index == 0 else None,
        )

    def local_retry(self, config: WorkflowConfiguration) -> LocalRetry:
        """Retried on the errors the state's ``Retry`` names (only ``TransientStorageError``
        can occur without AWS)."""
        retry = config.retry_config
        return LocalRetry(
            retry.lambda_max_attempts,
            float(retry.lambda_interval_seconds),
            retry.lambda_backoff_rate,
            LAMBDA_RETRY_ERRORS,
        )

    def local_attempt(self, run: LocalStepRun) -> Attempt:
        """The handler called in-process with the event the state machine sends."""
        from ._loader import load_handler

        step = self._step(run.config, run.index)
        assert step.handler is not None  # local_problems refused a step without one
        handler = load_handler(step.handler)
        runtime = getattr(handler, "runtime", None)
        invoke: Callable[[Any, Any], Any]
        if runtime is not None and hasattr(runtime, "configured"):
            invoke = runtime.configured(store=run.store, settings=run.settings).invoke
        else:  # a plain Lambda handler: it resolves the run's settings (run.stage_scope)
            invoke = handler

        def attempt(retry_count: int) -> tuple[int | None, int | None]:
            event = self._attempt_event(run, retry_count)
            with run.stage_scope():
                pointer = invoke(event, local_context(step.function_name))
            if isinstance(pointer, dict) and isinstance(pointer.get("output"), dict):
                return pointer_counts(pointer)
            return run.measure(step.state_name)

        return attempt

    def contract(self, step: LambdaStep, workflow: LoadedWorkflow) -> StageContract:
        """The handler's input and output models; its import error or pinned name, if any."""
        from ._loader import load_handler

        if step.handler is None:
            return StageContract.unknown(f"step {step.state_name} names no handler")
        try:
            handler = load_handler(step.handler)
        except Exception as exc:  # the loader's message, or the module's own import-time error
            message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            if step.handler not in message:  # the loader's messages already name the handler
                message = f"handler {step.handler}: {message}"
            return StageContract.unknown(
                f"handler {step.handler} does not import", (("import", message),)
            )
        runtime = getattr(handler, "runtime", None)
        spec, pinned = getattr(runtime, "spec", None), getattr(runtime, "name", None)
        problems: tuple[tuple[Literal["import", "pinned"], str], ...] = ()
        if pinned is not None and pinned != step.state_name:
            problems = (
                (
                    "pinned",
                    f"handler {step.handler} is pinned to stage {pinned!r} (name=) but runs as "
                    f"step {step.state_name!r}; it would refuse every event",
                ),
            )
        if spec is None:
            why = f"handler {step.handler} is not a ceap-stage handler (no declared models)"
            return StageContract.unknown(why, problems)
        # Streamed models (Iterable[X]) are read and written as list[X]: the spec's adapters.
        return StageContract(
            ContractSide.of_model(spec.input_model, reading=True, adapter=spec.input_adapter),
            ContractSide.of_model(spec.output_model, reading=False, adapter=spec.output_adapter),
            problems,
        )

    def deployed_resources(
        self, config: WorkflowConfiguration, index: int, artifacts: StackArtifacts
    ) -> dict[str, Any]:
        """The function (its handler, code, layer, options), its log group with retention, its
        own role (read the previous stage's outputs, write its prefix, its logs, X-Ray) and an
        alarm on its ``StageFailures``."""
        step = self._step(config, index)
        state = step.state_name
        name = logical(state)
        runtime, architecture = step.runtime, step.architecture
        environment: dict[str, Any] = {
            "CEAP_WORKFLOW_BUCKET": {"Ref": "WorkflowBucket"},
            "POWERTOOLS_SERVICE_NAME": config.workflow_name,
            **step.environment,
        }
        namespace = str(environment.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))
        if artifacts.layer_arn is not None:
            layer: Any = {"Ref": "LayerArn"}
        else:
            layer = {"Ref": layer_logical(runtime, architecture)}
        properties: dict[str, Any] = {
            "FunctionName": named(step.function_name),
            "Description": f"{config.workflow_name} stage {state}",
            "Runtime": runtime,
            "Architectures": [architecture],
            "Handler": artifacts.handlers[state],
            "Code": {"S3Bucket": {"Ref": "ArtifactsBucket"}, "S3Key": artifacts.code[state]},
            "Layers": [layer],
            "MemorySize": step.memory_mb,
            "Timeout": step.timeout_seconds,
            "Role": {"Fn::GetAtt": [f"{name}Role", "Arn"]},
            "Environment": {"Variables": environment},
            "TracingConfig": {"Mode": "Active"},
        }
        reserved = step.reserved_concurrency
        if reserved is not None:
            properties["ReservedConcurrentExecutions"] = reserved
        policy = [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": sub(
                    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                    f"/aws/lambda/{step.function_name}-${{Environment}}:*"
                ),
            },
            {
                "Effect": "Allow",
                "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                "Resource": "*",
            },
            *bucket_statements(state, config.previous_stage(index)),
        ]
        skips = [SKIP_VPC, SKIP_DLQ, SKIP_SIGNING, SKIP_ENV_KMS]
        if reserved is None:
            skips.append(SKIP_CONCURRENCY)
        return {
            f"{name}LogGroup": {
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Metadata": checkov_skip(SKIP_LOG_KMS, SKIP_LOG_YEAR),
                "Properties": {
                    # Named after the function, the group Lambda writes to by default.
                    "LogGroupName": sub(f"/aws/lambda/${{{name}Function}}"),
                    "RetentionInDays": {"Ref": "LogRetentionDays"},
                },
            },
            f"{name}Role": {
                "Type": "AWS::IAM::Role",
                "Metadata": checkov_skip(SKIP_STAR),
                "Properties": {
                    "Description": f"{config.workflow_name} stage {state} (Lambda)",
                    "AssumeRolePolicyDocument": assume("lambda.amazonaws.com"),
                    "Policies": [
                        {
                            "PolicyName": "StageIO",
                            "PolicyDocument": {"Version": "2012-10-17", "Statement": policy},
                        }
                    ],
                },
            },
            f"{name}Function": {
                "Type": "AWS::Lambda::Function",
                "Metadata": checkov_skip(*skips),
                "Properties": properties,
            },
            f"{name}FailuresAlarm": failures_alarm(config, state, namespace),
        }

    def deployed_target(self, config: WorkflowConfiguration, index: int) -> DeployedTarget:
        """The created function: its ARN in the definition, ``lambda:InvokeFunction`` on it."""
        step = self._step(config, index)
        name = logical(step.state_name)
        arn = {"Fn::GetAtt": [f"{name}Function", "Arn"]}
        return DeployedTarget(
            name=step.function_name,
            variable=f"{name}FunctionArn",
            value=arn,
            grant={
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": [arn, sub(f"${{{name}Function.Arn}}:*")],
            },
            output=(f"{name}FunctionName", {"Ref": f"{name}Function"}),
        )

    def _step(self, config: WorkflowConfiguration, index: int) -> LambdaStep:
        return require_kind(config, index, self, "LambdaKind")

    def _attempt_event(self, run: LocalStepRun, retry_count: int) -> dict[str, Any]:
        """The event the state machine sends attempt ``retry_count`` of the run's step."""
        return lambda_event(
            run.config,
            run.index,
            execution_id=run.execution_id,
            state_input=run.initial_input if run.index == 0 else None,
            retry_count=retry_count,
        )


#: The registered Lambda kind.
LAMBDA_KIND: Final = LambdaKind()


def local_context(function_name: str) -> FakeLambdaContext:
    """The Lambda context a local run passes a step's handler: the function's bare name (of an
    ARN or a qualified name) and Lambda's longest timeout."""
    from ceap_stage.testing import FakeLambdaContext

    name = function_name.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
    return FakeLambdaContext(function_name=name, timeout_ms=_LAMBDA_TIMEOUT_MS)


def pointer_counts(pointer: object) -> tuple[int | None, int | None]:
    """The records and bytes a stage's pointer reports (None for what it does not report)."""
    if not isinstance(pointer, dict):
        return None, None
    out = pointer.get("output")
    records = pointer.get("recordsProcessed")
    size = out.get("bytes") if isinstance(out, dict) else None
    return (
        records if isinstance(records, int) else None,
        size if isinstance(size, int) else None,
    )


def lambda_payload(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The ``Payload`` template of Lambda step ``index``: docs/contract.md section 2, as ASL.

    ``initialData`` is the state input (the EventBridge Pipes batch) and only the first step
    gets it; ``redriveCount`` exists only in STANDARD executions, which can be redriven. A step
    followed by one that needs a given format (a Kotlin CEAP stage reads one JSON document) gets
    ``"outputFormat"`` (docs/contract.md section 9).

    Raises:
        StepKindError: Step ``index`` is not a Lambda step.

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa"),
        ...                               LambdaStep(state_name="B", function_name="fb")])
        >>> lambda_payload(wf, 1)["previousStage"], "initialData.$" in lambda_payload(wf, 1)
        ('A', False)
    """
    step = require_kind(config, index, LAMBDA_KIND, "lambda_payload")
    payload: dict[str, Any] = {
        "executionId.$": EXECUTION_NAME,
        "currentStage": step.state_name,
        "previousStage": config.previous_stage(index),
        "workflowBucket": config.workflow_bucket,
        "workflowName": config.workflow_name,
        "retryCount.$": "$$.State.RetryCount",
    }
    if config.workflow_type is WorkflowType.STANDARD:
        payload["redriveCount.$"] = "$$.Execution.RedriveCount"
    output_format = output_format_for(config, index)
    if output_format is not None:
        payload["outputFormat"] = output_format
    if index == 0:
        payload["initialData.$"] = "$"
    return payload


def lambda_event(
    config: WorkflowConfiguration,
    index: int,
    *,
    execution_id: str,
    state_input: Any = None,
    retry_count: int = 0,
    redrive_count: int = 0,
) -> dict[str, Any]:
    """The event the generated state machine sends Lambda step ``index``.

    It is :func:`lambda_payload` evaluated against ``state_input`` (the SQS batch, for the
    first step) and a context object, exactly as Step Functions evaluates it.

    Raises:
        StepKindError: Step ``index`` is not a Lambda step (the message names the function
            that serves its kind).

    Example:
        >>> from ceap_stage.workflow import LambdaStep, WorkflowConfiguration
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_bucket="bkt-1",
        ...     source_queue="q", steps=[LambdaStep(state_name="A", function_name="fa")])
        >>> event = lambda_event(wf, 0, execution_id="run-1", state_input=[])
        >>> event  # doctest: +NORMALIZE_WHITESPACE
        {'executionId': 'run-1', 'currentStage': 'A', 'previousStage': None,
         'workflowBucket': 'bkt-1', 'workflowName': 'w', 'retryCount': 0, 'initialData': []}
    """
    step = require_kind(config, index, LAMBDA_KIND, "lambda_event")
    context = context_object(
        config,
        execution_id=execution_id,
        state_name=step.state_name,
        retry_count=retry_count,
        redrive_count=redrive_count,
        state_input=state_input,
    )
    event: dict[str, Any] = evaluate_parameters(lambda_payload(config, index), state_input, context)
    return event
