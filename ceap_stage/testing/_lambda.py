"""A stand-in for the context object AWS Lambda passes a handler."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakeCognitoIdentity", "FakeLambdaContext"]


@dataclass
class FakeCognitoIdentity:
    """The ``identity`` attribute of a Lambda context (empty outside mobile SDK invokes).

    Example:
        >>> FakeCognitoIdentity(cognito_identity_id="eu-west-1:abc").cognito_identity_id
        'eu-west-1:abc'
    """

    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


@dataclass
class FakeLambdaContext:
    """A Lambda context object for tests: every attribute of the real one.

    :meth:`get_remaining_time_in_millis` counts down from ``timeout_ms`` since the object was
    created, as the real one counts down to the function's deadline.

    Args:
        function_name: The function's name.
        memory_limit_in_mb: The configured memory.
        timeout_ms: The function timeout the remaining time counts down from.
        aws_request_id: The request id (default: a new UUID per context).
        function_version: The version executed.
        region: The region used in the ARN and log group.
        account_id: The account used in the ARN.
        invoked_function_arn: The ARN used to invoke (default: built from the above).
        log_group_name: The CloudWatch log group (default: ``/aws/lambda/{function_name}``).
        log_stream_name: The CloudWatch log stream.
        identity: The Cognito identity (an empty one by default).
        client_context: The mobile client context (None unless given).
        tenant_id: The tenant id of a multi-tenant invoke (None unless given).

    Example:
        >>> ctx = FakeLambdaContext(function_name="score", timeout_ms=3_000)
        >>> ctx.invoked_function_arn
        'arn:aws:lambda:us-east-1:123456789012:function:score'
        >>> 0 < ctx.get_remaining_time_in_millis() <= 3_000
        True
    """

    function_name: str = "ceap-stage-test"
    memory_limit_in_mb: int = 128
    timeout_ms: int = 30_000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "2026/01/01/[$LATEST]00000000000000000000000000000000"
    identity: FakeCognitoIdentity = field(default_factory=FakeCognitoIdentity)
    client_context: Any = None
    tenant_id: str | None = None
    _deadline: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
            )
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (fake) deadline; never negative."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
