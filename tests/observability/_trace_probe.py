"""Run one stage in a fresh interpreter and report, as JSON on the last line, what X-Ray saw.

Usage: ``python _trace_probe.py MODE [fail]`` where MODE is ``imports`` (touch nothing of
X-Ray; report whether the stage imported it) or ``capture`` (install an in-memory emitter and
report the emitted subsegments); ``fail`` makes the stage raise. The environment decides
whether tracing is on.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import orjson
from pydantic import BaseModel

from ceap_stage import ExecutionContext, stage


class Order(BaseModel):
    order_id: str
    amount: float


class MemoryEmitter:
    """An X-Ray emitter that keeps every entity it is asked to send."""

    def __init__(self) -> None:
        self.entities: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.entities.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address: str | None) -> None:
        pass

    @property
    def ip(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return 2000


def main() -> None:
    mode = sys.argv[1]
    emitter = MemoryEmitter()
    if mode == "capture":
        from aws_xray_sdk.core import xray_recorder

        xray_recorder.configure(emitter=emitter)

    from moto import mock_aws

    with mock_aws():
        from ceap_stage.testing import FakeLambdaContext
        from ceap_stage.testing._moto import MotoS3Store

        store = MotoS3Store("trace-bucket", region_name="us-east-1")
        store.client.create_bucket(Bucket="trace-bucket")
        store.client.put_object(
            Bucket="trace-bucket",
            Key="executions/run-t/Filter/output.json",
            Body=orjson.dumps([{"order_id": "a", "amount": 3}]),
            ContentType="application/json",
        )
        entities_before = len(emitter.entities)

        fail = sys.argv[2:] == ["fail"]

        @stage(store=store)
        def score(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
            if fail:
                raise ValueError("the stage failed")
            return orders

        event = {
            "executionId": "run-t",
            "currentStage": "Score",
            "previousStage": "Filter",
            "workflowBucket": "trace-bucket",
        }
        with contextlib.suppress(ValueError):
            score(event, FakeLambdaContext())
    report = {
        "xray_imported": "aws_xray_sdk" in sys.modules,
        "entities": emitter.entities[entities_before:],
    }
    sys.stdout.write("\n" + json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
