"""Many threads running stages of different executions against one moto server (with faults)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from pydantic import BaseModel

from ceap_stage import ExecutionContext, LocalStore, OutputConflictError, Store, stage
from ceap_stage._observability import Observer
from tests.conftest import create_bucket, s3_client
from tests.reliability.conftest import FaultProxy, proxied_store


class Reading(BaseModel):
    sensor: str
    value: int


class Tagged(BaseModel):
    sensor: str
    value: int
    execution_id: str


def stages(store: Store):
    @stage(name="Ingest", store=store, observer=Observer())
    def ingest(readings: list[Reading], ctx: ExecutionContext) -> list[Tagged]:
        return [Tagged(**r.model_dump(), execution_id=ctx.execution_id) for r in readings]

    @stage(name="Sum", store=store, observer=Observer())
    def total(tagged: list[Tagged], ctx: ExecutionContext) -> dict[str, int | str]:
        assert {t.execution_id for t in tagged} == {ctx.execution_id}
        return {"execution_id": ctx.execution_id, "total": sum(t.value for t in tagged)}

    return ingest, total


def readings(n: int) -> list[dict[str, int | str]]:
    return [{"sensor": f"s{n}-{i}", "value": n * 100 + i} for i in range(n % 5 + 1)]


def test_threads_running_many_executions_keep_outputs_apart(
    moto_server: str, fault_proxy: FaultProxy
):
    executions = 80
    bucket = create_bucket(s3_client(moto_server))
    fault_proxy.rate = 0.1  # and some faults, to shuffle the timing
    ingest, total = stages(proxied_store(fault_proxy))  # one handler (one client) per stage

    def run(n: int) -> tuple[dict[str, object], dict[str, object]]:
        base = {"executionId": f"exec-{n:03d}", "workflowBucket": bucket}
        first = ingest({**base, "currentStage": "Ingest", "initialData": readings(n)})
        second = total({**base, "currentStage": "Sum", "previousStage": "Ingest"})
        return first, second

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(executions)))

    client = s3_client(moto_server)
    keys = {
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    }
    expected = {
        f"executions/exec-{n:03d}/{name}/output.json"
        for n in range(executions)
        for name in ("Ingest", "Sum")
    }
    assert keys == expected  # none lost, none extra, none under another execution's prefix
    for n, (first, second) in enumerate(results):
        execution_id = f"exec-{n:03d}"
        assert first["executionId"] == second["executionId"] == execution_id
        assert first["recordsProcessed"] == len(readings(n))
        ingested = orjson.loads(
            client.get_object(Bucket=bucket, Key=f"executions/{execution_id}/Ingest/output.json")[
                "Body"
            ].read()
        )
        assert {r["execution_id"] for r in ingested} == {execution_id}
        assert [r["value"] for r in ingested] == [r["value"] for r in readings(n)]
        summed = orjson.loads(
            client.get_object(Bucket=bucket, Key=f"executions/{execution_id}/Sum/output.json")[
                "Body"
            ].read()
        )
        assert summed == {
            "execution_id": execution_id,
            "total": sum(int(r["value"]) for r in readings(n)),
        }
    assert fault_proxy.faults > 0


def test_write_once_lets_exactly_one_of_racing_writers_win(tmp_path: Path):
    # Twelve attempts of one stage race with different outputs; the conditional write lets one
    # through and every other gets OutputConflictError: no output is silently replaced.
    store = LocalStore(tmp_path)
    start = threading.Barrier(12)

    def attempt(n: int) -> str:
        @stage(name="Once", store=store, observer=Observer(), write_once=True)
        def once(data: int) -> dict[str, int]:
            start.wait()
            return {"attempt": n}

        try:
            once({"executionId": "race", "currentStage": "Once", "workflowBucket": "race-bucket",
                  "initialData": n})  # fmt: skip
        except OutputConflictError:
            return "conflict"
        return "won"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(attempt, range(12)))

    assert sorted(outcomes) == ["conflict"] * 11 + ["won"]
    written = store.get("race-bucket", "executions/race/Once/output.json")
    assert written is not None
    assert orjson.loads(written.body) == {"attempt": outcomes.index("won")}
