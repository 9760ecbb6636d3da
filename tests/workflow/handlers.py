"""Handlers for runner tests: ones that record their events, fail, or fail transiently."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from ceap_stage import ExecutionContext, InputValidationError, TransientStorageError, stage
from ceap_stage._settings import resolve_settings

#: Every event a handler here received, in order (tests clear it).
EVENTS: list[dict[str, Any]] = []
#: (resolved store URL, CEAP_STORE in the environment) at each call of ``recording``.
STORE_URLS: list[tuple[str | None, str | None]] = []
#: How many attempts each (execution, stage) has made.
ATTEMPTS: dict[tuple[str, str], int] = {}
#: How many leading attempts of the flaky stage fail (tests set it).
FLAKY_FAILURES = {"count": 1}


class Item(BaseModel):
    id: int
    value: float


def _note(ctx: ExecutionContext) -> int:
    key = (ctx.execution_id, ctx.current_stage)
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    return ATTEMPTS[key]


def recording(event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
    """A plain Lambda handler: keeps the exact event and the store URL it resolves, then runs
    ``first``, which resolves the same settings (the runner's, in its ``using_settings`` block;
    the environment is not written)."""
    EVENTS.append(event)
    STORE_URLS.append((resolve_settings().store_url, os.environ.get("CEAP_STORE")))
    return first(event, lambda_context)


@stage
def first(records: list[dict[str, Any]], ctx: ExecutionContext) -> list[Item]:
    _note(ctx)
    return [Item(id=r["id"], value=float(r["value"])) for r in records]


@stage
def double(items: list[Item], ctx: ExecutionContext) -> list[Item]:
    _note(ctx)
    return [Item(id=i.id, value=i.value * 2) for i in items]


@stage
def flaky(items: list[Item], ctx: ExecutionContext) -> list[Item]:
    attempt = _note(ctx)
    if attempt <= FLAKY_FAILURES["count"]:
        raise TransientStorageError("S3 is throttling (simulated)", key=ctx.input_key)
    return items


@stage
def broken(items: list[Item], ctx: ExecutionContext) -> list[Item]:
    _note(ctx)
    raise InputValidationError("the input fails the model (simulated)", key=ctx.input_key)


def batch(*values: float) -> list[dict[str, Any]]:
    """An SQS batch as EventBridge Pipes sends it, one item per record."""
    import json

    return [
        {
            "messageId": f"m-{i}",
            "body": json.dumps({"id": i, "value": v}),
            "eventSource": "aws:sqs",
        }
        for i, v in enumerate(values)
    ]


#: How many times the failing Kotlin stand-in ran (tests reset it).
KOTLIN_CALLS = 0


def kotlin_like(data: Any, event: Any) -> Any:
    """A Kotlin stand-in: echoes the one JSON document it read."""
    assert event["executionId"]  # the event the state machine sends
    return data


def kotlin_failing(data: Any, event: Any) -> Any:
    """A Kotlin stand-in whose stage returns FAILED."""
    global KOTLIN_CALLS  # noqa: PLW0603 - a test probe
    KOTLIN_CALLS += 1
    raise ValueError("no candidates (simulated)")


def jsonl_writer(event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
    """A plain handler that ignores outputFormat and writes JSON Lines."""
    from ceap_stage._store import store_from_url

    store = store_from_url(resolve_settings().store_url)
    key = f"executions/{event['executionId']}/{event['currentStage']}/output.json"
    store.put(
        event["workflowBucket"], key, b'{"id": 1}\n{"id": 2}\n', content_type="application/x-ndjson"
    )
    return {"status": "SUCCESS"}


@stage(max_single_object_bytes=64, part_bytes=32)
def small_objects(records: list[dict[str, Any]], ctx: ExecutionContext) -> list[Item]:
    """``first`` with tiny size limits: any output of more than a record or two is a manifest."""
    return [Item(id=r["id"], value=float(r["value"])) for r in records]


#: While True, ``fixable`` fails as a bug would (tests flip it to "fix" the stage).
BUG = {"on": True}


@stage
def fixable(items: list[Item], ctx: ExecutionContext) -> list[Item]:
    """Fails with a ValueError while ``BUG["on"]``; then adds one to every value."""
    _note(ctx)
    if BUG["on"]:
        raise ValueError("the scoring rule divides by zero (simulated bug)")
    return [Item(id=i.id, value=i.value + 1) for i in items]


@stage
def fail_on_three(items: list[Item]) -> list[Item]:
    """Fails the shard (or the run) that holds the item with id 3."""
    if any(i.id == 3 for i in items):
        raise InputValidationError("item 3 is refused (simulated)")
    return items


@stage
def count_items(items: list[Item]) -> int:
    """Not record-wise: its output is one number (cannot be fanned out)."""
    return len(items)
