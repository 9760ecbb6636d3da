"""Kotlin CEAP stages in a workflow (docs/contract.md section 9): a variant of the Lambda kind.

A Lambda step with ``contract="ceap-kotlin"`` names a function built on CEAP's Kotlin base
handler. Two of its habits shape the workflow around it:

- it reads ``output.json`` with Jackson's ``readTree``: JSON Lines would be read as their first
  record only and a manifest as if it were the data, silently. So the step before it gets
  ``"outputFormat": "json"`` in its event (:attr:`KotlinKind.input_format`) and writes one JSON
  document, and a step that cannot (a Glue job writes a manifest) is refused before it;
- it catches every exception and returns ``{"status": "FAILED", "errorMessage": ...}``, which
  Step Functions takes for a success. So its task is followed by a Choice state that turns
  ``FAILED`` into a Fail state with the error ``StageFailed`` and the ``errorMessage`` as cause.

Locally the step runs through a stand-in the user gives: a Python callable with the Kotlin
stage's behaviour (``handler``), or a recorded ``output.json`` (``recorded_output``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

import orjson

from ceap_stage._context import output_key
from ceap_stage._errors import InputNotFoundError, InputValidationError, StageFailed
from ceap_stage._formats import decode

from ._kinds import Attempt, LocalStepRun, PackageSource, WorkflowDraft, kind_of, require_kind
from ._lambda_kind import KOTLIN_CONTRACT, LambdaKind, LambdaStep

if TYPE_CHECKING:
    from ._compat import StageContract
    from ._config import WorkflowConfiguration
    from ._loader import LoadedWorkflow

__all__ = [
    "KOTLIN_KIND",
    "STAGE_FAILED",
    "KotlinKind",
    "KotlinStandIn",
    "failed_state_names",
]

#: The error an execution fails with when a Kotlin stage returns ``status: FAILED``.
STAGE_FAILED: Final = "StageFailed"

#: A Python stand-in for a Kotlin stage in local runs: called with the stage's input (the
#: previous output read as one JSON document, as ``readTree`` reads it; for a first step the
#: ``initialData`` of its event) and the event; returns the stage's output (a JSON value, written
#: as one JSON document). Raising any exception is the Kotlin stage returning ``FAILED`` with the
#: exception's message as ``errorMessage``.
KotlinStandIn = Callable[[Any, Mapping[str, Any]], Any]


_MAX_STATE_NAME: Final = 80


def _derived(state_name: str, suffix: str) -> str:
    """``state_name`` + ``suffix``, shortened (with a hash of the full name) to fit 80 chars."""
    name = f"{state_name} {suffix}"
    if len(name) <= _MAX_STATE_NAME:
        return name
    digest = hashlib.sha256(state_name.encode()).hexdigest()[:8]
    keep = _MAX_STATE_NAME - len(suffix) - len(digest) - 2
    return f"{state_name[:keep]}~{digest} {suffix}"


def failed_state_names(state_name: str) -> tuple[str, str, str, str]:
    """The Choice, Fail (with and without a message) and Succeed states after a Kotlin step.

    They contain a space, which no step name may, so they never collide with a step; a long step
    name is shortened (with a hash of it) to keep them within Step Functions' 80 characters.

    Example:
        >>> failed_state_names("Score")
        ('Score status', 'Score failed', 'Score failed (no message)', 'Score succeeded')
    """
    return (
        _derived(state_name, "status"),
        _derived(state_name, "failed"),
        _derived(state_name, "failed (no message)"),
        _derived(state_name, "succeeded"),
    )


class KotlinKind(LambdaKind):
    """The Kotlin CEAP stage: a Lambda step with ``contract="ceap-kotlin"``.

    Example:
        >>> step = LambdaStep(state_name="K", function_name="fk", contract="ceap-kotlin")
        >>> KOTLIN_KIND.applies_to(step), KOTLIN_KIND.display(step)
        (True, 'Kotlin Lambda fk')
    """

    name: ClassVar[str] = "ceap-kotlin"
    variant_of: ClassVar[str | None] = "lambda"
    label: ClassVar[str] = "Kotlin Lambda"
    noun: ClassVar[str] = "Kotlin step"
    input_format: ClassVar[str | None] = "json"

    def applies_to(self, step: LambdaStep) -> bool:
        return step.contract == KOTLIN_CONTRACT

    def check(self, draft: WorkflowDraft, indices: Sequence[int]) -> list[str]:
        """The step before a Kotlin step must be able to write one JSON document."""
        problems = []
        for index in indices:
            step = draft.steps[index]
            before = draft.steps[index - 1] if index > 0 else None
            if step is None or before is None:
                continue
            if "json" not in kind_of(before).output_formats:
                problems.append(
                    f"step {step.state_name} is a Kotlin CEAP stage (contract "
                    f"'{KOTLIN_CONTRACT}'), which reads output.json as one JSON document; the "
                    f"step before it, {before.state_name} ({kind_of(before).noun}), cannot be "
                    "asked for one (a Glue job writes a manifest, which the Kotlin stage would "
                    "read as if it were the data). Put a Lambda step between them."
                )
        return problems

    def states(
        self, config: WorkflowConfiguration, index: int, next_state: str | None
    ) -> dict[str, dict[str, Any]]:
        """The Lambda task, then a Choice on the returned ``status``: ``FAILED`` ends the
        execution in a Fail state (``StageFailed``, the ``errorMessage`` as cause)."""
        step = require_kind(config, index, self, "KotlinKind.states")
        choice, failed, failed_bare, succeeded = failed_state_names(step.state_name)
        states = super().states(config, index, choice)
        states[step.state_name]["Comment"] = (
            f"Kotlin CEAP stage {step.state_name} (contract '{KOTLIN_CONTRACT}')"
        )
        status = "$.result.status"
        message = "$.result.errorMessage"
        is_failed = [
            {"Variable": status, "IsPresent": True},
            {"Variable": status, "IsString": True},
            {"Variable": status, "StringEquals": "FAILED"},
        ]
        states[choice] = {
            "Type": "Choice",
            "Comment": (
                f"Kotlin stage {step.state_name} reports failure by returning status FAILED"
            ),
            "Choices": [
                {
                    "And": [
                        *is_failed,
                        {"Variable": message, "IsPresent": True},
                        {"Variable": message, "IsString": True},
                    ],
                    "Next": failed,
                },
                {"And": is_failed, "Next": failed_bare},
            ],
            "Default": next_state if next_state is not None else succeeded,
        }
        states[failed] = {
            "Type": "Fail",
            "Comment": f"Kotlin stage {step.state_name} returned status FAILED",
            "Error": STAGE_FAILED,
            "CausePath": message,
        }
        states[failed_bare] = {
            "Type": "Fail",
            "Comment": f"Kotlin stage {step.state_name} returned status FAILED",
            "Error": STAGE_FAILED,
            "Cause": f"Kotlin stage {step.state_name} returned status FAILED without an "
            "errorMessage",
        }
        if next_state is None:
            states[succeeded] = {
                "Type": "Succeed",
                "Comment": f"Kotlin stage {step.state_name}, the last step, succeeded",
            }
        return states

    def contract(self, step: LambdaStep, workflow: LoadedWorkflow) -> StageContract:
        """Nothing is known of a Kotlin stage's models here (they are Kotlin classes): its edges
        are UNCHECKED, saying so, whatever its local stand-in declares."""
        from ._compat import ContractSide, StageContract

        why = (
            f"{step.state_name} is a Kotlin CEAP stage (contract '{KOTLIN_CONTRACT}'): its models "
            "are Kotlin classes"
        )
        return StageContract(
            ContractSide.unknown_because(
                f"{why}; it reads one JSON document, which the step before writes "
                "(outputFormat json)"
            ),
            ContractSide.unknown_because(f"{why}; it writes one JSON document"),
        )

    # -- local runs ---------------------------------------------------------------------------

    def package_source(self, step: LambdaStep, workflow: LoadedWorkflow) -> PackageSource | None:
        """Nothing: a Kotlin CEAP function is deployed with CEAP; its handler is a stand-in."""
        return None

    def local_problems(self, step: LambdaStep, workflow: LoadedWorkflow) -> list[str]:
        """A Kotlin step needs a stand-in: a Python callable or a recorded ``output.json``."""
        what = f"Kotlin step {step.state_name} (contract '{KOTLIN_CONTRACT}')"
        if step.handler is not None and step.recorded_output is not None:
            return [f"{what}: give handler or recorded_output as its stand-in, not both"]
        if step.recorded_output is not None:
            path = workflow.script_path(step.recorded_output)
            if not path.is_file():
                return [f"{what}: no recorded output at {path}"]
            try:
                orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                return [f"{what}: the recorded output {path} is not one JSON document ({exc.msg})"]
            return []
        if step.handler is None:
            return [
                f"{what} runs as a Kotlin Lambda in AWS and needs a stand-in to run locally: "
                "handler='module:callable' (a Python callable with the Kotlin stage's "
                "behaviour, called with its input and event) or recorded_output='path/to/"
                "output.json'"
            ]
        return [
            problem.replace("Lambda step", what, 1)
            for problem in super().local_problems(step, workflow)
        ]

    def local_attempt(self, run: LocalStepRun) -> Attempt:
        """The stand-in, run as the Kotlin stage would: it reads one JSON document and writes
        one; a failure is the stage returning ``FAILED`` (:class:`StageFailed`, not retried)."""
        from ._loader import load_handler

        step = require_kind(run.config, run.index, self, "KotlinKind")
        bucket = run.config.workflow_bucket
        key = output_key(run.execution_id, step.state_name)
        recorded = (
            run.workflow.script_path(step.recorded_output).read_bytes()
            if step.recorded_output is not None
            else None
        )
        stand_in: KotlinStandIn | None = (
            load_handler(step.handler) if step.handler is not None else None
        )

        def attempt(retry_count: int) -> tuple[int | None, int | None]:
            if recorded is not None:
                body = recorded
            else:
                assert stand_in is not None  # local_problems refused a step without a stand-in
                event = self._attempt_event(run, retry_count)
                data = _kotlin_input(run, event)
                try:
                    with run.stage_scope():
                        value = stand_in(data, event)
                    body = orjson.dumps(value)
                except Exception as exc:  # the Kotlin base handler catches everything
                    message = (
                        exc.detail
                        if isinstance(exc, StageFailed)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    raise StageFailed(
                        message, execution_id=run.execution_id, stage=step.state_name
                    ) from exc
            run.store.put(bucket, key, body, content_type="application/json")
            return run.measure(step.state_name)

        return attempt


def _kotlin_input(run: LocalStepRun, event: Mapping[str, Any]) -> Any:
    """What the Kotlin stage reads: ``initialData`` first, else the previous output as one JSON
    document. JSON Lines or a manifest there is an :class:`InputValidationError` (``readTree``
    would read the first record only, or the manifest as the data)."""
    previous = event.get("previousStage")
    if previous is None:
        return event.get("initialData")
    bucket = run.config.workflow_bucket
    key = output_key(run.execution_id, previous)
    stage = run.step.state_name
    obj = run.store.get(bucket, key)
    if obj is None:
        raise InputNotFoundError(
            f"the stage {previous!r} has no output",
            execution_id=run.execution_id,
            stage=stage,
            bucket=bucket,
            key=key,
        )
    fmt, value = decode(obj.body, obj.content_type)
    if fmt != "json":
        raise InputValidationError(
            f"a Kotlin CEAP stage reads output.json as one JSON document, and the stage "
            f"{previous!r} wrote {fmt} (it would read the first record only, or the manifest as "
            "if it were the data)",
            execution_id=run.execution_id,
            stage=stage,
            bucket=bucket,
            key=key,
        )
    return value


#: The registered Kotlin variant of the Lambda kind.
KOTLIN_KIND: Final = KotlinKind()
