"""Cold start where Lambda pays it: init, first and second invocation, as REPORT lines show them.

Every run is a fresh Python process shaped like a Lambda execution environment: the runtime's
environment variables (``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``,
``AWS_REGION``, ``AWS_LAMBDA_INITIALIZATION_TYPE``, ...), fake credentials, and
``AWS_ENDPOINT_URL`` pointing at moto's ``ThreadedMotoServer`` on 127.0.0.1 (run in this
process). A small runner standing in for the Runtime Interface Client times three phases apart:

- **init**: importing the handler module (what Lambda reports as ``Init Duration``);
- **first** and **second**: two invocations of the handler on a 200-record stage input (the
  ``Duration`` of the first and of a warm request).

Three handlers do the same job (GetObject, validate 200 orders, score them, dump, PutObject):

- ``stage``: a ceap-stage ``@stage`` (default store and observer: Powertools logs, EMF metrics;
  no X-Ray since no trace header is set);
- ``hand``: what AWS recommends writing by hand: a boto3 client and a Powertools ``Logger`` at
  module scope, one-pass pydantic ``validate_json`` / ``dump_json``, ``inject_lambda_context``;
- ``parser``: the same with Powertools' parser (``event_parser`` for the event, ``parse`` for the
  S3 body).

``stage gc`` is the same stage with ``CEAP_GC_FREEZE=false``: ceap-stage then leaves Python's
garbage collector alone in the init phase, as the hand-written handler does (by default it pauses
the collector while it creates the client and observer and then freezes what init made; the
difference between the two runs is what that saves).

A last run, ``stage snap-start``, initialises the stage with
``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`` and a stand-in ``snapshot_restore_py`` module: the
runner runs the registered before-snapshot hooks at the end of init (counted in init, as Lambda
counts them in the snapshot's creation), then the after-restore hooks (reported as ``restore``)
and the invocations. In Lambda a restored environment resumes from a memory image; here the same
process goes on, so what the hooks primed is still in place, as it would be.

Figures are medians over ``PROCESSES`` interleaved processes, in CPU milliseconds of the handler
process (``time.process_time``): on a shared machine the wall clock also counts the time a
process waits for a core. The wall-clock medians are printed beside them. The moto server's own
work is not in either (it runs in this process) and is the same for every handler.

Targets (from the cold-start issue):

- first invocation of the stage at most 1.2x the hand-written handler's + 5 ms;
- init + first invocation of the stage at most 1.0x the hand-written handler's.

``python -m bench coldstart``. Outside Lambda, the import-time budget (ceap-stage + a stage
definition at most 25 ms over boto3, pydantic and the models, and no client) is
``bench_runtime``'s ``cold start``.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import orjson

from bench._harness import ORDER_MODELS, Result, orders

RECORDS = 200
PROCESSES = 15
BUCKET = "ceap-bench-coldstart"
EXECUTION = "run-cold"
FIRST_MS_ALLOWANCE = 5.0
FIRST_RATIO = 1.2

_MODELS = "from pydantic import BaseModel\n" + ORDER_MODELS

#: The ceap-stage handler module.
STAGE_HANDLER = _MODELS + textwrap.dedent(
    """
    from ceap_stage import stage


    @stage(name="Score")
    def handler(orders: list[Order]) -> list[Scored]:
        return [score(o) for o in orders]
    """
)

#: AWS's recommended pattern, written by hand.
HAND_HANDLER = _MODELS + textwrap.dedent(
    """
    import boto3
    from aws_lambda_powertools import Logger
    from pydantic import TypeAdapter

    logger = Logger(service="score")
    s3 = boto3.client("s3")
    ORDERS = TypeAdapter(list[Order])
    SCORED = TypeAdapter(list[Scored])


    @logger.inject_lambda_context
    def handler(event, context):
        execution, bucket = event["executionId"], event["workflowBucket"]
        key = f"executions/{execution}/{event['previousStage']}/output.json"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        orders = ORDERS.validate_json(body)
        out = SCORED.dump_json([score(o) for o in orders])
        s3.put_object(
            Bucket=bucket,
            Key=f"executions/{execution}/Score/output.json",
            Body=out,
            ContentType="application/json",
        )
        logger.info("stage finished", records=len(orders), output_bytes=len(out))
        return {"status": "SUCCESS", "recordsProcessed": len(orders)}
    """
)

#: The same with Powertools' parser utility.
PARSER_HANDLER = _MODELS + textwrap.dedent(
    """
    import boto3
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.utilities.parser import event_parser, parse
    from pydantic import Field, TypeAdapter

    logger = Logger(service="score")
    s3 = boto3.client("s3")
    SCORED = TypeAdapter(list[Scored])


    class StageEvent(BaseModel):
        execution_id: str = Field(alias="executionId")
        previous_stage: str = Field(alias="previousStage")
        workflow_bucket: str = Field(alias="workflowBucket")


    @logger.inject_lambda_context
    @event_parser(model=StageEvent)
    def handler(event: StageEvent, context):
        key = f"executions/{event.execution_id}/{event.previous_stage}/output.json"
        body = s3.get_object(Bucket=event.workflow_bucket, Key=key)["Body"].read()
        orders = parse(event=body.decode(), model=list[Order])  # a str is validated as JSON
        out = SCORED.dump_json([score(o) for o in orders])
        s3.put_object(
            Bucket=event.workflow_bucket,
            Key=f"executions/{event.execution_id}/Score/output.json",
            Body=out,
            ContentType="application/json",
        )
        logger.info("stage finished", records=len(orders), output_bytes=len(out))
        return {"status": "SUCCESS", "recordsProcessed": len(orders)}
    """
)

# The runtime stand-in: only the standard library is imported before the handler module, as the
# Runtime Interface Client does. argv: module name, "snap" or "plain".
RUNNER = textwrap.dedent(
    """
    import gc, importlib, json, os, sys, time, types, uuid

    snap = sys.argv[2] == "snap"
    if snap:
        # A stand-in for the runtime's snapshot_restore_py: hooks are recorded, then run by us.
        hooks = types.ModuleType("snapshot_restore_py")
        hooks.before, hooks.after = [], []
        hooks.register_before_snapshot = lambda f, *a, **k: (hooks.before.append((f, a, k)), f)[1]
        hooks.register_after_restore = lambda f, *a, **k: (hooks.after.append((f, a, k)), f)[1]
        sys.modules["snapshot_restore_py"] = hooks


    class Context:
        function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        function_version = "$LATEST"
        invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        log_group_name = f"/aws/lambda/{function_name}"
        log_stream_name = "2026/11/30/[$LATEST]0"

        def __init__(self):
            self.aws_request_id = str(uuid.uuid4())

        def get_remaining_time_in_millis(self):
            return 60_000


    def clocks():
        return time.perf_counter(), time.process_time()


    def since(start):
        wall, cpu = clocks()
        return {"wall": (wall - start[0]) * 1000.0, "cpu": (cpu - start[1]) * 1000.0}


    event = {
        "executionId": os.environ["BENCH_EXECUTION"],
        "currentStage": "Score",
        "previousStage": "Load",
        "workflowBucket": os.environ["BENCH_BUCKET"],
    }
    figures = {}
    gc.collect()
    start = clocks()
    module = importlib.import_module(sys.argv[1])
    if snap:
        while hooks.before:  # last registered first, as the runtime does
            f, a, k = hooks.before.pop()
            f(*a, **k)
    figures["init"] = since(start)
    import botocore.client
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # get_objects() leaves out what a handler froze (CEAP_GC_FREEZE)
    figures["clients_after_init"] = sum(
        isinstance(o, botocore.client.BaseClient) for o in gc.get_objects()
    )
    if frozen:
        gc.freeze()
    if snap:
        start = clocks()
        for f, a, k in hooks.after:
            f(*a, **k)
        figures["restore"] = since(start)
    for phase in ("first", "second"):
        start = clocks()
        result = module.handler(event, Context())
        figures[phase] = since(start)
        assert result["recordsProcessed"] == int(os.environ["BENCH_RECORDS"]), result
    print("BENCH " + json.dumps(figures))
    """
)

#: name -> (handler module, runner mode, initialization type, extra environment)
VARIANTS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "hand": ("hand_handler", "plain", "on-demand", {}),
    "stage": ("stage_handler", "plain", "on-demand", {}),
    # The same stage with the init phase's garbage-collector freeze turned off.
    "stage gc": ("stage_handler", "plain", "on-demand", {"CEAP_GC_FREEZE": "false"}),
    "parser": ("parser_handler", "plain", "on-demand", {}),
    "stage snap-start": ("stage_handler", "snap", "snap-start", {}),
}


def lambda_environment(endpoint: str, initialization_type: str) -> dict[str, str]:
    """The variables a Lambda execution environment has (as far as these handlers can tell)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "score",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/score",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[$LATEST]0",
            "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": endpoint,
            "TZ": ":UTC",
        }
    )
    return env


def _run(task_root: Path, variant: str, env: dict[str, str]) -> dict[str, Any]:
    module, mode, init_type, extra = VARIANTS[variant]
    full_env = {**env, **extra, "AWS_LAMBDA_INITIALIZATION_TYPE": init_type}
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, module, mode],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=task_root,  # the handler modules' folder: sys.path[0] for "-c", as /var/task
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the {variant} process failed:\n{out.stderr[-3000:]}")
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("BENCH "))
    figures: dict[str, Any] = orjson.loads(line.removeprefix("BENCH "))
    return figures


def measure(endpoint: str, processes: int = PROCESSES) -> dict[str, dict[str, Any]]:
    """Median figures per variant: ``{variant: {phase: {"cpu": ms, "wall": ms}, ...}}``."""
    with tempfile.TemporaryDirectory(prefix="ceap-bench-task-") as tmp:
        task_root = Path(tmp)
        for name, source in (
            ("stage_handler", STAGE_HANDLER),
            ("hand_handler", HAND_HANDLER),
            ("parser_handler", PARSER_HANDLER),
        ):
            (task_root / f"{name}.py").write_text(source)
        env = lambda_environment(endpoint, "on-demand")
        env["BENCH_BUCKET"] = BUCKET
        env["BENCH_EXECUTION"] = EXECUTION
        env["BENCH_RECORDS"] = str(RECORDS)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p
        )
        for variant in VARIANTS:  # warm-up: bytecode caches and the OS file cache, alike
            _run(task_root, variant, env)
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for _ in range(processes):
            for variant in VARIANTS:
                runs[variant].append(_run(task_root, variant, env))
    medians: dict[str, dict[str, Any]] = {}
    for variant, rows in runs.items():
        phases = [p for p in ("init", "restore", "first", "second") if p in rows[0]]
        medians[variant] = {
            phase: {
                clock: statistics.median(r[phase][clock] for r in rows) for clock in ("cpu", "wall")
            }
            for phase in phases
        }
        medians[variant]["init+first"] = {
            clock: statistics.median(r["init"][clock] + r["first"][clock] for r in rows)
            for clock in ("cpu", "wall")
        }
        medians[variant]["clients_after_init"] = max(r["clients_after_init"] for r in rows)
    return medians


LABELS = {
    "stage": "@stage",
    "stage gc": "@stage CEAP_GC_FREEZE=false",
    "parser": "Powertools parser",
    "stage snap-start": "@stage SnapStart",
}


def results(medians: dict[str, dict[str, Any]]) -> list[Result]:
    """The printed figures (each phase against the hand-written handler's) and the targets."""
    hand = medians["hand"]
    out: list[Result] = []
    for variant, label in LABELS.items():
        figures = medians[variant]
        for phase in ("init", "restore", "first", "second", "init+first"):
            if phase not in figures:
                continue
            baseline = "first" if phase == "restore" else phase
            target = None
            if variant == "stage" and phase == "first":
                allowed = FIRST_RATIO * hand["first"]["cpu"] + FIRST_MS_ALLOWANCE
                target = allowed / hand["first"]["cpu"]
            elif variant == "stage" and phase == "init+first":
                target = 1.0
            note = f"wall {figures[phase]['wall']:.1f} vs {hand[baseline]['wall']:.1f} ms"
            if phase == "init":
                note += f"; boto3 clients after init: {figures['clients_after_init']} vs "
                note += f"{hand['clients_after_init']}"
            if phase == "restore":
                note += "; after-restore hooks, against the hand-written first invocation"
            out.append(
                Result(
                    f"{label}: {phase} vs hand-written",
                    figures[phase]["cpu"],
                    hand[baseline]["cpu"],
                    "ms",
                    target=target,
                    note=note,
                )
            )
    return out


def serve() -> tuple[Any, str]:
    """A moto S3 server on a free port of 127.0.0.1 holding the stage's input; (server, url)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    client.create_bucket(Bucket=BUCKET)
    client.put_object(
        Bucket=BUCKET,
        Key=f"executions/{EXECUTION}/Load/output.json",
        Body=orders(RECORDS, seed=7),
        ContentType="application/json",
    )
    return server, endpoint


def run() -> list[Result]:
    """Every figure."""
    server, endpoint = serve()
    try:
        return results(measure(endpoint))
    finally:
        server.stop()


if __name__ == "__main__":
    for result in run():
        print(result.line())
