"""The ceap-stage pytest plugin (registered under the ``pytest11`` entry point).

Installed with the package; its fixtures are available in every test without an import:

- ``lambda_context``: a :class:`~ceap_stage.testing.FakeLambdaContext` (a new request id per
  test, 30 s of remaining time).
- ``local_store``: a :class:`~ceap_stage.LocalStore` in a temporary directory of the test.
- ``s3_store``: a :class:`~ceap_stage.testing.MotoS3Store` on moto's in-process S3 with a fresh
  bucket (its name is ``s3_store.bucket``); needs ``moto[s3]``.
- ``stage_event``: :func:`~ceap_stage.testing.build_event`, to build events in a test.
- ``spark``: one local PySpark session for the whole test session (skipped when PySpark is not
  installed), for :func:`~ceap_stage.testing.run_glue_stage` and Glue code.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ceap_stage._store import LocalStore

from ._events import build_event
from ._lambda import FakeLambdaContext
from ._moto import MotoS3Store, mock_s3_store

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["lambda_context", "local_store", "s3_store", "spark", "stage_event"]


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    """A fake Lambda context: every attribute of the real one, 30 s of remaining time.

    Example::

        def test_handler(lambda_context):
            handler(event, lambda_context)
    """
    return FakeLambdaContext()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A :class:`~ceap_stage.LocalStore` in a fresh temporary directory.

    Example::

        def test_stage(local_store):
            run = run_stage(handler, store=local_store, previous_output=[...])
    """
    return LocalStore(tmp_path / "ceap-store")


@pytest.fixture
def s3_store() -> Iterator[MotoS3Store]:
    """An S3 store on moto's in-process S3 with a fresh bucket (``s3_store.bucket``).

    Fake credentials are set for the test; a custom ``AWS_ENDPOINT_URL`` is ignored.

    Example::

        def test_stage_on_s3(s3_store):
            run = run_stage(handler, store=s3_store, previous_output=[...])
            s3_store.client.head_object(Bucket=s3_store.bucket, Key=run.result["output"]["key"])
    """
    import importlib.util

    if importlib.util.find_spec("moto") is None:  # failed outside an except: no chained noise
        pytest.fail("the s3_store fixture needs moto: pip install 'moto[s3]'", pytrace=False)
    with mock_s3_store() as store:
        yield store


@pytest.fixture
def stage_event() -> Callable[..., dict[str, Any]]:
    """:func:`~ceap_stage.testing.build_event`: build the event of a stage at any position.

    Example::

        def test_handler(stage_event, lambda_context):
            event = stage_event(current_stage="Score", previous_stage="Filter")
    """
    return build_event


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local PySpark session for the test session: ``local[1]``, no UI, 2 shuffle partitions.

    Skipped, with the reason, when PySpark is not installed. Glue code run by the test (a
    ``glue_job``, ``@glue_stage``, :func:`~ceap_stage.testing.run_glue_stage`) reuses it.

    Example::

        def test_enrich(spark, local_store):
            run = run_glue_stage(enrich, store=local_store, previous_output=[...])
    """
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip(
            "the spark fixture needs PySpark, which is not installed: "
            "pip install 'ceap-stage[glue]' (PySpark 3.5, as on Glue 4.0 and 5.0; it needs Java 17)"
        )
    from ceap_stage.glue._spark import local_session

    session = local_session(
        "local[1]",
        "ceap-stage-tests",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.sql.session.timeZone": "UTC",
        },
    )
    yield session
    session.stop()
