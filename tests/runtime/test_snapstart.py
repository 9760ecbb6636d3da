"""SnapStart: what is primed before the snapshot and renewed after restore (ceap_stage._snapstart).

In-process tests call the hooks directly; the end-to-end test imports a handler module in a fresh
process shaped like a SnapStart initialisation (the runtime's environment variables and a
stand-in ``snapshot_restore_py`` module), runs the hooks as the runtime does, and invokes the
handler against moto's server after the "restore".
"""

from __future__ import annotations

import json
import logging
import random
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ceap_stage import ExecutionContext, LocalStore, S3Store, StageHandler, _snapstart, stage
from ceap_stage._observability import Observer
from tests.conftest import FAKE_REGION, free_port, last_json, run_python, s3_client

from ._helpers import make_event


class Order(BaseModel):
    order_id: str
    amount: float


class Scored(BaseModel):
    order_id: str
    score: float


def _handler(store: Any, observer: Observer | None = None) -> StageHandler:
    @stage(name="Score", store=store, observer=observer)
    def handler(orders: list[Order], ctx: ExecutionContext) -> list[Scored]:
        return [Scored(order_id=o.order_id, score=o.amount * 2) for o in orders]

    return handler


def _stand_in(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A ``snapshot_restore_py`` that records registrations (function, args)."""
    recorded = types.SimpleNamespace(before=[], after=[])
    module = types.ModuleType("snapshot_restore_py")
    module.register_before_snapshot = lambda f, *a, **k: recorded.before.append((f, a))  # type: ignore[attr-defined]
    module.register_after_restore = lambda f, *a, **k: recorded.after.append((f, a))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", module)
    return recorded


def _unreachable_store() -> S3Store:
    """An S3 store whose endpoint nothing listens on: any request it makes fails."""
    from ceap_stage import RetryPolicy

    return S3Store(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name=FAKE_REGION,
        retry=RetryPolicy(max_attempts=1),
        connect_timeout=0.5,
    )


# -- register ---------------------------------------------------------------------------------


def test_register_hands_prime_and_renew_to_snapshot_restore_py(monkeypatch):
    recorded = _stand_in(monkeypatch)
    handler = _handler(LocalStore("/nonexistent-ceap"))
    assert _snapstart.register(handler.runtime) is True
    assert recorded.before == [(_snapstart.prime, (handler.runtime,))]
    assert recorded.after == [(_snapstart.renew, (handler.runtime,))]


def test_without_snapshot_restore_py_register_primes_at_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import raises ImportError
    store = _unreachable_store()
    handler = _handler(store)
    assert store._client is None
    assert _snapstart.register(handler.runtime) is False
    assert store._client is not None  # primed now, in the init phase


# -- prime ------------------------------------------------------------------------------------


def test_prime_loads_the_s3_client_logger_metrics_and_models_without_a_request():
    # The endpoint refuses connections: a request would fail the "s3" step.
    store = _unreachable_store()
    handler = _handler(store)
    assert _snapstart.prime(handler.runtime) == ["s3", "logger", "metrics", "models"]
    client = store._client
    assert client is not None
    # The operation models are loaded and cached on the client's service model.
    model = client.meta.service_model
    assert model.operation_model("GetObject") is model.operation_model("GetObject")


def test_prime_writes_nothing_and_skips_s3_for_a_local_store(tmp_path, capsys):
    handler = _handler(LocalStore(tmp_path))
    assert _snapstart.prime(handler.runtime) == ["logger", "metrics", "models"]
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    assert out == ""  # the log record and the metric document are formatted, never written


def test_prime_skips_metrics_when_they_are_off(monkeypatch, tmp_path):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    handler = _handler(LocalStore(tmp_path))
    assert _snapstart.prime(handler.runtime) == ["logger", "models"]


class _BrokenFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise RuntimeError("formatter broken")


class _BrokenLogger:
    registered_formatter = _BrokenFormatter()


class _ObserverWithBrokenLogger(Observer):
    logger = _BrokenLogger()


def test_a_failing_step_is_skipped_and_the_others_run(tmp_path):
    handler = _handler(LocalStore(tmp_path), observer=_ObserverWithBrokenLogger())
    done = _snapstart.prime(handler.runtime)
    assert "logger" not in done
    assert "models" in done


def test_a_model_that_refuses_the_samples_is_still_primed(tmp_path):
    @stage(store=LocalStore(tmp_path), observer=Observer())
    def one(order: Order) -> Scored:
        return Scored(order_id=order.order_id, score=order.amount)

    assert "models" in _snapstart.prime(one.runtime)


# -- renew ------------------------------------------------------------------------------------


def _pool(store: S3Store, endpoint: str) -> object:
    """The urllib3 connection pool the store's client uses for ``endpoint``."""
    manager = store.client._endpoint.http_session._manager  # type: ignore[attr-defined]
    return manager.connection_from_url(endpoint)


def test_renew_closes_the_pooled_connections_and_the_store_still_works(
    moto_server, moto_server_client, moto_bucket
):
    bucket = moto_bucket
    moto_server_client.put_object(
        Bucket=bucket,
        Key="executions/run-1/Load/output.json",
        Body=b'[{"order_id": "a", "amount": 2.5}]',
        ContentType="application/json",
    )
    store = S3Store(endpoint_url=moto_server, region_name=FAKE_REGION)
    handler = _handler(store, observer=Observer())
    event = make_event(execution_id="run-1", previous_stage="Load", bucket=bucket)
    handler(event)  # a connection to the server is now pooled
    before = _pool(store, moto_server)
    client = store.client

    _snapstart.renew(handler.runtime)

    assert store.client is client  # the client (and what priming loaded) is kept
    after = _pool(store, moto_server)
    assert after is not before  # a new pool: no connection from the snapshot is reused
    assert handler(event)["recordsProcessed"] == 1
    body = moto_server_client.get_object(Bucket=bucket, Key="executions/run-1/Score/output.json")
    assert json.loads(body["Body"].read()) == [{"order_id": "a", "score": 5.0}]


def test_renew_reseeds_random_and_sets_the_cold_start_flags_again(tmp_path):
    import aws_lambda_powertools.logging.logger as powertools_logger
    from aws_lambda_powertools.metrics.provider import cold_start as powertools_metrics

    import ceap_stage._observability as observability
    import ceap_stage._powertools as powertools

    handler = _handler(LocalStore(tmp_path))
    flag = getattr(observability, "_ColdStart", None) or powertools._ColdStart
    saved = (flag.value, powertools_logger.is_cold_start, powertools_metrics.is_cold_start)
    try:
        flag.value = False
        powertools_logger.is_cold_start = False
        powertools_metrics.is_cold_start = False
        random.seed(1234)
        state = random.getstate()

        _snapstart.renew(handler.runtime)

        assert random.getstate() != state
        assert flag.value is True
        assert powertools_logger.is_cold_start is True
        assert powertools_metrics.is_cold_start is True
    finally:
        flag.value, powertools_logger.is_cold_start, powertools_metrics.is_cold_start = saved


# -- end to end: a SnapStart initialisation in a fresh process --------------------------------

HANDLER_MODULE = textwrap.dedent(
    """
    from pydantic import BaseModel

    from ceap_stage import stage


    class Order(BaseModel):
        order_id: str
        amount: float


    class Scored(BaseModel):
        order_id: str
        score: float


    @stage(name="Score")
    def handler(orders: list[Order]) -> list[Scored]:
        return [Scored(order_id=o.order_id, score=o.amount * 2) for o in orders]
    """
)

# Plays the runtime: a stand-in snapshot_restore_py, the import (init), the before-snapshot hooks
# (last registered first), the after-restore hooks, then two invocations. Prints what happened.
RUNTIME_SCRIPT = textwrap.dedent(
    """
    import gc, json, os, sys, types

    calls, before, after = [], [], []
    hooks = types.ModuleType("snapshot_restore_py")
    hooks.register_before_snapshot = lambda f, *a, **k: (before.append((f, a, k)), f)[1]
    hooks.register_after_restore = lambda f, *a, **k: (after.append((f, a, k)), f)[1]
    sys.modules["snapshot_restore_py"] = hooks

    import stage_module  # the init phase

    store = stage_module.handler.runtime.store
    registered = [f.__name__ for f, _, _ in before] + [f.__name__ for f, _, _ in after]
    event = {"executionId": "run-1", "currentStage": "Score", "previousStage": "Load",
             "workflowBucket": os.environ["TEST_BUCKET"]}
    # Module-level code of the author's may use the store during init: a pooled connection.
    store.get(os.environ["TEST_BUCKET"], "executions/run-1/Load/output.json")
    manager = store.client._endpoint.http_session._manager
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    pool_before = manager.connection_from_url(endpoint)
    client_before = store.client
    frozen_at_init = gc.get_freeze_count()

    while before:
        f, a, k = before.pop()
        calls.append("before:" + f.__name__)
        f(*a, **k)
    frozen_after_prime = gc.get_freeze_count()
    for f, a, k in after:
        calls.append("after:" + f.__name__)
        f(*a, **k)

    results = [stage_module.handler(event, None) for _ in range(2)]
    calls.append("invoke")
    print("RESULT " + json.dumps({
        "registered": registered,
        "calls": calls,
        "same_client": store.client is client_before,
        # init froze what it made; priming freezes what it made too (CEAP_GC_FREEZE)
        "frozen_at_init": frozen_at_init > 0,
        "prime_froze": frozen_after_prime > frozen_at_init,
        "new_pool": manager.connection_from_url(endpoint) is not pool_before,
        "records": [r["recordsProcessed"] for r in results],
    }))
    """
)


def _lambda_environment(endpoint: str, initialization_type: str, bucket: str) -> dict[str, str]:
    import os

    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    return {
        **{k: v for k, v in os.environ.items() if k in keep},
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "AWS_LAMBDA_FUNCTION_NAME": "score",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_REGION": FAKE_REGION,
        "AWS_DEFAULT_REGION": FAKE_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "TEST_BUCKET": bucket,
    }


def _run_runtime(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    (tmp_path / "stage_module.py").write_text(HANDLER_MODULE)
    result: dict[str, Any] = last_json(run_python(RUNTIME_SCRIPT, env=env, cwd=tmp_path), "RESULT ")
    return result


@pytest.fixture
def staged_input(moto_server: str) -> str:
    client = s3_client(moto_server)
    bucket = f"ceap-snapstart-{free_port()}"
    client.create_bucket(Bucket=bucket)
    client.put_object(
        Bucket=bucket,
        Key="executions/run-1/Load/output.json",
        Body=b'[{"order_id": "a", "amount": 2.5}, {"order_id": "b", "amount": 4}]',
        ContentType="application/json",
    )
    return bucket


def test_a_snapstart_initialisation_primes_then_renews_then_invokes(
    tmp_path, moto_server, staged_input
):
    env = _lambda_environment(moto_server, "snap-start", staged_input)
    result = _run_runtime(tmp_path, env)
    assert result["registered"] == ["prime", "renew"]
    assert result["calls"] == ["before:prime", "after:renew", "invoke"]
    assert result["same_client"] is True
    assert result["new_pool"] is True
    assert (result["frozen_at_init"], result["prime_froze"]) == (True, True)
    assert result["records"] == [2, 2]
    client = s3_client(moto_server)
    body = client.get_object(Bucket=staged_input, Key="executions/run-1/Score/output.json")
    assert json.loads(body["Body"].read()) == [
        {"order_id": "a", "score": 5.0},
        {"order_id": "b", "score": 8.0},
    ]


@pytest.mark.parametrize("initialization_type", ["on-demand", "provisioned-concurrency"])
def test_other_initialisations_register_no_hooks(
    tmp_path, moto_server, staged_input, initialization_type
):
    env = _lambda_environment(moto_server, initialization_type, staged_input)
    result = _run_runtime(tmp_path, env)
    assert result["registered"] == []
    assert (result["frozen_at_init"], result["prime_froze"]) == (True, False)
    assert result["records"] == [2, 2]


def test_a_snapstart_initialisation_with_gc_freeze_false_freezes_nothing(
    tmp_path, moto_server, staged_input
):
    env = {**_lambda_environment(moto_server, "snap-start", staged_input), "CEAP_GC_FREEZE": "0"}
    result = _run_runtime(tmp_path, env)
    assert result["calls"] == ["before:prime", "after:renew", "invoke"]
    assert (result["frozen_at_init"], result["prime_froze"]) == (False, False)
    assert result["records"] == [2, 2]


def test_outside_lambda_no_hooks_are_registered(tmp_path, moto_server, staged_input):
    env = _lambda_environment(moto_server, "snap-start", staged_input)
    del env["AWS_LAMBDA_FUNCTION_NAME"]  # not in Lambda: the initialisation type means nothing
    result = _run_runtime(tmp_path, env)
    assert result["registered"] == []
    assert result["frozen_at_init"] is False  # the garbage collector is left alone outside Lambda
    assert result["records"] == [2, 2]


def test_the_docs_example_renews_its_own_state(monkeypatch):
    import re

    page = (Path(__file__).resolve().parents[2] / "docs" / "coldstart.md").read_text()
    (source,) = re.findall(r"```python\n# file: my_stage.py\n(.*?)```", page, re.DOTALL)
    recorded = _stand_in(monkeypatch)
    namespace: dict[str, Any] = {"__name__": "my_stage"}
    exec(compile(source, "docs/coldstart.md:my_stage.py", "exec"), namespace)
    before = namespace["INSTANCE_ID"]
    (renew_hook, args), *_ = recorded.after
    renew_hook(*args)
    assert namespace["INSTANCE_ID"] != before
    assert namespace["handler"].fn({"n": 1})["instance"] == namespace["INSTANCE_ID"]


def test_prime_refuses_no_snapshot_when_the_configuration_fails(monkeypatch):
    monkeypatch.setenv("CEAP_WORKFLOW_BUCKET", "Not_A_Bucket")
    handler = _handler(None)
    assert _snapstart.prime(handler.runtime) == []
    from ceap_stage import ContextResolutionError

    with pytest.raises(ContextResolutionError, match="configured workflow bucket is not a valid"):
        handler(make_event())


XRAY_PRIME = """
import json, sys
from ceap_stage import LocalStore, _snapstart, stage

@stage(name="Score", store=LocalStore(sys.argv[1]))
def handler(data: dict) -> dict:
    return data

before = "aws_xray_sdk" in sys.modules
done = _snapstart.prime(handler.runtime)
tracing = handler.runtime._resolved.observer.tracing
print(json.dumps({"before": before, "done": done, "after": "aws_xray_sdk" in sys.modules,
                  "built": tracing._recorder is not None}))
"""


def test_prime_builds_the_x_ray_tracer_before_the_snapshot(tmp_path):
    # Building Powertools' Tracer imports the X-Ray SDK (about 0.2 s of CPU): in the snapshot it
    # costs nothing on restore. A fresh process, since building it patches botocore.
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AWS_LAMBDA")}
    env.update({"CEAP_TRACER": "xray", "POWERTOOLS_METRICS_DISABLED": "true"})
    report = last_json(run_python(XRAY_PRIME, str(tmp_path), env=env))
    assert report == {
        "before": False,
        "done": ["logger", "models", "tracer"],
        "after": True,
        "built": True,
    }
