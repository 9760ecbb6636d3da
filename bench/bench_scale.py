"""Scale: large payloads through a stage against moto's S3 server over HTTP.

- ``100k records``: 100,000 orders (about 25 MB of JSON) read, validated, scored and written by a
  ``@stage`` (``S3Store``, the default Powertools observer) against a hand-written handler doing
  the same job with boto3 + orjson + pydantic ``TypeAdapter``. Each run is a fresh subprocess
  (rounds interleaved, medians): wall time of the invocation (after a small warm-up invocation
  that creates clients), and the process's peak RSS (``VmHWM``; ``ru_maxrss`` would include the
  parent's RSS at fork on Linux).
  Targets: wall time at most 1.10x, peak RSS at most 1.5x.
- ``vs Powertools parser``: the same job written the usual way with
  ``aws_lambda_powertools.utilities.parser`` (``@event_parser`` for the event, ``parse`` for the
  S3 body). The ratio is reported; the goal is below 1.
- ``streaming 1M records``: 1,000,000 JSON Lines records (about 80 MB) through an
  ``Iterator[X] -> Iterator[Y]`` stage; target: peak RSS under 150 MB (reported against 150 MB).

The moto server runs in this process; only the handlers run in the subprocesses, so their RSS is
theirs alone. ``python -m bench scale``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap

import orjson

from bench._harness import ORDER_MODELS, Result, orders

RECORDS = 100_000
STREAM_RECORDS = 1_000_000
ROUNDS = 3
STREAM_RSS_LIMIT_MB = 150.0

_MODELS = (
    textwrap.dedent(
        """
    import json, os, resource, sys, time
    from collections.abc import Iterator
    from pydantic import BaseModel, TypeAdapter
    """
    )
    + ORDER_MODELS
    + textwrap.dedent(
        """
    ENDPOINT, BUCKET = os.environ["BENCH_ENDPOINT"], os.environ["BENCH_BUCKET"]
    WARM = {"executionId": "warm", "currentStage": "Score", "previousStage": "Load",
            "workflowBucket": BUCKET}
    EVENT = {**WARM, "executionId": os.environ["BENCH_EXECUTION"]}

    def peak_rss_mb() -> float:
        # VmHWM is this process image's own peak. ru_maxrss is not: Linux carries the parent's
        # RSS at fork over exec into it, and the parent here holds the moto server.
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def report(elapsed: float) -> None:
        print("BENCH " + json.dumps({"seconds": elapsed, "peak_mb": peak_rss_mb()}))
    """
    )
)

_SDK = _MODELS + textwrap.dedent(
    """
    from ceap_stage import S3Store, stage

    @stage(name="Score", store=S3Store(endpoint_url=ENDPOINT))
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

_HAND_WRITTEN = _MODELS + textwrap.dedent(
    """
    import boto3, orjson

    s3 = boto3.client("s3", endpoint_url=ENDPOINT)
    ORDERS = TypeAdapter(list[Order])
    SCORED = TypeAdapter(list[Scored])

    def handler(event, context=None):
        execution, bucket = event["executionId"], event["workflowBucket"]
        key = f"executions/{execution}/{event['previousStage']}/output.json"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        orders = ORDERS.validate_python(orjson.loads(body))
        out = SCORED.dump_json([score(o) for o in orders])
        s3.put_object(Bucket=bucket, Key=f"executions/{execution}/Score/output.json",
                      Body=out, ContentType="application/json")
        return {"status": "SUCCESS", "recordsProcessed": len(orders)}

    handler(WARM)
    started = time.perf_counter()
    result = handler(EVENT)
    elapsed = time.perf_counter() - started
    assert result["recordsProcessed"] == int(os.environ["BENCH_RECORDS"]), result
    report(elapsed)
    """
)

_POWERTOOLS = _MODELS + textwrap.dedent(
    """
    import boto3
    from pydantic import Field
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.utilities.parser import event_parser, parse

    logger = Logger(service="bench")
    s3 = boto3.client("s3", endpoint_url=ENDPOINT)
    SCORED = TypeAdapter(list[Scored])

    class StageEvent(BaseModel):
        execution_id: str = Field(alias="executionId")
        current_stage: str = Field(alias="currentStage")
        previous_stage: str = Field(alias="previousStage")
        workflow_bucket: str = Field(alias="workflowBucket")

    @event_parser(model=StageEvent)
    def handler(event: StageEvent, context=None):
        key = f"executions/{event.execution_id}/{event.previous_stage}/output.json"
        body = s3.get_object(Bucket=event.workflow_bucket, Key=key)["Body"].read()
        orders = parse(event=body.decode(), model=list[Order])  # a str is validated as JSON
        out = SCORED.dump_json([score(o) for o in orders])
        s3.put_object(Bucket=event.workflow_bucket,
                      Key=f"executions/{event.execution_id}/Score/output.json",
                      Body=out, ContentType="application/json")
        logger.info("stage finished", records=len(orders))
        return {"status": "SUCCESS", "recordsProcessed": len(orders)}

    class Ctx:  # event_parser needs a Lambda context argument
        function_name = "bench"

    handler(WARM, Ctx())
    started = time.perf_counter()
    result = handler(EVENT, Ctx())
    elapsed = time.perf_counter() - started
    assert result["recordsProcessed"] == int(os.environ["BENCH_RECORDS"]), result
    report(elapsed)
    """
)

_STREAMING = _MODELS + textwrap.dedent(
    """
    from ceap_stage import S3Store, stage

    class Rec(BaseModel):
        n: int
        customer_id: str
        amount: float
        tags: list[str]

    class Out(BaseModel):
        n: int
        customer_id: str
        score: float

    @stage(name="Score", store=S3Store(endpoint_url=ENDPOINT))
    def handler(records: Iterator[Rec]) -> Iterator[Out]:
        for r in records:
            yield Out(n=r.n, customer_id=r.customer_id, score=r.amount * (1 + len(r.tags)))

    started = time.perf_counter()
    result = handler(EVENT)
    elapsed = time.perf_counter() - started
    assert result["recordsProcessed"] == int(os.environ["BENCH_RECORDS"]), result
    assert result["output"]["format"] == "manifest", result
    report(elapsed)
    """
)


def _stream_records(count: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {"n": n, "customer_id": f"c-{n % 99991:06d}", "amount": n % 1000 / 7, "tags": ["a"]}
        )
        + b"\n"
        for n in range(count)
    )


def _child(script: str, env: dict[str, str]) -> dict[str, float]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CEAP_", "POWERTOOLS_"))}
    full_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=full_env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{out.stderr[-3000:]}")
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("BENCH "))
    result: dict[str, float] = orjson.loads(line.removeprefix("BENCH "))
    return result


def run() -> list[Result]:
    import boto3
    from moto.server import ThreadedMotoServer

    # Quiet, fake AWS for the server and the subprocesses (never real AWS).
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ["AWS_DEFAULT_REGION"] = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    import logging
    import socket

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        bucket = "ceap-bench-scale"
        client.create_bucket(Bucket=bucket)
        body = orders(RECORDS)
        client.put_object(
            Bucket=bucket, Key="executions/run-big/Load/output.json", Body=body,
            ContentType="application/json",
        )  # fmt: skip
        client.put_object(
            Bucket=bucket, Key="executions/warm/Load/output.json", Body=orders(20, seed=2),
            ContentType="application/json",
        )  # fmt: skip
        env = {
            "BENCH_ENDPOINT": endpoint,
            "BENCH_BUCKET": bucket,
            "BENCH_EXECUTION": "run-big",
            "BENCH_RECORDS": str(RECORDS),
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        }
        runs: dict[str, list[dict[str, float]]] = {"sdk": [], "hand": [], "powertools": []}
        scripts = {"sdk": _SDK, "hand": _HAND_WRITTEN, "powertools": _POWERTOOLS}
        for _ in range(ROUNDS):
            for name in ("hand", "sdk", "powertools"):
                runs[name].append(_child(scripts[name], env))

        def median(name: str, field: str) -> float:
            return statistics.median(r[field] for r in runs[name])

        mb = len(body) / 1e6
        results = [
            Result(
                f"100k records ({mb:.0f} MB JSON) via moto HTTP: wall time",
                median("sdk", "seconds") * 1000,
                median("hand", "seconds") * 1000,
                "ms",
                target=1.10,
                note="vs hand-written boto3 + orjson + pydantic",
            ),
            Result(
                "100k records: peak RSS",
                median("sdk", "peak_mb"),
                median("hand", "peak_mb"),
                "MB",
                target=1.5,
                note="vs hand-written",
            ),
            Result(
                "100k records: wall time vs Powertools parser handler",
                median("sdk", "seconds") * 1000,
                median("powertools", "seconds") * 1000,
                "ms",
                note="goal < 1.00x",
            ),
            Result(
                "100k records: peak RSS vs Powertools parser handler",
                median("sdk", "peak_mb"),
                median("powertools", "peak_mb"),
                "MB",
            ),
        ]

        stream_body = _stream_records(STREAM_RECORDS)
        client.put_object(
            Bucket=bucket, Key="executions/run-stream/Load/output.json", Body=stream_body,
            ContentType="application/x-ndjson",
        )  # fmt: skip
        del stream_body
        streamed = _child(
            _STREAMING,
            {**env, "BENCH_EXECUTION": "run-stream", "BENCH_RECORDS": str(STREAM_RECORDS)},
        )
        results.append(
            Result(
                f"streaming {STREAM_RECORDS:,} JSON Lines records: peak RSS "
                f"({streamed['seconds']:.1f} s)",
                streamed["peak_mb"],
                STREAM_RSS_LIMIT_MB,
                "MB",
                target=1.0,
                note="against the 150 MB limit",
            )
        )
        return results
    finally:
        server.stop()
