"""The Glue step kind: a stage run by an AWS Glue job (``glue:startJobRun.sync``).

Its model (:class:`GlueStep`), the rule that it needs a STANDARD workflow, the job arguments it
receives (:func:`glue_parameters` as an ASL template, :func:`glue_arguments` evaluated), its
task state and, for a first step, the ``StageInitialInput`` state that writes the SQS batch
where the job reads it; the role's Glue and staging statements; and its local run (the script
in-process on local Spark).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import re
import runpy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from ceap_stage._context import INITIAL_STAGE
from ceap_stage._settings import DEFAULT_SPARK_MASTER

from ._compat import ContractSide, StageContract
from ._kinds import (
    EXECUTION_NAME,
    STAGE_INITIAL_INPUT_STATE,
    Attempt,
    LocalRetry,
    LocalStepRun,
    PackageSource,
    StepKind,
    StepModel,
    WorkflowDraft,
    WorkflowType,
    chain,
    context_object,
    guarded,
    key_expression,
    require_kind,
    sub,
)
from ._paths import evaluate_parameters
from ._resources import (
    DEFAULT_NAMESPACE,
    SKIP_STAR,
    DeployedTarget,
    StackArtifacts,
    assume,
    bucket_statements,
    checkov_skip,
    failures_alarm,
    logical,
    named,
)
from ._spark_schema import read_glue_declarations, spark_reader_schema, spark_writer_schema

if TYPE_CHECKING:
    from ceap_stage._store import Store

    from ._config import WorkflowConfiguration
    from ._loader import LoadedWorkflow

__all__ = [
    "GLUE_JOB_FAILED",
    "GLUE_JOB_FAILED_STATE",
    "GLUE_KIND",
    "GLUE_LOCAL_RETRY_ERRORS",
    "GLUE_RETRY_ERRORS",
    "GlueKind",
    "GlueStep",
    "glue_arguments",
    "glue_parameters",
    "initial_input_object",
    "initial_input_parameters",
]

#: What a Glue step is retried on: the Glue service refusing or failing to start the run
#: (``Glue.<exception>`` errors of ``StartJobRun``/``GetJobRun``), which a retry can get past.
#: Never ``States.TaskFailed``: Step Functions reports every failed job *run* so, a deterministic
#: failure (``InputValidationError``) exactly like a transient one, with the job's own error class
#: only in the cause's text. A job run retries its S3 calls itself (``RetryPolicy``); a
#: ``TransientStorageError`` that outlasts those retries fails the execution (redrive it).
GLUE_RETRY_ERRORS: Final = (
    "Glue.AWSGlueException",
    "Glue.ConcurrentRunsExceededException",
    "Glue.InternalServiceException",
    "Glue.OperationTimeoutException",
    "Glue.ThrottlingException",
)
#: The execution's error when a job run failed with an error that is not a contract error.
GLUE_JOB_FAILED: Final = "GlueJobFailed"
#: The Choice state a failed job run (``States.TaskFailed``) is caught into: it names the
#: execution's error after the contract error class the job run's ``ErrorMessage`` names.
GLUE_JOB_FAILED_STATE: Final = "Glue job failed"
# The contract errors a job run's ErrorMessage is searched for, subclasses before their bases
# ("TransientStorageError: " also ends in "StorageError: ").
_CONTRACT_ERRORS: Final = (
    "TransientStorageError",
    "StorageError",
    "ContextResolutionError",
    "ConfigurationError",
    "InputNotFoundError",
    "InputValidationError",
    "OutputConflictError",
    "OutputValidationError",
    "HandlerDefinitionError",
)
#: The errors a Glue step is retried on in a local run: the same rule as in AWS. A failed
#: script is a failed job run, which is not retried; the service errors cannot occur locally.
GLUE_LOCAL_RETRY_ERRORS: Final = GLUE_RETRY_ERRORS

# Glue job names: 1-255 of word characters and a few punctuation marks.
_GLUE_JOB_NAME = re.compile(r"[\w .:@+=,-]{1,255}")
_SPARK: Final = "glue.spark"
# What the state machine's role needs to start, watch and stop a job's runs.
_JOB_RUN_ACTIONS: Final = (
    "glue:StartJobRun",
    "glue:GetJobRun",
    "glue:GetJobRuns",
    "glue:BatchStopJobRun",
)


def _job_arn(job: str) -> dict[str, str]:
    """The ARN of the job named ``job`` (a name, or a ``${...}`` substitution), as a ``Fn::Sub``."""
    return sub(f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:job/{job}")


class GlueStep(StepModel):
    """A stage run by an AWS Glue job (STANDARD workflows only).

    Args:
        state_name: The Step Functions state name, which is also the stage name.
        job_name: The Glue job's name.
        script: The path of the job's script (relative paths are resolved against the
            configuration file's directory): run locally, uploaded by ``ceap-stage package``.
        glue_version: Deployment: ``4.0`` or ``5.0`` (default; Spark 3.5, Python 3.11).
        worker_type: Deployment: ``G.025X``, ``G.1X`` (default), ``G.2X``, ``G.4X``, ``G.8X``.
        number_of_workers: Deployment: 2-1000 (default 2).
        timeout_minutes: Deployment: a run's timeout, 1-10080 minutes (default 60).
        max_concurrent_runs: Deployment: runs at once, one per execution (default 5).

    Example:
        >>> GlueStep(state_name="EnrichStage", job_name="engagement-enrich",
        ...          script="glue_enrich.py").type
        'glue'
    """

    type: Literal["glue"] = "glue"
    job_name: str = Field(validation_alias=AliasChoices("job_name", "jobName", "glueJobName"))
    script: str | None = None
    glue_version: Literal["4.0", "5.0"] = "5.0"
    worker_type: Literal["G.025X", "G.1X", "G.2X", "G.4X", "G.8X"] = "G.1X"
    number_of_workers: int = Field(2, ge=2, le=1_000)
    timeout_minutes: int = Field(60, ge=1, le=10_080)
    max_concurrent_runs: int = Field(5, ge=1, le=1_000)

    @model_validator(mode="before")
    @classmethod
    def _no_fan_out(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and ("fan_out" in data or "fanOut" in data):
            raise ValueError(
                "fan_out: a Glue step cannot be fanned out (a Glue job scales with its workers; "
                "fan_out is for Lambda steps)"
            )
        return data

    @field_validator("job_name")
    @classmethod
    def _check_job_name(cls, value: str) -> str:
        if not _GLUE_JOB_NAME.fullmatch(value) or not value.strip():
            raise ValueError("job_name must be 1-255 letters, digits, spaces or any of '_.:@+=,-'")
        return value


class GlueKind(StepKind[GlueStep]):
    """The Glue step kind (registered as ``"glue"``; chosen by ``job_name`` when ``type`` is
    left out).

    Example:
        >>> GLUE_KIND.display(GlueStep(state_name="G", job_name="job-g"))
        'Glue job job-g'
    """

    name: ClassVar[str] = "glue"
    model: ClassVar[type[StepModel]] = GlueStep
    label: ClassVar[str] = "Glue job"
    noun: ClassVar[str] = "Glue step"
    identifying_fields: ClassVar[frozenset[str]] = frozenset({"job_name", "jobName", "glueJobName"})
    input_function: ClassVar[str] = "glue_arguments"
    reads_staged_input: ClassVar[bool] = True

    def check(self, draft: WorkflowDraft, indices: Sequence[int]) -> list[str]:
        """A Glue step needs a STANDARD workflow (EXPRESS cannot wait for a ``.sync`` job)."""
        if draft.workflow_type is not WorkflowType.EXPRESS:
            return []
        glue = [step for step in (draft.steps[i] for i in indices) if isinstance(step, GlueStep)]
        listed = ", ".join(f"{s.state_name} (job {s.job_name})" for s in glue)
        return [
            "an EXPRESS workflow cannot run Glue steps: EXPRESS executions stop after 5 "
            "minutes and cannot wait for a job with the '.sync' integration, which a Glue "
            f"job needs. Glue steps found: {listed}. Use workflow_type STANDARD."
        ]

    def target(self, step: GlueStep) -> str:
        return step.job_name

    def entry_state(self, config: WorkflowConfiguration, index: int) -> str:
        """A first Glue step is entered by the state that stages the batch for it."""
        return STAGE_INITIAL_INPUT_STATE if index == 0 else config.steps[index].state_name

    def states(
        self, config: WorkflowConfiguration, index: int, next_state: str | None
    ) -> dict[str, dict[str, Any]]:
        step = require_kind(config, index, self, "GlueKind.states")
        retry = config.retry_config
        states: dict[str, dict[str, Any]] = {}
        if index == 0:
            states[STAGE_INITIAL_INPUT_STATE] = guarded(
                {
                    "Type": "Task",
                    "Comment": "Stage the SQS batch where a first Glue step reads its input",
                    "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                    "Parameters": initial_input_parameters(config),
                    "ResultPath": None,
                    "Next": step.state_name,
                },
                ("States.TaskFailed",),
                retry.lambda_max_attempts,
                retry.lambda_interval_seconds,
                retry.lambda_backoff_rate,
            )
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": f"Glue stage {step.state_name}",
            "Resource": "arn:aws:states:::glue:startJobRun.sync",
            "Parameters": glue_parameters(config, index),
            "ResultSelector": {
                "stage": step.state_name,
                "jobRunId.$": "$.Id",
                "jobRunState.$": "$.JobRunState",
            },
            "ResultPath": "$",
        }
        guarded(
            state,
            GLUE_RETRY_ERRORS,
            retry.glue_max_attempts,
            retry.glue_interval_seconds,
            retry.glue_backoff_rate,
        )
        # A failed job run is named after the job's own error class (see job_failure_states).
        state["Catch"].insert(
            0,
            {
                "ErrorEquals": ["States.TaskFailed"],
                "ResultPath": "$",
                "Next": GLUE_JOB_FAILED_STATE,
            },
        )
        states[step.state_name] = chain(state, next_state)
        states.update(job_failure_states())
        return states

    def policy_statements(
        self, config: WorkflowConfiguration, indices: Sequence[int]
    ) -> list[dict[str, Any]]:
        jobs = [require_kind(config, i, self, "GlueKind").job_name for i in indices]
        statements: list[dict[str, Any]] = [
            {
                "Effect": "Allow",
                "Action": list(_JOB_RUN_ACTIONS),
                "Resource": [_job_arn(job) for job in jobs],
            }
        ]
        if 0 in indices:  # the staging state writes the batch
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": "s3:PutObject",
                    "Resource": sub("${WorkflowBucket.Arn}/executions/*"),
                }
            )
        return statements

    def package_source(self, step: GlueStep, workflow: LoadedWorkflow) -> PackageSource:
        """The step's script, which must exist."""
        if step.script is None:
            raise ValueError("give it a script (the Glue job's .py file) to package its job")
        path = workflow.script_path(step.script)
        if not path.is_file():
            raise ValueError(
                f"Glue script {step.script} not found at {path}; fix the step's script path"
            )
        return PackageSource(script=path)

    def local_problems(self, step: GlueStep, workflow: LoadedWorkflow) -> list[str]:
        if step.script is None:
            return [f"Glue step {step.state_name} names no script to run locally"]
        if not workflow.script_path(step.script).is_file():
            return [
                f"Glue step {step.state_name}: no script at {workflow.script_path(step.script)}"
            ]
        return []

    def contract(self, step: GlueStep, workflow: LoadedWorkflow) -> StageContract:
        """The script's declared schemas, read from its source (the script is not run).

        Input: the ``schema=`` of ``read_input``/``@glue_stage``. Output: a module-level
        ``OUTPUT_SCHEMA`` (DDL) or ``OUTPUT_MODEL`` (a pydantic model of one record; the script
        is then imported, not as ``__main__``). An undeclared side is unknown, with the reason.
        """
        if step.script is None:
            return StageContract.unknown(f"Glue step {step.state_name} names no script")
        path = workflow.script_path(step.script)
        try:
            found = read_glue_declarations(path)
        except Exception as exc:  # unreadable, not Python, or OUTPUT_MODEL's import failed
            return StageContract.unknown(
                f"Glue script {path} cannot be read",
                (("import", f"Glue script {path}: {type(exc).__name__}: {exc}"),),
            )
        reads = ContractSide.unknown_because(f"Glue step {step.state_name}: {found.input_unknown}")
        if found.input_ddl is not None:
            try:
                reads = ContractSide(spark_reader_schema(found.input_ddl), label="Spark schema")
            except ValueError as exc:
                reads = ContractSide.unknown_because(f"Glue input schema: {exc}")
        writes = ContractSide.unknown_because(
            f"Glue step {step.state_name} declares no OUTPUT_SCHEMA or OUTPUT_MODEL"
        )
        if found.output_model is not None:  # the job writes records (JSON Lines parts)
            writes = ContractSide.of_model(
                list.__class_getitem__(found.output_model), reading=False
            )
        elif found.output_ddl is not None:
            try:
                writes = ContractSide(spark_writer_schema(found.output_ddl), label="OUTPUT_SCHEMA")
            except ValueError as exc:
                writes = ContractSide.unknown_because(f"Glue OUTPUT_SCHEMA: {exc}")
        return StageContract(reads, writes)

    def local_environment_problems(self, steps: Sequence[GlueStep]) -> list[str]:
        if steps and importlib.util.find_spec("pyspark") is None:
            names = ", ".join(step.state_name for step in steps)
            return [
                f"Glue steps ({names}) run on local Spark, and PySpark is not "
                "installed: pip install 'ceap-stage[glue]' (it needs Java 17)"
            ]
        return []

    def local_store_problems(
        self, steps: Sequence[GlueStep], workflow: LoadedWorkflow, store: Store, bucket: str
    ) -> list[str]:
        """Local Spark reads and writes files only: without Hadoop's S3 connector (``hadoop-aws``
        and its AWS SDK, not in PySpark's wheel) it has no ``s3://`` filesystem. A Python-shell
        script (``glue_job(spark=False)``) reads and writes through the store, so it runs."""
        from ceap_stage._store import LocalStore

        if isinstance(store, LocalStore):
            return []
        steps = [
            step
            for step in steps
            if step.script is None or _uses_spark(workflow.script_path(step.script))
        ]
        if not steps:
            return []
        names = ", ".join(step.state_name for step in steps)
        source = Path(workflow.source)
        with contextlib.suppress(ValueError):
            source = source.resolve().relative_to(Path.cwd())
        return [
            f"Glue steps ({names}) run locally only on a local store (--store file://DIR): "
            "local Spark has no s3 filesystem; to run one on the data of an S3 execution whose "
            f"earlier stages ran, use ceap-stage replay {source} EXECUTION "
            f"{steps[0].state_name} --from-store s3://{bucket}"
        ]

    def step_input(
        self, config: WorkflowConfiguration, index: int, *, execution_id: str, state_input: Any
    ) -> Any:
        """The job arguments :func:`glue_arguments` builds."""
        return glue_arguments(config, index, execution_id=execution_id)

    def local_retry(self, config: WorkflowConfiguration) -> LocalRetry:
        """The state's rule: retried on Glue service errors only (none occur locally), so a
        failed script, like a failed job run in AWS, runs once."""
        retry = config.retry_config
        return LocalRetry(
            retry.glue_max_attempts,
            float(retry.glue_interval_seconds),
            retry.glue_backoff_rate,
            GLUE_LOCAL_RETRY_ERRORS,
        )

    def local_attempt(self, run: LocalStepRun) -> Attempt:
        """The script run in-process (``runpy``) with the job's arguments, on local Spark.

        A first step stages the batch first, as its ``StageInitialInput`` state does; one Spark
        session serves every Glue step and retry of the run (the Glue helper reuses an active
        session), started when the first Glue step is reached.
        """
        step = require_kind(run.config, run.index, self, "GlueKind")
        assert step.script is not None  # local_problems refused a step without one
        script = str(run.workflow.script_path(step.script))
        if run.index == 0:
            bucket, key, body = initial_input_object(
                run.config, execution_id=run.execution_id, state_input=run.initial_input
            )
            run.store.put(bucket, key, body)
        if _SPARK not in run.shared:
            session = _ensure_spark(run.settings.spark_master)
            run.shared[_SPARK] = session
            if session is not None:
                run.resources.callback(session.stop)

        def attempt(retry_count: int) -> tuple[int | None, int | None]:
            arguments = glue_arguments(run.config, run.index, execution_id=run.execution_id)
            argv = [script, "--JOB_NAME", step.job_name]
            for name, value in arguments.items():
                argv.extend([name, value])
            saved_argv = sys.argv
            sys.argv = argv
            try:
                with run.stage_scope():
                    runpy.run_path(script, run_name="__main__")
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    raise
            finally:
                sys.argv = saved_argv
            return run.measure(step.state_name)

        return attempt

    def deployed_resources(
        self, config: WorkflowConfiguration, index: int, artifacts: StackArtifacts
    ) -> dict[str, Any]:
        """The job (its script and the ceap-stage wheel from the artifacts bucket, its options),
        its own role and an alarm on its ``StageFailures``."""
        step = require_kind(config, index, self, "GlueKind")
        state = step.state_name
        name = logical(state)
        artifact_objects = [
            artifacts.glue_scripts[state],
            *([artifacts.wheel] if artifacts.wheel else []),
        ]
        policy: list[dict[str, Any]] = [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [
                    sub(f"arn:${{AWS::Partition}}:s3:::${{ArtifactsBucket}}/{key}")
                    for key in artifact_objects
                ],
            },
            *bucket_statements(state, config.previous_stage(index)),
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": sub(
                    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws-glue/*"
                ),
            },
            {
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"cloudwatch:namespace": ["Glue", DEFAULT_NAMESPACE]}
                },
            },
        ]
        arguments: dict[str, Any] = {
            "--job-language": "python",
            "--enable-metrics": "true",
            "--enable-continuous-cloudwatch-log": "true",
        }
        if artifacts.wheel:
            arguments["--additional-python-modules"] = sub(
                f"s3://${{ArtifactsBucket}}/{artifacts.wheel}"
            )
        return {
            f"{name}JobRole": {
                "Type": "AWS::IAM::Role",
                "Metadata": checkov_skip(SKIP_STAR),
                "Properties": {
                    "Description": f"{config.workflow_name} stage {state} (Glue)",
                    "AssumeRolePolicyDocument": assume("glue.amazonaws.com"),
                    "Policies": [
                        {
                            "PolicyName": "StageIO",
                            "PolicyDocument": {"Version": "2012-10-17", "Statement": policy},
                        }
                    ],
                },
            },
            f"{name}Job": {
                "Type": "AWS::Glue::Job",
                "Metadata": checkov_skip(
                    (
                        "CKV_AWS_195",
                        "the job writes only to the workflow bucket, encrypted by the bucket's "
                        "default encryption; a security configuration is the account's choice",
                    )
                ),
                "Properties": {
                    "Name": named(step.job_name),
                    "Description": f"{config.workflow_name} stage {state}",
                    "Role": {"Fn::GetAtt": [f"{name}JobRole", "Arn"]},
                    "Command": {
                        "Name": "glueetl",
                        "PythonVersion": "3",
                        "ScriptLocation": sub(
                            f"s3://${{ArtifactsBucket}}/{artifacts.glue_scripts[state]}"
                        ),
                    },
                    "GlueVersion": step.glue_version,
                    "WorkerType": step.worker_type,
                    "NumberOfWorkers": step.number_of_workers,
                    "Timeout": step.timeout_minutes,
                    "MaxRetries": 0,  # Step Functions retries (RetryConfiguration)
                    "ExecutionProperty": {"MaxConcurrentRuns": step.max_concurrent_runs},
                    "DefaultArguments": arguments,
                },
            },
            f"{name}FailuresAlarm": failures_alarm(config, state, DEFAULT_NAMESPACE),
        }

    def deployed_target(self, config: WorkflowConfiguration, index: int) -> DeployedTarget:
        """The created job: its name in the definition, start/watch/stop runs of it."""
        step = require_kind(config, index, self, "GlueKind")
        name = logical(step.state_name)
        return DeployedTarget(
            name=step.job_name,
            variable=f"{name}JobName",
            value={"Ref": f"{name}Job"},
            grant={
                "Effect": "Allow",
                "Action": list(_JOB_RUN_ACTIONS),
                "Resource": _job_arn(f"${{{name}Job}}"),
            },
            output=(f"{name}JobName", {"Ref": f"{name}Job"}),
        )


#: The registered Glue kind.
GLUE_KIND: Final = GlueKind()


def _uses_spark(script: Path) -> bool:
    """False for a Python-shell script: every ``glue_job(...)`` it calls passes ``spark=False``
    (read from its source, not run). A script that cannot be read counts as a Spark one."""
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return True
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "glue_job"
    ]
    shell = [
        call
        for call in calls
        if any(
            k.arg == "spark" and isinstance(k.value, ast.Constant) and k.value.value is False
            for k in call.keywords
        )
    ]
    return not calls or len(shell) < len(calls)


def _ensure_spark(master: str | None) -> Any:
    """A local SparkSession for the run's Glue steps (None when one is active already).

    ``master`` is the run's ``Settings.spark_master`` (``CEAP_SPARK_MASTER``, else ``local[*]``).
    """
    from ._runner import LocalRunError

    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - checked before the run starts
        raise LocalRunError(
            "this workflow has Glue steps, which run on local Spark: pip install "
            "'ceap-stage[glue]' (PySpark 3.5; it needs Java 17)"
        ) from None
    from ceap_stage.glue._spark import local_session

    if SparkSession.getActiveSession() is not None:
        return None
    return local_session(
        master or DEFAULT_SPARK_MASTER, "ceap-stage-run", {"spark.sql.shuffle.partitions": "4"}
    )


def job_failure_states() -> dict[str, dict[str, Any]]:
    """The states a failed job run goes through on its way to the Fail state.

    Step Functions reports a failed job run as ``States.TaskFailed`` with the job run (as JSON,
    its ``ErrorMessage`` included) as the cause. A Choice searches the cause for a contract error
    class followed by ``": "`` (``InputValidationError: ...``, as the Glue helper's failure
    reads; no identifier contains a space, so arguments cannot match) and a Pass state names
    the execution's error after it, ``GlueJobFailed`` when none is found; the cause stays the
    job run. Shared by every Glue step.

    Example:
        >>> states = job_failure_states()
        >>> states[GLUE_JOB_FAILED_STATE]["Choices"][0]["StringMatches"]
        '*TransientStorageError: *'
    """
    from ._kinds import FAIL_STATE

    def naming(error: str) -> dict[str, Any]:
        return {
            "Type": "Pass",
            "Comment": f"The failed job run's error: {error}",
            "Parameters": {"Error": error, "Cause.$": "$.Cause"},
            "Next": FAIL_STATE,
        }

    states: dict[str, dict[str, Any]] = {
        GLUE_JOB_FAILED_STATE: {
            "Type": "Choice",
            "Comment": (
                "A Glue job run failed (States.TaskFailed, not retried): name the execution's "
                "error after the contract error class in the job run's ErrorMessage"
            ),
            "Choices": [
                {
                    "Variable": "$.Cause",
                    "StringMatches": f"*{error}: *",
                    "Next": f"{GLUE_JOB_FAILED_STATE}: {error}",
                }
                for error in _CONTRACT_ERRORS
            ],
            "Default": f"{GLUE_JOB_FAILED_STATE}: {GLUE_JOB_FAILED}",
        }
    }
    for error in (*_CONTRACT_ERRORS, GLUE_JOB_FAILED):
        states[f"{GLUE_JOB_FAILED_STATE}: {error}"] = naming(error)
    return states


def glue_parameters(config: WorkflowConfiguration, index: int) -> dict[str, Any]:
    """The ``Parameters`` of Glue step ``index``: the job name and its arguments.

    The keys are built from ``$$.Execution.Name`` with ``States.Format``. A first step reads
    the staged batch (``executions/{id}/initial/output.json``) and gets no ``--previous-stage``.

    Raises:
        StepKindError: Step ``index`` is not a Glue step.

    Example:
        >>> from ceap_stage.workflow import GlueStep, WorkflowConfiguration, WorkflowType
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_type=WorkflowType.STANDARD,
        ...     workflow_bucket="bkt-1", source_queue="q",
        ...     steps=[GlueStep(state_name="G", job_name="job-g")])
        >>> glue_parameters(wf, 0)["Arguments"]["--input-key.$"]
        "States.Format('executions/{}/initial/output.json', $$.Execution.Name)"
    """
    step = require_kind(config, index, GLUE_KIND, "glue_parameters")
    bucket = config.workflow_bucket
    arguments: dict[str, Any] = {
        "--execution-id.$": EXECUTION_NAME,
        "--input-bucket": bucket,
        "--input-key.$": key_expression(config.previous_stage(index) or INITIAL_STAGE),
        "--output-bucket": bucket,
        "--output-key.$": key_expression(step.state_name),
        "--current-stage": step.state_name,
    }
    if index > 0:  # a first step has no previous stage: the Glue idiom is to omit it
        arguments["--previous-stage"] = config.steps[index - 1].state_name
    return {"JobName": step.job_name, "Arguments": arguments}


def glue_arguments(
    config: WorkflowConfiguration, index: int, *, execution_id: str
) -> dict[str, str]:
    """The job arguments the generated state machine passes Glue step ``index``.

    Raises:
        StepKindError: Step ``index`` is not a Glue step (the message names the function that
            serves its kind).

    Example:
        >>> from ceap_stage.workflow import GlueStep, WorkflowConfiguration, WorkflowType
        >>> wf = WorkflowConfiguration(workflow_name="w", workflow_type=WorkflowType.STANDARD,
        ...     workflow_bucket="bkt-1", source_queue="q",
        ...     steps=[GlueStep(state_name="G", job_name="job-g")])
        >>> glue_arguments(wf, 0, execution_id="run-1")["--output-key"]
        'executions/run-1/G/output.json'
    """
    step = require_kind(config, index, GLUE_KIND, "glue_arguments")
    context = context_object(config, execution_id=execution_id, state_name=step.state_name)
    parameters = evaluate_parameters(glue_parameters(config, index), None, context)
    arguments: Mapping[str, Any] = parameters["Arguments"]
    return {key: str(value) for key, value in arguments.items()}


def initial_input_parameters(config: WorkflowConfiguration) -> dict[str, Any]:
    """The S3 ``PutObject`` parameters that stage the batch for a first step that is Glue."""
    return {
        "Bucket": config.workflow_bucket,
        "Key.$": key_expression(INITIAL_STAGE),
        "Body.$": "States.JsonToString($)",
        "ContentType": "application/json",
    }


def initial_input_object(
    config: WorkflowConfiguration, *, execution_id: str, state_input: Any
) -> tuple[str, str, bytes]:
    """The bucket, key and body the initial-input state writes (for local runs)."""
    context = context_object(
        config, execution_id=execution_id, state_name=STAGE_INITIAL_INPUT_STATE
    )
    parameters = evaluate_parameters(initial_input_parameters(config), state_input, context)
    return parameters["Bucket"], parameters["Key"], str(parameters["Body"]).encode()
