"""Test stages without AWS: a fake Lambda context, an event builder and a one-call runner.

The three-line test::

    from ceap_stage.testing import run_stage

    def test_score(local_store):
        run = run_stage(score, store=local_store, previous_output=[{"id": "a", "amount": 12}])
        assert run.output[0].score > 0

:func:`run_glue_stage` does the same for a Glue script or a ``@glue_stage`` function.
:func:`assert_record_wise` checks that a stage may be fanned out.

The pytest plugin (installed with the package, entry point ``pytest11``) provides the fixtures
``lambda_context``, ``local_store``, ``s3_store`` (moto), ``spark`` (local PySpark, one per
session) and ``stage_event``.
"""

from ceap_stage._observability import Capture

from ._counting import CountingStore
from ._events import DEFAULT_BUCKET, DEFAULT_EXECUTION_ID, build_event
from ._glue import GlueRun, run_glue_stage
from ._lambda import FakeCognitoIdentity, FakeLambdaContext
from ._moto import MotoS3Store, mock_s3_store
from ._record_wise import assert_record_wise
from ._run import StageRun, capture_logs, run_stage

__all__ = [
    "Capture",
    "CountingStore",
    "DEFAULT_BUCKET",
    "DEFAULT_EXECUTION_ID",
    "FakeCognitoIdentity",
    "FakeLambdaContext",
    "GlueRun",
    "MotoS3Store",
    "StageRun",
    "assert_record_wise",
    "build_event",
    "capture_logs",
    "mock_s3_store",
    "run_glue_stage",
    "run_stage",
]
