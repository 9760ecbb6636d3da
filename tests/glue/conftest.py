"""Fixtures for the Glue helper's tests: one local PySpark session, a local store, job argv.

The Spark session is session-scoped (the JVM starts once), runs ``local[1]`` with few shuffle
partitions and no UI. Tests that need it are skipped only when PySpark or Java is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ceap_stage import LocalStore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BUCKET = "ceap-glue-test"
RUN = "run-2026-11-26"


def _java_available() -> bool:
    home = os.environ.get("JAVA_HOME")
    return shutil.which("java") is not None or bool(home and Path(home, "bin", "java").exists())


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local PySpark session for every Glue test (skipped without PySpark or Java)."""
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("pyspark is not installed")
    if not _java_available():
        pytest.skip("no Java runtime for PySpark")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("ceap-stage-glue-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def jvm_log(spark: SparkSession) -> Iterator[Callable[[], str]]:
    """What the JVM logs (driver and, in local mode, executors) while the test runs, at INFO.

    Log4j2's root logger gets a capturing appender in place of its own (so the console stays
    quiet) and level INFO; both are restored afterwards. Yields a function returning the text so
    far: each event's level, logger, message and stack trace.
    """
    jvm: Any = spark.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    context = log4j.LogManager.getContext(False)
    root = context.getConfiguration().getRootLogger()
    layout = log4j.core.layout.PatternLayout.newBuilder().withPattern("%p %c %m%n%ex").build()
    buffer = jvm.java.io.StringWriter()
    name = f"ceap-test-{uuid.uuid4().hex}"
    capture = log4j.core.appender.WriterAppender.createAppender(
        layout, None, buffer, name, False, True
    )
    capture.start()
    saved = dict(root.getAppenders())
    level = root.getLevel()
    for appender in saved:
        root.removeAppender(appender)
    root.addAppender(capture, None, None)
    root.setLevel(log4j.Level.INFO)
    context.updateLoggers()
    try:
        yield lambda: str(buffer.toString())
    finally:
        root.removeAppender(name)
        for appender in saved.values():
            root.addAppender(appender, None, None)
        root.setLevel(level)
        context.updateLoggers()
        capture.stop()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """A fresh local store in the test's temporary directory."""
    return LocalStore(tmp_path / "store")


def job_argv(
    current: str = "Aggregate",
    previous: str | None = "Ingest",
    *,
    run: str = RUN,
    bucket: str = BUCKET,
    **overrides: Any,
) -> list[str]:
    """A Glue job command line, as Step Functions passes it (``overrides`` replace values;
    a value of ``None`` drops that argument)."""
    values: dict[str, Any] = {
        "JOB_NAME": "ceap-glue-test-job",
        "execution-id": run,
        "input-bucket": bucket,
        "input-key": f"executions/{run}/{previous or 'initial'}/output.json",
        "output-bucket": bucket,
        "output-key": f"executions/{run}/{current}/output.json",
        "current-stage": current,
        "previous-stage": previous,
    }
    values.update({k.replace("_", "-") if k != "JOB_NAME" else k: v for k, v in overrides.items()})
    argv = ["job.py"]
    for name, value in values.items():
        if value is not None:
            argv += [f"--{name}", str(value)]
    return argv
