"""The stage I/O layer against the best hand-written handler, on S3 (moto's server) and locally.

A ``@stage`` over 100,000 orders (about 25 MB of JSON): read, validate, score, validate and write,
against a hand-written handler that does the same job the fastest way pydantic offers (one-pass
``TypeAdapter.validate_json`` of the body, ``dump_json`` of the result) with the same store calls
(``Store.get`` and ``Store.put``). Twice: on an ``S3Store`` talking to moto's HTTP server, and on
a ``LocalStore`` (whose JSON document has no Content-Type sidecar: it is recognised by content).
Each run is a fresh subprocess (rounds interleaved, medians of the invocation's wall time after
a warm-up invocation). Target: at most 1.10x on both. ``python -m bench io``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import textwrap

from bench._harness import Result, orders
from bench.bench_scale import _MODELS, _child

RECORDS = 100_000
ROUNDS = 5

_STORE = textwrap.dedent(
    """
    from ceap_stage import LocalStore, S3Store
    STORE = (LocalStore(os.environ["BENCH_ROOT"]) if os.environ.get("BENCH_ROOT")
             else S3Store(endpoint_url=ENDPOINT))
    """
)

_SDK = (
    _MODELS
    + _STORE
    + textwrap.dedent(
        """
    from ceap_stage import stage

    @stage(name="Score", store=STORE)
    def handler(orders: list[Order]) -> list[Scored]:
        return [score(o) for o in orders]

    handler(WARM)
    started = time.perf_counter()
    result = handler(EVENT)
    elapsed = time.perf_counter() - started
    assert result["recordsProcessed"] == int(os.environ["BENCH_RECORDS"]), result
    report(elapsed)
    """
    )
)

_HAND = (
    _MODELS
    + _STORE
    + textwrap.dedent(
        """
    ORDERS = TypeAdapter(list[Order])
    SCORED = TypeAdapter(list[Scored])

    def handler(event, context=None):
        execution, bucket = event["executionId"], event["workflowBucket"]
        key = f"executions/{execution}/{event['previousStage']}/output.json"
        orders = ORDERS.validate_json(STORE.get(bucket, key).body)
        out = SCORED.dump_json([score(o) for o in orders])
        STORE.put(bucket, f"executions/{execution}/Score/output.json", out,
                  content_type="application/json")
        return {"status": "SUCCESS", "recordsProcessed": len(orders)}

    handler(WARM)
    started = time.perf_counter()
    result = handler(EVENT)
    elapsed = time.perf_counter() - started
    assert result["recordsProcessed"] == int(os.environ["BENCH_RECORDS"]), result
    report(elapsed)
    """
    )
)


def _measure(env: dict[str, str]) -> tuple[float, float]:
    runs: dict[str, list[float]] = {"sdk": [], "hand": []}
    for _ in range(ROUNDS):
        for name, script in (("hand", _HAND), ("sdk", _SDK)):
            runs[name].append(_child(script, env)["seconds"])
    return statistics.median(runs["sdk"]) * 1000, statistics.median(runs["hand"]) * 1000


def run() -> list[Result]:
    import logging
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    from ceap_stage import LocalStore

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ["AWS_DEFAULT_REGION"] = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    body, warm = orders(RECORDS), orders(20, seed=2)
    mb = len(body) / 1e6
    bucket = "ceap-bench-io"
    env = {
        "BENCH_BUCKET": bucket,
        "BENCH_EXECUTION": "run-big",
        "BENCH_RECORDS": str(RECORDS),
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
    }
    results = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=bucket)
        for execution, data in (("run-big", body), ("warm", warm)):
            client.put_object(
                Bucket=bucket, Key=f"executions/{execution}/Load/output.json", Body=data,
                ContentType="application/json",
            )  # fmt: skip
        sdk, hand = _measure({**env, "BENCH_ENDPOINT": endpoint})
        results.append(
            Result(
                f"100k records ({mb:.0f} MB JSON), S3 via moto HTTP: wall time",
                sdk,
                hand,
                "ms",
                target=1.10,
                note="vs one-pass validate_json + dump_json, same store calls",
            )
        )
    finally:
        server.stop()
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(root)
        for execution, data in (("run-big", body), ("warm", warm)):
            store.put(bucket, f"executions/{execution}/Load/output.json", data)
        sdk, hand = _measure({**env, "BENCH_ENDPOINT": "", "BENCH_ROOT": root})
        results.append(
            Result(
                f"100k records ({mb:.0f} MB JSON), LocalStore (no sidecar): wall time",
                sdk,
                hand,
                "ms",
                target=1.10,
                note="vs one-pass validate_json + dump_json, same store calls",
            )
        )
    return results
