"""The job wrapper: Glue boilerplate, a Spark session, JSON start/finish logs, exit on failure.

:func:`glue_job` resolves the arguments, starts Spark (``GlueContext`` + ``Job.init`` on AWS Glue,
a plain ``SparkSession`` elsewhere, reusing an active one), logs one JSON line when the stage starts
and one when it finishes or fails, and on success calls ``Job.commit``. A failure is logged with
its error class and turned into ``SystemExit(1)`` chained ``from`` the original exception, so Glue
marks the run failed and an in-process caller finds the contract error in ``exc.__cause__``. The
exit's text is ``ErrorClass: message`` (``InputValidationError: ...``): what a failed job run's
``ErrorMessage`` should name, and what the generated state machine names the execution's error
after.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

import orjson

from ceap_stage._errors import CeapStageError
from ceap_stage._settings import DEFAULT_SERVICE, Settings, resolve_settings
from ceap_stage._store import Store

from ._args import GlueArgs, resolve_args
from ._output import GlueOutput, default_store
from ._shell import read_input_value, read_records, write_records
from ._spark import _mismatch_error, read_input, write_output

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

__all__ = ["GlueJob", "glue_job", "glue_stage"]

_LOGGER_NAME = "ceap_stage.glue"


class _StdoutJson(logging.Handler):
    """Writes each record as one JSON line to the *current* ``sys.stdout`` (Glue ships it)."""

    #: The same service key as the Lambda side's Powertools lines (the job's settings').
    service: str = DEFAULT_SERVICE

    def emit(self, record: logging.LogRecord) -> None:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            **getattr(record, "ceap", {}),
        }
        try:
            sys.stdout.write(orjson.dumps(line, default=str).decode() + "\n")
            sys.stdout.flush()
        except Exception:  # pragma: no cover - a closed stream must not fail the job
            self.handleError(record)


def _logger(service: str = DEFAULT_SERVICE) -> logging.Logger:
    logger = logging.getLogger(_LOGGER_NAME)
    if not logger.handlers:
        logger.addHandler(_StdoutJson())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    for handler in logger.handlers:
        if isinstance(handler, _StdoutJson):
            handler.service = service
    return logger


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


class GlueJob:
    """One running Glue stage: its arguments, store and Spark session, and the I/O helpers.

    Made by :func:`glue_job`; the methods use the job's arguments and store.

    Example:
        >>> with glue_job() as job:  # doctest: +SKIP
        ...     events = job.read_input(schema="customer_id STRING, kind STRING")
        ...     job.write_output(events.groupBy("customer_id").count(), order_by="customer_id")
    """

    def __init__(
        self,
        args: GlueArgs,
        store: Store,
        spark: SparkSession | None = None,
        glue_context: Any = None,
    ) -> None:
        self.args = args
        self.store = store
        self._spark = spark
        #: The ``awsglue.context.GlueContext`` on AWS Glue, else None.
        self.glue_context = glue_context
        #: What the last write produced (None before the first write).
        self.output: GlueOutput | None = None

    @property
    def spark(self) -> SparkSession:
        """The Spark session (a Python-shell job, ``spark=False``, has none)."""
        if self._spark is None:
            raise RuntimeError("this job runs without Spark (glue_job(spark=False))")
        return self._spark

    def read_input(
        self, schema: StructType | str | None = None, *, validate: bool = True
    ) -> DataFrame:
        """The previous stage's output as a DataFrame (see :func:`ceap_stage.glue.read_input`)."""
        return read_input(self.spark, self.args, schema=schema, store=self.store, validate=validate)

    def write_output(
        self,
        df: DataFrame,
        *,
        order_by: str | Sequence[str] | None = None,
        max_records_per_file: int | None = None,
    ) -> GlueOutput:
        """Write parts + manifest (see :func:`ceap_stage.glue.write_output`)."""
        self.output = write_output(
            df,
            self.args,
            store=self.store,
            order_by=order_by,
            max_records_per_file=max_records_per_file,
        )
        return self.output

    def read_value(self) -> Any:
        """The input as Python values (see :func:`ceap_stage.glue.read_input_value`)."""
        return read_input_value(self.args, store=self.store)

    def read_records(self) -> list[Any]:
        """The input as a list of records (see :func:`ceap_stage.glue.read_records`)."""
        return read_records(self.args, store=self.store)

    def write_records(self, records: Any, *, records_per_part: int = 100_000) -> GlueOutput:
        """Write records as parts + manifest (see :func:`ceap_stage.glue.write_records`)."""
        self.output = write_records(
            records, self.args, store=self.store, records_per_part=records_per_part
        )
        return self.output


class _Spark:
    """The session a job runs on, and whether the job made it (then it stops it)."""

    def __init__(self, args: GlueArgs, app_name: str | None, master: str | None) -> None:
        self.master = master
        self.glue_job: Any = None
        self.glue_context: Any = None
        self.created = False
        try:
            from awsglue.context import GlueContext
            from awsglue.job import Job
        except ImportError:
            self.session = self._plain_session(app_name or args.job_name)
        else:
            from pyspark.context import SparkContext

            self.glue_context = GlueContext(SparkContext.getOrCreate())
            self.session = self.glue_context.spark_session
            self.glue_job = Job(self.glue_context)
            self.glue_job.init(args.job_name, dict(args.resolved))

    def _plain_session(self, app_name: str) -> SparkSession:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        had_context = SparkContext._active_spark_context is not None
        # No console progress bar: it would cut through the JSON log lines.
        builder = SparkSession.builder.appName(app_name).config(
            "spark.ui.showConsoleProgress", "false"
        )
        # settings.spark_master: CEAP_SPARK_MASTER, else local[*] for a plain `python job.py`;
        # None under spark-submit, which sets the master itself.
        if self.master is not None and not had_context:
            builder = builder.master(self.master)
        session = builder.getOrCreate()
        self.created = not had_context
        return session

    def commit(self) -> None:
        if self.glue_job is not None:
            self.glue_job.commit()

    def stop(self) -> None:
        if self.created:
            self.session.stop()


class _JobFailed(SystemExit):
    """Exit status 1, reading ``ErrorClass: message`` (the failure, without payload)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(1)
        self.summary = f"{type(error).__name__}: {error}"

    def __str__(self) -> str:
        return self.summary


@contextlib.contextmanager
def glue_job(
    argv: Sequence[str] | None = None,
    *,
    extra: Sequence[str] = (),
    store: Store | None = None,
    spark: bool = True,
    bucket: str | None = None,
    app_name: str | None = None,
    settings: Settings | None = None,
) -> Iterator[GlueJob]:
    """Run a Glue stage: arguments, Spark, logs, ``Job.commit``, and a non-zero exit on failure.

    Args:
        argv: The command line (default ``sys.argv``).
        extra: Further required job arguments (names without ``--``), in ``job.args.extra``.
        store: Where data lives (default: the settings' ``store_url``, ``CEAP_STORE``, e.g.
            ``file:///dir``, else S3).
        spark: ``False`` for a Python-shell job: no Spark, use ``read_records``/``write_records``.
        bucket: Pin the job to this bucket (default: the settings' ``workflow_bucket``,
            ``CEAP_WORKFLOW_BUCKET``, if set).
        app_name: The Spark application name of a session the job creates (default JOB_NAME).
        settings: The job's settings (default: resolved now by
            :func:`~ceap_stage._settings.resolve_settings`: the environment, or the settings
            of an enclosing ``using_settings`` block such as the local runner's).

    Yields:
        The running :class:`GlueJob`.

    Raises:
        SystemExit: Exit status 1 when anything fails (bad arguments included), chained
            ``from`` the original exception; the failure is logged first with its error class.

    On AWS Glue (``awsglue`` importable) it builds a ``GlueContext`` and calls ``Job.init`` and,
    on success, ``Job.commit``. Elsewhere it reuses the active ``SparkSession`` or creates one
    (``local[*]`` unless ``CEAP_SPARK_MASTER`` says otherwise) and stops only a session it created.

    Example:
        >>> with glue_job() as job:  # doctest: +SKIP
        ...     df = job.read_input()
        ...     job.write_output(df.where("events > 0"))
    """
    started = time.perf_counter()
    args: GlueArgs | None = None
    session: _Spark | None = None
    job: GlueJob | None = None
    try:
        resolved = settings or resolve_settings()
    except CeapStageError as exc:
        _logger().error("glue stage failed", extra={"ceap": {"error": type(exc).__name__}})
        raise SystemExit(1) from exc
    logger = _logger(resolved.service_name)
    try:
        args = resolve_args(argv, extra=extra, bucket=bucket, settings=resolved)
        runtime = "python-shell" if not spark else "spark"
        logger.info("glue stage started", extra={"ceap": {**args.facts(), "runtime": runtime}})
        if spark:
            session = _Spark(args, app_name, resolved.spark_master)
        job = GlueJob(
            args,
            store or default_store(resolved),
            session.session if session else None,
            session.glue_context if session else None,
        )
        try:
            yield job
        except Exception as exc:
            # A lazily read schema mismatch surfacing in the user's code: the contract error.
            mismatch = _mismatch_error(exc, args)
            if mismatch is None:
                raise
            raise mismatch from None
        if session is not None:
            session.commit()
    except Exception as exc:
        if isinstance(exc, CeapStageError) and args is not None:
            exc.add_context(execution_id=args.execution_id, stage=args.current_stage)
        facts: dict[str, Any] = dict(args.facts()) if args else {}
        facts["error"] = type(exc).__name__
        if isinstance(exc, CeapStageError):
            facts["error_message"] = str(exc)  # contract messages carry no payload
            facts["retryable"] = exc.retryable
        facts["duration_ms"] = _ms(started)
        logger.error("glue stage failed", extra={"ceap": facts})
        raise _JobFailed(exc) from exc
    else:
        assert args is not None
        assert job is not None
        facts = dict(args.facts())
        if job.output is not None:
            facts.update(
                records=job.output.records,
                parts=len(job.output.parts),
                output_bytes=job.output.total_bytes,
                attempt=job.output.attempt,
            )
        facts["duration_ms"] = _ms(started)
        logger.info("glue stage finished", extra={"ceap": facts})
    finally:
        if session is not None:
            session.stop()


StageFunction = Callable[..., "DataFrame"]


@overload
def glue_stage(fn: StageFunction, /) -> Callable[..., GlueOutput]: ...


@overload
def glue_stage(
    *,
    schema: StructType | str | None = None,
    extra: Sequence[str] = (),
    order_by: str | Sequence[str] | None = None,
    store: Store | None = None,
    settings: Settings | None = None,
) -> Callable[[StageFunction], Callable[..., GlueOutput]]: ...


def glue_stage(
    fn: StageFunction | None = None,
    /,
    *,
    schema: StructType | str | None = None,
    extra: Sequence[str] = (),
    order_by: str | Sequence[str] | None = None,
    store: Store | None = None,
    settings: Settings | None = None,
) -> Callable[..., GlueOutput] | Callable[[StageFunction], Callable[..., GlueOutput]]:
    """Make a DataFrame-to-DataFrame function a whole Glue stage, like ``@stage`` for Lambda.

    The decorated function takes the input DataFrame (and, optionally, the :class:`GlueJob`) and
    returns the output DataFrame. Calling the result (with an optional ``argv``) runs the job
    under :func:`glue_job`: read the input, call the function, write parts + manifest.

    Args:
        fn: The function (when used bare, ``@glue_stage``).
        schema: The input schema (see :func:`ceap_stage.glue.read_input`).
        extra: Further required job arguments.
        order_by: Sort the output by these columns before writing.
        store: Where data lives (default: ``CEAP_STORE``, else S3).
        settings: The job's settings (default: resolved when the job runs, see
            :func:`glue_job`).

    Example:
        >>> @glue_stage(schema="customer_id STRING, kind STRING", order_by="customer_id")
        ... def main(events, job):
        ...     return events.groupBy("customer_id").count()
        >>> if __name__ == "__main__":
        ...     main()
    """
    if fn is None:
        return functools.partial(
            glue_stage,
            schema=schema,
            extra=extra,
            order_by=order_by,
            store=store,
            settings=settings,
        )
    params = list(inspect.signature(fn).parameters.values())
    pass_job = len(params) >= 2

    @functools.wraps(fn)
    def run(argv: Sequence[str] | None = None) -> GlueOutput:
        with glue_job(argv, extra=extra, store=store, settings=settings) as job:
            df = job.read_input(schema)
            out = fn(df, job) if pass_job else fn(df)
            return job.write_output(out, order_by=order_by)
        raise AssertionError("unreachable")  # pragma: no cover - glue_job raises SystemExit

    return run
