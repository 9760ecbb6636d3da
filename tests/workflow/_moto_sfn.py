"""Execute generated state machines in moto's Step Functions interpreter.

moto runs the ASL for real (JSONPath, intrinsics, Retry, Catch, Fail) and calls its Lambda, Glue
and S3 backends. Three small adjustments, all in this file:

- Lambda: moto's Docker-less Lambda echoes its payload. :class:`FakeLambdas` records every
  invocation and, for functions given a behaviour, runs it instead; an exception becomes a
  function error whose ``errorType`` is the class name, as the Lambda Python runtime reports it
  (that is what ``Retry``/``Catch`` match).
- Retry waits: moto really sleeps ``IntervalSeconds``; the waits are recorded instead.
- Three moto 5.2 gaps: its context object has no ``$$.Execution.RedriveCount`` (AWS has it, 0
  until a redrive); its ``glue:startJobRun.sync`` crashes on a missing callback endpoint unless
  the task also declares the callback pattern; and it reads a state variable (``$name.path``,
  which JSONPath states may use) only through a JSONata engine it does not ship. All three are
  patched for the test: the variable is read from moto's own variable store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ceap_stage.workflow import GlueStep, LambdaStep, WorkflowConfiguration, definition_json

Behaviour = Callable[[dict[str, Any]], Any]


class LambdaServiceError(Exception):
    """Raised by a behaviour to make the Lambda *service* refuse the invocation (HTTP error)."""

    def __init__(self, code: str, status: int = 429) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


@dataclass
class FakeLambdas:
    """Records Lambda invocations; runs a behaviour per function name when one is set."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)

    def payloads(self, function_name: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls if name == function_name]

    def invoke(
        self,
        function_name: str,
        body: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        name = function_name.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
        text = body.decode() if isinstance(body, bytes) else body
        payload = json.loads(text)
        self.calls.append((name, payload))
        behaviour = self.behaviours.get(name)
        if behaviour is None:
            return text.encode()
        try:
            result = behaviour(payload)
        except LambdaServiceError as exc:
            from moto.core.exceptions import JsonRESTError

            refusal = JsonRESTError(exc.code, "Rate exceeded (simulated)")
            refusal.code = exc.status
            raise refusal from None
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return json.dumps(error).encode()
        return json.dumps(result).encode()


@dataclass
class Execution:
    """A finished execution: status, output or error, and its history."""

    status: str
    output: Any
    error: str | None
    cause: str | None
    events: list[dict[str, Any]]

    def scheduled(self, resource_type: str) -> list[dict[str, Any]]:
        """The parameters of every task of this resource type, in order."""
        return [
            json.loads(e["taskScheduledEventDetails"]["parameters"])
            for e in self.events
            if e["type"] == "TaskScheduled"
            and e["taskScheduledEventDetails"]["resourceType"] == resource_type
        ]

    def entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.events
            if "stateEnteredEventDetails" in e
        ]


@dataclass
class StepFunctionsHarness:
    lambdas: FakeLambdas
    sleeps: list[float]

    def deploy(self, config: WorkflowConfiguration) -> str:
        """Create the bucket, functions, jobs and state machine; return the machine's ARN."""
        import boto3

        iam = boto3.client("iam")
        role = iam.create_role(
            RoleName=f"sfn-{config.workflow_name}", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        boto3.client("s3").create_bucket(Bucket=config.workflow_bucket)
        lam = boto3.client("lambda")
        glue = boto3.client("glue")
        for step in config.steps:
            if isinstance(step, LambdaStep):
                lam.create_function(
                    FunctionName=step.function_name,
                    Runtime="python3.11",
                    Role=role,
                    Handler="handler.main",
                    Code={"ZipFile": b"unused"},
                )
            elif isinstance(step, GlueStep):
                glue.create_job(
                    Name=step.job_name,
                    Role=role,
                    Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/job.py"},
                )
        machine: str = boto3.client("stepfunctions").create_state_machine(
            name=config.workflow_name,
            definition=definition_json(config),
            roleArn=role,
            type=config.workflow_type.value,
        )["stateMachineArn"]
        return machine

    def execute(self, machine: str, name: str, state_input: Any, timeout: float = 30) -> Execution:
        import boto3

        sfn = boto3.client("stepfunctions")
        arn = sfn.start_execution(
            stateMachineArn=machine, name=name, input=json.dumps(state_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"execution {name} still RUNNING after {timeout} s")
            time.sleep(0.05)
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        output = described.get("output")
        return Execution(
            status=described["status"],
            output=None if output is None else json.loads(output),
            error=described.get("error"),
            cause=described.get("cause"),
            events=events,
        )


def _sample_variable(self: Any, env: Any) -> None:
    """``$name`` or ``$name.path`` in a JSONPath state: the variable, then the path in it."""
    import copy

    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    name, dot, rest = self.expression[1:].partition(".")
    value = env.variable_store.get(name)
    env.stack.append(copy.deepcopy(extract_json(f"${dot}{rest}", value) if rest else value))


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[StepFunctionsHarness]:
    from moto import mock_aws
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.common.string.string_expression import (
        StringVariableSample,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        resource,
        state_task_service_glue,
    )
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    lambdas = FakeLambdas()
    sleeps: list[float] = []

    def invoke(self: Any, function_name: str, *rest: Any) -> bytes:
        _qualifier, body, _headers, response_headers = rest
        return lambdas.invoke(function_name, body, response_headers)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)

    class _RecordingTime:
        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)

    monkeypatch.setattr(retrier_decl, "time", _RecordingTime)

    original_environment = ExecutionWorker._get_evaluation_environment

    def with_redrive_count(self: Any) -> Any:
        env = original_environment(self)
        execution: Any = env.states.context_object.context_object_data["Execution"]
        execution.setdefault("RedriveCount", 0)
        return env

    monkeypatch.setattr(ExecutionWorker, "_get_evaluation_environment", with_redrive_count)
    monkeypatch.setattr(StringVariableSample, "_eval_body", _sample_variable)
    monkeypatch.setattr(
        state_task_service_glue,
        "_SUPPORTED_INTEGRATION_PATTERNS",
        {resource.ResourceCondition.Sync, resource.ResourceCondition.WaitForTaskToken},
    )
    with mock_aws(
        config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    ):
        yield StepFunctionsHarness(lambdas, sleeps)
