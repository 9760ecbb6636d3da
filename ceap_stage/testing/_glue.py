"""Run a Glue stage in one call: seed its input, run the script or ``@glue_stage``, read back."""

from __future__ import annotations

import dataclasses
import os
import runpy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ceap_stage._context import INITIAL_STAGE
from ceap_stage._io import OutputRef, StageIO
from ceap_stage._settings import Settings, resolve_settings, using_settings
from ceap_stage._store import LocalStore, Store

from ._events import _ABSENT, DEFAULT_BUCKET, DEFAULT_EXECUTION_ID
from ._run import DEFAULT_PREVIOUS_STAGE, DEFAULT_STAGE, _encode

__all__ = ["GlueRun", "run_glue_stage"]

#: The ``JOB_NAME`` :func:`run_glue_stage` passes.
DEFAULT_JOB_NAME = "ceap-test-glue-job"


@dataclass(frozen=True)
class GlueRun:
    """What one :func:`run_glue_stage` call produced.

    Attributes:
        output: The stage's output records as read back from the store (dicts, whatever the
            format: a manifest's parts are read and checked).
        records: How many records it wrote.
        output_format: The format of its ``output.json`` (``manifest`` for a Spark stage).
        argv: The job's command line, as the state machine passes it.

    Example:
        >>> GlueRun(output=[{"n": 1}], records=1, output_format="manifest", argv=[]).records
        1
    """

    output: Any
    records: int | None
    output_format: str
    argv: list[str]


def _settings_for(store: Store, settings: Settings | None) -> Settings:
    """The job's settings: ``store`` as its store (a local directory, or S3), quiet metrics."""
    base = settings or resolve_settings()
    url = f"file://{store.root}" if isinstance(store, LocalStore) else None
    return dataclasses.replace(base, store_url=url, metrics_enabled=False)


def run_glue_stage(
    job: Callable[..., Any] | str | os.PathLike[str],
    *,
    store: Store,
    previous_output: Any = _ABSENT,
    initial_data: Any = _ABSENT,
    execution_id: str = DEFAULT_EXECUTION_ID,
    stage: str = DEFAULT_STAGE,
    previous_stage: str | None = None,
    bucket: str | None = None,
    previous_format: Literal["json", "jsonl"] = "json",
    job_name: str = DEFAULT_JOB_NAME,
    extra: Mapping[str, str] | None = None,
    settings: Settings | None = None,
) -> GlueRun:
    """Run a Glue stage once against ``store`` and read its output back (``run_stage`` for Glue).

    ``job`` is a ``@glue_stage`` function or the path of a Glue script (run as ``__main__``, as
    Glue runs it). The previous stage's output (or, for a first stage, the initial input) is
    written where the contract says; the job gets the command line the state machine gives it
    and runs on ``store`` (a :class:`~ceap_stage.LocalStore`, or S3, e.g. the ``s3_store``
    fixture) on the active Spark session (the ``spark`` fixture), or a local one it creates.

    Args:
        job: A ``@glue_stage`` function, or a script's path.
        store: Where the input is seeded and the output written.
        previous_output: The previous stage's output (models, dicts, lists; ``bytes``/``str``
            as they are).
        initial_data: The initial input of a first stage (``executions/{id}/initial/``).
        execution_id: The execution id.
        stage: This stage's name (``--current-stage``).
        previous_stage: The previous stage's name (default ``PreviousStage`` when
            ``previous_output`` is given).
        bucket: The workflow bucket (default: the store's ``bucket`` attribute, else
            ``ceap-test-bucket``).
        previous_format: Write ``previous_output`` as ``"json"`` or ``"jsonl"``.
        job_name: The ``--JOB_NAME``.
        extra: Further job arguments, by name without ``--``.
        settings: Settings to run the job with (its store is always ``store``).

    Returns:
        A :class:`GlueRun`.

    Raises:
        CeapStageError: What the job failed with (the contract's errors), rather than the
            ``SystemExit(1)`` a Glue job ends with.
        SystemExit: A job that exits non-zero without a cause.

    Example:
        >>> from ceap_stage.glue import glue_stage
        >>> @glue_stage(schema="customer_id STRING, events LONG")
        ... def busy(df):
        ...     return df.where("events > 1")
        >>> run = run_glue_stage(busy, store=local_store,  # doctest: +SKIP
        ...     previous_output=[{"customer_id": "c1", "events": 3}])
        >>> run.output  # doctest: +SKIP
        [{'customer_id': 'c1', 'events': 3}]
    """
    if previous_output is not _ABSENT and initial_data is not _ABSENT:
        raise TypeError("give previous_output (a later stage) or initial_data (a first stage)")
    bucket = bucket or getattr(store, "bucket", None) or DEFAULT_BUCKET
    io = StageIO(store)
    if previous_output is not _ABSENT:
        previous_stage = previous_stage or DEFAULT_PREVIOUS_STAGE
        data, fmt = previous_output, previous_format
    else:
        data, fmt = initial_data, "json"
    source = OutputRef(bucket, execution_id, previous_stage or INITIAL_STAGE)
    if data is not _ABSENT:
        io.write_bytes(source, _encode(data, fmt), fmt, metadata={})
    target = OutputRef(bucket, execution_id, stage)
    arguments = {
        "JOB_NAME": job_name,
        "execution-id": execution_id,
        "input-bucket": bucket,
        "input-key": source.key,
        "output-bucket": bucket,
        "output-key": target.key,
        "current-stage": stage,
        **({"previous-stage": previous_stage} if previous_stage else {}),
        **(extra or {}),
    }
    script = str(job) if isinstance(job, (str, os.PathLike)) else "glue_stage.py"
    argv = [script]
    for name, value in arguments.items():
        argv.extend([f"--{name}", value])
    with using_settings(_settings_for(store, settings)):
        _run(job, argv)
    result = io.read(target)
    return GlueRun(
        output=result.value,
        records=len(result.value) if isinstance(result.value, list) else None,
        output_format=result.format,
        argv=argv,
    )


def _run(job: Callable[..., Any] | str | os.PathLike[str], argv: list[str]) -> None:
    saved = sys.argv
    try:
        if isinstance(job, (str, os.PathLike)):
            sys.argv = argv
            runpy.run_path(str(Path(job)), run_name="__main__")
        else:
            job(argv)
    except SystemExit as exc:
        if exc.code in (None, 0):
            return
        if exc.__cause__ is not None:
            raise exc.__cause__ from None
        raise
    finally:
        sys.argv = saved
