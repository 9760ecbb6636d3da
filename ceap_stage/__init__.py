"""ceap-stage: typed stages for data workflows on AWS Step Functions.

A stage reads the previous stage's output from S3, validates it, calls your function, writes
the output and returns a small pointer to Step Functions::

    from pydantic import BaseModel
    from ceap_stage import ExecutionContext, stage

    class Order(BaseModel):
        order_id: str
        amount: float

    @stage
    def handler(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
        return [o for o in orders if o.amount > 10]

Importing this package creates no AWS client and imports neither boto3, X-Ray nor the Powertools
tracer. A handler's configuration (:class:`Settings`, see :func:`resolve_settings`) is resolved
when the handler is created inside Lambda, and at its first invocation elsewhere.
"""

from typing import TYPE_CHECKING

from ._context import ExecutionContext
from ._errors import (
    CeapStageError,
    ConfigurationError,
    ContextResolutionError,
    HandlerDefinitionError,
    InputNotFoundError,
    InputValidationError,
    OutputConflictError,
    OutputValidationError,
    StageFailed,
    StorageError,
    TransientStorageError,
)
from ._handler import StageHandler, WorkflowLambdaHandler, stage
from ._settings import Settings, resolve_settings, using_settings
from ._store import LocalStore, OpenedObject, PutResult, Store, StoredObject

if TYPE_CHECKING:  # imported lazily at run time, see __getattr__ below
    from ._s3 import RetryPolicy, S3Store
    from ._sqs import SqsMessageAttribute, SqsRecord

__version__ = "0.1.0"

__all__ = [
    "CeapStageError",
    "ConfigurationError",
    "ContextResolutionError",
    "ExecutionContext",
    "HandlerDefinitionError",
    "InputNotFoundError",
    "InputValidationError",
    "LocalStore",
    "OpenedObject",
    "OutputConflictError",
    "OutputValidationError",
    "PutResult",
    "RetryPolicy",
    "S3Store",
    "Settings",
    "SqsMessageAttribute",
    "SqsRecord",
    "StageFailed",
    "StageHandler",
    "StorageError",
    "Store",
    "StoredObject",
    "TransientStorageError",
    "WorkflowLambdaHandler",
    "resolve_settings",
    "stage",
    "using_settings",
]


def __getattr__(name: str) -> object:
    # S3Store is imported on first use: its module is light, but keeping it out of the import
    # path keeps botocore out of processes that only use a LocalStore.
    if name in ("S3Store", "RetryPolicy"):
        from . import _s3

        return getattr(_s3, name)
    # The SQS record models: pydantic models cost cold-start time; a stage that reads no queue
    # never defines them.
    if name in ("SqsRecord", "SqsMessageAttribute"):
        from . import _sqs

        return getattr(_sqs, name)
    raise AttributeError(f"module 'ceap_stage' has no attribute {name!r}")
