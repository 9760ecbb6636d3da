"""The error tree of ceap-stage (docs/contract.md section 5).

Step Functions matches ``Retry`` and ``Catch`` on the exception's class name, so these names are a
public, stable contract::

    CeapStageError
    ├── HandlerDefinitionError      unusable signature/models (at import, never at run time)
    ├── ConfigurationError          a setting (argument or environment variable) is unusable
    ├── ContextResolutionError      the event breaks the wire contract        (no retry)
    ├── InputNotFoundError          the previous stage's output does not exist (no retry)
    ├── InputValidationError        input is not JSON / JSON Lines / manifest or fails the model
    ├── OutputValidationError       the stage returned something that fails the output model
    ├── OutputConflictError         ``write_once``: a different output already exists
    ├── StageFailed                 a Kotlin CEAP stage returned ``status: FAILED`` (no retry)
    ├── StorageError                S3 refused for a lasting reason            (no retry)
    │   └── TransientStorageError   throttling / 5xx / timeouts after retries  (retry)
    ├── PackagingError              ``ceap-stage package``: a workflow cannot be packaged
    │   └── LayerBuildError         the Lambda layer cannot be built (pip, a dependency)
    │       └── BudgetExceededError a layer zip is over its size budget
    └── DeployError                 ``ceap-stage deploy``: AWS refused (credentials, a bucket,
                                    a stack resource)

The last three never reach Step Functions: they are raised on a developer's machine or in CI.

Every message names the execution id, the stage and the S3 key it concerns, and never any payload
content: errors end up in Step Functions' ``Cause`` field, in logs and in alarms.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "CeapStageError",
    "ConfigurationError",
    "ContextResolutionError",
    "DeployError",
    "HandlerDefinitionError",
    "InputNotFoundError",
    "InputValidationError",
    "LayerBuildError",
    "OutputConflictError",
    "OutputValidationError",
    "PackagingError",
    "StageFailed",
    "StorageError",
    "TransientStorageError",
]


class CeapStageError(Exception):
    """Root of every error ceap-stage raises.

    Args:
        detail: What went wrong, in words. Never payload content.
        execution_id: The execution the error concerns, when known.
        stage: The stage the error concerns, when known.
        bucket: The S3 bucket concerned, when any.
        key: The S3 key concerned, when any.

    The facts are kept as attributes and rendered into ``str(error)``:

    >>> err = InputNotFoundError("input does not exist", execution_id="run-1", stage="Score",
    ...                          bucket="b", key="executions/run-1/Filter/output.json")
    >>> print(err)  # doctest: +NORMALIZE_WHITESPACE
    input does not exist [execution_id=run-1, stage=Score,
        key=s3://b/executions/run-1/Filter/output.json]
    >>> err.retryable
    False
    """

    #: Whether Step Functions should retry a stage that failed with this error.
    retryable: bool = False

    def __init__(
        self,
        detail: str,
        *,
        execution_id: str | None = None,
        stage: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.execution_id = execution_id
        self.stage = stage
        self.bucket = bucket
        self.key = key

    def add_context(
        self,
        *,
        execution_id: str | None = None,
        stage: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
    ) -> None:
        """Fill in the facts a lower layer did not know (values already set are kept)."""
        self.execution_id = self.execution_id or execution_id
        self.stage = self.stage or stage
        self.bucket = self.bucket or bucket
        self.key = self.key or key

    @property
    def location(self) -> str | None:
        """The object concerned as an ``s3://bucket/key`` URL (or the bare key)."""
        if self.key is None:
            return None
        return f"s3://{self.bucket}/{self.key}" if self.bucket else self.key

    def __str__(self) -> str:
        facts = []
        if self.execution_id is not None:
            facts.append(f"execution_id={self.execution_id}")
        if self.stage is not None:
            facts.append(f"stage={self.stage}")
        if self.location is not None:
            facts.append(f"key={self.location}")
        return f"{self.detail} [{', '.join(facts)}]" if facts else self.detail

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the facts across pickling (multiprocessing, Spark executors).
        facts = {
            "execution_id": self.execution_id,
            "stage": self.stage,
            "bucket": self.bucket,
            "key": self.key,
        }
        return (_rebuild, (type(self), self.detail, facts))


def _rebuild(
    cls: type[CeapStageError], detail: str, facts: dict[str, str | None]
) -> CeapStageError:
    return cls(detail, **facts)


class HandlerDefinitionError(CeapStageError, TypeError):
    """A handler's signature or models are unusable.

    Raised when ``@stage`` decorates a function or a ``WorkflowLambdaHandler`` subclass is
    created, never while a stage runs.
    """


class ConfigurationError(CeapStageError, ValueError):
    """A setting is unusable: an argument or environment variable with a value it cannot take.

    Raised when settings are resolved (see ``ceap_stage._settings``), before any S3 call.
    """


class ContextResolutionError(CeapStageError):
    """The event does not follow the wire contract (docs/contract.md section 2).

    Raised before any S3 call: missing or mistyped fields, identifiers that break the rules, or a
    bucket other than the one the function is pinned to.
    """


class InputNotFoundError(CeapStageError):
    """The previous stage's output does not exist."""


class InputValidationError(CeapStageError):
    """The input is not valid JSON / JSON Lines / manifest, or fails the input model."""


class OutputValidationError(CeapStageError):
    """The stage's function returned something that fails the output model."""


class OutputConflictError(CeapStageError):
    """``write_once`` is on and a different ``output.json`` already exists for this stage."""


class StageFailed(CeapStageError):
    """A stage that is not ceap-stage (a Kotlin CEAP stage) returned ``status: FAILED``.

    The generated state machine fails the execution with this error name and the stage's
    ``errorMessage`` as the cause; the local runner raises it when a Kotlin step's stand-in
    fails. Not retried: the Kotlin base handler catches every exception, so a ``FAILED`` result
    says nothing about whether a retry could succeed.

    Example:
        >>> print(StageFailed("no candidates for program p-1", stage="Score"))
        no candidates for program p-1 [stage=Score]
    """


class StorageError(CeapStageError):
    """The store refused for a lasting reason (access denied, no such bucket, ...)."""


class TransientStorageError(StorageError):
    """The store is throttling, failing (5xx) or timing out, even after retries.

    The only error Step Functions should retry.
    """

    retryable = True


class PackagingError(CeapStageError):
    """A workflow cannot be packaged: a handler does not import, a Glue script is missing, ...

    The message names what to fix.
    """


class LayerBuildError(PackagingError):
    """The Lambda layer cannot be built as asked (pip failed, a dependency is missing, ...)."""


class BudgetExceededError(LayerBuildError):
    """A layer zip is over the size budget; it is not written to the output folder."""


class DeployError(CeapStageError):
    """AWS refused a deployment step: credentials, the artifacts bucket, a stack resource.

    The message names the resource (or setting) and AWS's reason.
    """
