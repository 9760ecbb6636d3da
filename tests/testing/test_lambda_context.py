"""FakeLambdaContext: every attribute of the real Lambda context, and a counting-down clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ceap_stage.testing import FakeLambdaContext
from ceap_stage.testing import _lambda as fake_module

# Attributes of awslambdaric.lambda_context.LambdaContext (the real runtime's context object).
REAL_ATTRIBUTES = (
    "aws_request_id",
    "log_group_name",
    "log_stream_name",
    "function_name",
    "memory_limit_in_mb",
    "function_version",
    "invoked_function_arn",
    "client_context",
    "identity",
    "tenant_id",
)


def test_it_has_every_attribute_of_the_real_context() -> None:
    from awslambdaric.lambda_context import LambdaContext

    real = LambdaContext("req-1", None, None, 0, "arn")
    fake = FakeLambdaContext()
    for name in REAL_ATTRIBUTES:
        assert hasattr(real, name)
        assert hasattr(fake, name)
    public_methods = {n for n in dir(real) if not n.startswith("_") and callable(getattr(real, n))}
    assert "get_remaining_time_in_millis" in public_methods
    assert callable(fake.get_remaining_time_in_millis)


def test_defaults_follow_the_function_name() -> None:
    fake = FakeLambdaContext(function_name="score", region="eu-west-1", account_id="111122223333")
    assert fake.invoked_function_arn == "arn:aws:lambda:eu-west-1:111122223333:function:score"
    assert fake.log_group_name == "/aws/lambda/score"
    assert fake.memory_limit_in_mb == 128
    assert fake.function_version == "$LATEST"
    assert fake.identity.cognito_identity_id is None
    assert fake.client_context is None


def test_each_context_has_its_own_request_id_unless_given() -> None:
    assert FakeLambdaContext().aws_request_id != FakeLambdaContext().aws_request_id
    assert FakeLambdaContext(aws_request_id="req-7").aws_request_id == "req-7"


def test_the_remaining_time_counts_down_from_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(fake_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    fake = FakeLambdaContext(timeout_ms=5_000)
    assert fake.get_remaining_time_in_millis() == 5_000
    now[0] += 1.25
    assert fake.get_remaining_time_in_millis() == 3_750
    now[0] += 10
    assert fake.get_remaining_time_in_millis() == 0


def test_the_execution_context_reads_it() -> None:
    from ceap_stage import ExecutionContext

    fake = FakeLambdaContext(aws_request_id="req-9", timeout_ms=60_000)
    ctx = ExecutionContext(
        execution_id="r", current_stage="S", previous_stage=None, workflow_bucket="b-1",
        lambda_context=fake,
    )  # fmt: skip
    assert ctx.aws_request_id == "req-9"
    remaining = ctx.remaining_time_ms()
    assert remaining is not None
    assert 0 < remaining <= 60_000
