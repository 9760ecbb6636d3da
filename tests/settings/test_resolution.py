"""Settings resolved once: one order (argument > scope > environment > default), nothing written
to ``os.environ``, every environment read in ``_settings``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ceap_stage import ConfigurationError, LocalStore, stage
from ceap_stage._s3 import S3Store
from ceap_stage._settings import (
    DEFAULT_SPARK_MASTER,
    Settings,
    lambda_trace_id,
    resolve_settings,
    using_settings,
)
from ceap_stage._store import store_for
from ceap_stage.testing import FakeLambdaContext, build_event

PACKAGE = Path(__file__).resolve().parents[2] / "ceap_stage"


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = re.compile(r"os\.environ|getenv")
    found = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if readers.search(path.read_text(encoding="utf-8"))
    )
    # The testing kit's moto helper sets fake credentials for the tests it serves.
    assert found == ["_settings.py", "testing/_moto.py"]


def test_explicit_beats_environment_beats_default() -> None:
    env = {"CEAP_STORE": "file:///env", "CEAP_SPARK_MASTER": "local[3]"}
    assert resolve_settings(environ=env).store_url == "file:///env"
    assert resolve_settings(environ=env, store_url="file:///arg").store_url == "file:///arg"
    assert resolve_settings(environ={}).store_url is None
    assert resolve_settings(environ=env).spark_master == "local[3]"
    assert resolve_settings(environ={}).spark_master == DEFAULT_SPARK_MASTER == "local[*]"


def test_spark_submit_keeps_its_own_master() -> None:
    assert resolve_settings(environ={"PYSPARK_GATEWAY_PORT": "4040"}).spark_master is None
    env = {"PYSPARK_GATEWAY_PORT": "4040", "CEAP_SPARK_MASTER": "local[1]"}
    assert resolve_settings(environ=env).spark_master == "local[1]"


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("0", False), ("OFF", False), ("true", True)]
)
def test_gc_freeze_is_on_unless_the_environment_or_an_argument_says_otherwise(
    value: str, expected: bool
) -> None:
    assert resolve_settings(environ={}).gc_freeze is True
    assert resolve_settings(environ={"CEAP_GC_FREEZE": value}).gc_freeze is expected
    assert resolve_settings(environ={"CEAP_GC_FREEZE": value}, gc_freeze=True).gc_freeze is True
    with using_settings(Settings(gc_freeze=False)):
        assert resolve_settings().gc_freeze is False


def test_a_gc_freeze_that_is_not_a_boolean_is_refused_with_its_value() -> None:
    with pytest.raises(ConfigurationError, match=r"CEAP_GC_FREEZE must be true or false \(or 1/0"):
        resolve_settings(environ={"CEAP_GC_FREEZE": "x"})


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "10"])
def test_a_log_level_python_knows_is_kept_as_given(level: str) -> None:
    assert resolve_settings(environ={"POWERTOOLS_LOG_LEVEL": level}).log_level == level


def test_a_log_level_python_does_not_know_is_refused_naming_its_source() -> None:
    expected = "POWERTOOLS_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not"
    with pytest.raises(ConfigurationError, match=expected):
        resolve_settings(environ={"POWERTOOLS_LOG_LEVEL": "LOUD"})
    with pytest.raises(ConfigurationError, match="log_level must be one of"):
        resolve_settings(environ={}, log_level="LOUD")
    with (
        pytest.raises(ConfigurationError, match="log_level must be one of"),
        using_settings(Settings()),
    ):
        resolve_settings(log_level="LOUD")


def test_caller_defaults_sit_below_the_environment() -> None:
    quiet = Settings(log_level="WARNING", metrics_enabled=False)
    assert resolve_settings(environ={}, defaults=quiet).log_level == "WARNING"
    assert resolve_settings(environ={}, defaults=quiet).metrics_enabled is False
    loud = {"POWERTOOLS_LOG_LEVEL": "DEBUG", "POWERTOOLS_METRICS_DISABLED": "false"}
    resolved = resolve_settings(environ=loud, defaults=quiet)
    assert (resolved.log_level, resolved.metrics_enabled) == ("DEBUG", True)


def test_using_settings_replaces_the_environment_in_its_block_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CEAP_STORE", "file:///from-env")
    before = dict(os.environ)
    with using_settings(Settings(store_url="file:///scoped", log_level="ERROR")):
        assert resolve_settings().store_url == "file:///scoped"
        assert resolve_settings(store_url="file:///arg").store_url == "file:///arg"
        assert dict(os.environ) == before
        with pytest.raises(ConfigurationError, match="tracer must be one of"):
            resolve_settings(tracer="zipkin")
    assert resolve_settings().store_url == "file:///from-env"


def test_trace_id_is_read_per_call() -> None:
    assert lambda_trace_id({}) is None
    assert lambda_trace_id({"_X_AMZN_TRACE_ID": "Root=1-a"}) == "Root=1-a"


def test_s3_store_options_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEAP_EXPECTED_BUCKET_OWNER", "111111111111")
    store = store_for(Settings(expected_bucket_owner="222222222222", sse_kms_key_id="k"))
    assert isinstance(store, S3Store)
    assert (store.expected_bucket_owner, store.sse_kms_key_id) == ("222222222222", "k")
    assert S3Store().expected_bucket_owner == "111111111111"  # no settings: the environment's


@stage
def echo(data: dict[str, int]) -> dict[str, int]:
    return data


def _event(n: int) -> dict[str, object]:
    return build_event(execution_id=f"run-{n}", current_stage="Echo", initial_data={"n": n})


def test_a_handler_follows_a_changed_environment_outside_lambda(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CEAP_STORE", (tmp_path / "one").as_uri())
    echo(_event(1), FakeLambdaContext())
    first = echo.runtime.store
    echo(_event(2), FakeLambdaContext())
    assert echo.runtime.store is first  # unchanged settings: the same store, kept warm
    monkeypatch.setenv("CEAP_STORE", (tmp_path / "two").as_uri())
    echo(_event(3), FakeLambdaContext())
    assert echo.runtime.store is not first
    assert (tmp_path / "one/ceap-test-bucket/executions/run-1/Echo/output.json").exists()
    assert (tmp_path / "two/ceap-test-bucket/executions/run-3/Echo/output.json").exists()
    assert not (tmp_path / "one/ceap-test-bucket/executions/run-3").exists()


def test_configured_copy_uses_its_settings_and_leaves_the_handler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CEAP_STORE", (tmp_path / "env").as_uri())
    settings = Settings(store_url=(tmp_path / "given").as_uri(), metrics_enabled=False)
    copy = echo.runtime.configured(settings=settings)
    copy.invoke(_event(1), FakeLambdaContext())
    assert copy.settings is settings
    assert isinstance(copy.store, LocalStore)
    assert copy.store.root == tmp_path / "given"
    assert (tmp_path / "given/ceap-test-bucket/executions/run-1/Echo/output.json").exists()
    assert not (tmp_path / "env").exists()
    assert echo.runtime.store.root == tmp_path / "env"  # type: ignore[attr-defined]
    store = LocalStore(tmp_path / "store")
    echo.runtime.configured(store=store, settings=settings).invoke(_event(2), None)
    assert store.get("ceap-test-bucket", "executions/run-2/Echo/output.json") is not None


def test_observer_is_built_from_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(service_name="orders-svc", metrics_namespace="Orders", metrics_enabled=True)
    copy = echo.runtime.configured(settings=settings, store=LocalStore("/tmp/unused-store"))
    observer = copy._resolve().observer
    assert observer.namespace == "Orders"  # type: ignore[attr-defined]
    assert observer.logger.service == "orders-svc"


def test_handlers_keep_separate_s3_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    @stage
    def one(data: dict[str, int]) -> dict[str, int]:
        return data

    @stage
    def two(data: dict[str, int]) -> dict[str, int]:
        return data

    a, b = one.runtime.store, two.runtime.store
    assert isinstance(a, S3Store)
    assert isinstance(b, S3Store)
    assert a is not b
    assert a.client is not b.client
    assert a.client is a.client  # each store keeps its own client
