"""Settings resolved once: explicit argument > environment > default.

Every environment variable ceap-stage reads is named here, once, as a constant, and read by
:func:`resolve_settings` alone. The result is a frozen :class:`Settings` that is passed down
explicitly: the Lambda runtime, the Glue helper, the local runner and the CLI all resolve through
this one function, and nothing configures a stage by writing ``os.environ``.

Environment variables:

============================== ========================================= ==================
name                           meaning                                   default
============================== ========================================= ==================
``CEAP_STORE``                 ``file:///dir`` (a LocalStore) or ``s3://``  S3
``CEAP_WORKFLOW_BUCKET``       the bucket a function is pinned to        none (the event's)
``CEAP_EXPECTED_BUCKET_OWNER`` S3 ``ExpectedBucketOwner`` on every call   none
``CEAP_SSE_KMS_KEY_ID``        SSE-KMS key for every object written      none (bucket's)
``CEAP_TRACER``                ``xray``, ``otel`` or ``off``              ``xray`` in Lambda
``CEAP_SPARK_MASTER``          the Spark master of a session we create    ``local[*]`` (none
                                                                         under spark-submit)
``CEAP_GC_FREEZE``             inside Lambda, freeze what init made for  ``true``
                               Python's garbage collector (``false``:
                               leave the collector alone)
``POWERTOOLS_SERVICE_NAME``    the service of log lines                  ``ceap-stage``
``POWERTOOLS_LOG_LEVEL``       the log level                             Powertools' (INFO)
``POWERTOOLS_METRICS_NAMESPACE`` the EMF metric namespace                 ``CeapStage``
``POWERTOOLS_METRICS_DISABLED`` / ``POWERTOOLS_DEV``  EMF metrics off     on
``POWERTOOLS_TRACE_DISABLED``  tracing off (same as ``CEAP_TRACER=off``) on in Lambda
``SOURCE_DATE_EPOCH``          build time: the timestamp of zip entries   1980-01-01
============================== ========================================= ==================

The Lambda runtime's own variables (``AWS_LAMBDA_FUNCTION_NAME``,
``AWS_LAMBDA_INITIALIZATION_TYPE``, ``AWS_SAM_LOCAL``) tell where the code runs;
``_X_AMZN_TRACE_ID`` (set by Lambda for each invocation) is read by :func:`lambda_trace_id`, and
``PYSPARK_GATEWAY_PORT`` (set by ``spark-submit``) leaves the Spark master to ``spark-submit``.

Code that ceap-stage runs in-process but does not call itself (a Glue script run by the local
runner, a plain Lambda function) is configured with :func:`using_settings`: inside the block,
:func:`resolve_settings` starts from the given settings instead of the environment.

Example:
    >>> s = resolve_settings(environ={"CEAP_STORE": "file:///tmp/x", "CEAP_TRACER": "off"})
    >>> s.store_url, s.tracer, s.in_lambda
    ('file:///tmp/x', 'off', False)
    >>> resolve_settings(store_url="s3://", environ={"CEAP_STORE": "file:///tmp/x"}).store_url
    's3://'
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, Literal, get_args

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_METRICS_NAMESPACE",
    "DEFAULT_SERVICE",
    "DEFAULT_SPARK_MASTER",
    "ENV_EXPECTED_BUCKET_OWNER",
    "ENV_INITIALIZATION_TYPE",
    "ENV_LAMBDA_FUNCTION_NAME",
    "ENV_LOG_LEVEL",
    "ENV_METRICS_DISABLED",
    "ENV_METRICS_NAMESPACE",
    "ENV_POWERTOOLS_DEV",
    "ENV_SAM_LOCAL",
    "ENV_SERVICE_NAME",
    "ENV_PYSPARK_GATEWAY_PORT",
    "ENV_SOURCE_DATE_EPOCH",
    "ENV_SPARK_MASTER",
    "ENV_SSE_KMS_KEY_ID",
    "ENV_STORE",
    "ENV_TRACER",
    "ENV_TRACE_DISABLED",
    "ENV_TRACE_ID",
    "ENV_WORKFLOW_BUCKET",
    "Settings",
    "TracerChoice",
    "lambda_trace_id",
    "resolve_settings",
    "using_settings",
    "resolve_source_date_epoch",
]

# -- ceap-stage's own variables --------------------------------------------------------------
ENV_STORE: Final = "CEAP_STORE"
ENV_WORKFLOW_BUCKET: Final = "CEAP_WORKFLOW_BUCKET"
ENV_EXPECTED_BUCKET_OWNER: Final = "CEAP_EXPECTED_BUCKET_OWNER"
ENV_SSE_KMS_KEY_ID: Final = "CEAP_SSE_KMS_KEY_ID"
ENV_TRACER: Final = "CEAP_TRACER"
ENV_SPARK_MASTER: Final = "CEAP_SPARK_MASTER"
ENV_GC_FREEZE: Final = "CEAP_GC_FREEZE"
# -- Powertools' variables, read the way Powertools reads them ---------------------------------
ENV_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_LOG_LEVEL: Final = "POWERTOOLS_LOG_LEVEL"
ENV_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
ENV_METRICS_DISABLED: Final = "POWERTOOLS_METRICS_DISABLED"
ENV_POWERTOOLS_DEV: Final = "POWERTOOLS_DEV"
ENV_TRACE_DISABLED: Final = "POWERTOOLS_TRACE_DISABLED"
# -- the Lambda runtime's variables ----------------------------------------------------------
ENV_LAMBDA_FUNCTION_NAME: Final = "AWS_LAMBDA_FUNCTION_NAME"
ENV_INITIALIZATION_TYPE: Final = "AWS_LAMBDA_INITIALIZATION_TYPE"
ENV_SAM_LOCAL: Final = "AWS_SAM_LOCAL"
ENV_TRACE_ID: Final = "_X_AMZN_TRACE_ID"
# -- spark-submit's --------------------------------------------------------------------------
ENV_PYSPARK_GATEWAY_PORT: Final = "PYSPARK_GATEWAY_PORT"
# -- build time (``ceap-stage layer`` / ``package``) -----------------------------------------
#: The reproducible-builds convention: the timestamp (seconds since 1970) of every zip entry.
ENV_SOURCE_DATE_EPOCH: Final = "SOURCE_DATE_EPOCH"

DEFAULT_SERVICE: Final = "ceap-stage"
DEFAULT_METRICS_NAMESPACE: Final = "CeapStage"
DEFAULT_SPARK_MASTER: Final = "local[*]"

TracerChoice = Literal["xray", "otel", "off"]
_TRACERS: Final = frozenset(get_args(TracerChoice))


_TRUE: Final = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE: Final = frozenset({"0", "false", "no", "off", "n", "f"})


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def _flag(value: str, source: str) -> bool:
    """A boolean setting that must say one or the other (unlike :func:`_truthy`)."""
    said = value.strip().lower()
    if said in _TRUE:
        return True
    if said in _FALSE:
        return False
    raise ConfigurationError(
        f"{source} must be true or false (or 1/0, yes/no, on/off), not {value!r}"
    )


def _metrics_enabled(environ: Mapping[str, str]) -> bool:
    # Powertools' rule: disabled when POWERTOOLS_METRICS_DISABLED is true, or when POWERTOOLS_DEV
    # is true and POWERTOOLS_METRICS_DISABLED is not set at all.
    disabled = environ.get(ENV_METRICS_DISABLED)
    if _truthy(disabled):
        return False
    return not (_truthy(environ.get(ENV_POWERTOOLS_DEV)) and disabled is None)


@dataclass(frozen=True, slots=True)
class Settings:
    """How a handler, Glue job, runner or command is configured, resolved once.

    Build one with :func:`resolve_settings`; derive a variant with :meth:`replace`.

    Example:
        >>> s = Settings(store_url="file:///tmp/ceap")
        >>> s.replace(workflow_bucket="wf-dev").workflow_bucket
        'wf-dev'
    """

    #: Where outputs live: ``file:///dir`` or ``s3://`` (None: S3).
    store_url: str | None = None
    #: The bucket this code is pinned to (None: whatever the event or arguments name).
    workflow_bucket: str | None = None
    #: S3 ``ExpectedBucketOwner``, on every call.
    expected_bucket_owner: str | None = None
    #: The SSE-KMS key id for every object written (None: the bucket's default encryption).
    sse_kms_key_id: str | None = None
    #: The tracing provider: ``xray`` (Powertools' Tracer), ``otel`` or ``off``.
    tracer: TracerChoice = "off"
    #: The service name on log lines.
    service_name: str = DEFAULT_SERVICE
    #: The log level (None: Powertools' own default).
    log_level: str | None = None
    #: The EMF metric namespace.
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    #: Whether EMF metrics are emitted.
    metrics_enabled: bool = True
    #: The Spark master of a session ceap-stage creates itself (None: under ``spark-submit``,
    #: which sets the master itself).
    spark_master: str | None = DEFAULT_SPARK_MASTER
    #: Whether the code runs inside a Lambda execution environment (not ``sam local``).
    in_lambda: bool = False
    #: ``AWS_LAMBDA_INITIALIZATION_TYPE`` (``on-demand``, ``provisioned-concurrency``,
    #: ``snap-start``), or None outside Lambda.
    initialization_type: str | None = None
    #: Inside Lambda, whether the init phase pauses Python's cyclic garbage collector while the
    #: handler creates its store, S3 client and observer, then freezes (``gc.freeze``) every
    #: object made so far, so that no later collection scans them again. No effect outside
    #: Lambda.
    gc_freeze: bool = True

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def resolve_settings(
    *,
    environ: Mapping[str, str] | None = None,
    store_url: str | None = None,
    workflow_bucket: str | None = None,
    expected_bucket_owner: str | None = None,
    sse_kms_key_id: str | None = None,
    tracer: str | None = None,
    service_name: str | None = None,
    log_level: str | None = None,
    metrics_namespace: str | None = None,
    metrics_enabled: bool | None = None,
    spark_master: str | None = None,
    gc_freeze: bool | None = None,
    defaults: Settings | None = None,
) -> Settings:
    """Resolve every setting: an explicit argument wins, then the environment, then the default.

    Inside a :func:`using_settings` block (and when ``environ`` is not given) the block's
    settings take the place of the environment and the defaults: explicit arguments still win.

    Args:
        environ: The environment to read (default ``os.environ``, read now).
        store_url: ``file:///dir`` or ``s3://`` (else ``CEAP_STORE``).
        workflow_bucket: The bucket to pin to (else ``CEAP_WORKFLOW_BUCKET``).
        expected_bucket_owner: Else ``CEAP_EXPECTED_BUCKET_OWNER``.
        sse_kms_key_id: Else ``CEAP_SSE_KMS_KEY_ID``.
        tracer: ``xray``, ``otel`` or ``off`` (else ``CEAP_TRACER``; else ``xray`` inside Lambda
            unless ``POWERTOOLS_TRACE_DISABLED`` or ``AWS_SAM_LOCAL``, and ``off`` outside).
        service_name: Else ``POWERTOOLS_SERVICE_NAME``, else ``ceap-stage``.
        log_level: Else ``POWERTOOLS_LOG_LEVEL``.
        metrics_namespace: Else ``POWERTOOLS_METRICS_NAMESPACE``, else ``CeapStage``.
        metrics_enabled: Else Powertools' rule (``POWERTOOLS_METRICS_DISABLED``,
            ``POWERTOOLS_DEV``).
        spark_master: Else ``CEAP_SPARK_MASTER``, else ``local[*]`` (None under
            ``spark-submit``, ``PYSPARK_GATEWAY_PORT`` set).
        gc_freeze: Else ``CEAP_GC_FREEZE``, else true (it matters inside Lambda only).
        defaults: The defaults of a caller that has its own (the CLI quiets logs and metrics
            unless the environment says otherwise); default: the table above.

    Raises:
        ConfigurationError: ``tracer`` (or ``CEAP_TRACER``) is not ``xray``, ``otel`` or
            ``off``; ``log_level`` (or ``POWERTOOLS_LOG_LEVEL``) is not a log level;
            ``CEAP_GC_FREEZE`` is neither true nor false.

    Example:
        >>> resolve_settings(environ={"AWS_LAMBDA_FUNCTION_NAME": "f"}).tracer
        'xray'
        >>> resolve_settings(environ={"AWS_LAMBDA_FUNCTION_NAME": "f",
        ...                           "POWERTOOLS_TRACE_DISABLED": "true"}).tracer
        'off'
        >>> resolve_settings(environ={"CEAP_TRACER": "x"})
        Traceback (most recent call last):
        ...
        ceap_stage._errors.ConfigurationError: CEAP_TRACER must be one of off, otel, xray, not 'x'
    """
    scoped = _SCOPE.get() if environ is None else None
    if scoped is not None:
        return _apply(
            scoped,
            store_url=store_url,
            workflow_bucket=workflow_bucket,
            expected_bucket_owner=expected_bucket_owner,
            sse_kms_key_id=sse_kms_key_id,
            tracer=tracer,
            service_name=service_name,
            log_level=log_level,
            metrics_namespace=metrics_namespace,
            metrics_enabled=metrics_enabled,
            spark_master=spark_master,
            gc_freeze=gc_freeze,
        )
    env = os.environ if environ is None else environ
    base = defaults or _DEFAULTS

    def pick(explicit: str | None, name: str) -> str | None:
        if explicit:
            return explicit
        return env.get(name) or None

    in_lambda = bool(env.get(ENV_LAMBDA_FUNCTION_NAME)) and not _truthy(env.get(ENV_SAM_LOCAL))
    chosen = tracer or env.get(ENV_TRACER) or None
    if chosen is None:
        if defaults is not None:
            chosen = defaults.tracer
        else:
            chosen = "xray" if in_lambda and not _truthy(env.get(ENV_TRACE_DISABLED)) else "off"
    chosen = _check_tracer(chosen, "tracer" if tracer else ENV_TRACER)
    if metrics_enabled is None:
        said = ENV_METRICS_DISABLED in env or _truthy(env.get(ENV_POWERTOOLS_DEV))
        metrics_enabled = _metrics_enabled(env) if said else base.metrics_enabled
    if gc_freeze is None:
        said_freeze = env.get(ENV_GC_FREEZE)
        gc_freeze = _flag(said_freeze, ENV_GC_FREEZE) if said_freeze else base.gc_freeze
    master = pick(spark_master, ENV_SPARK_MASTER)
    if master is None and not env.get(ENV_PYSPARK_GATEWAY_PORT):
        master = base.spark_master
    return Settings(
        store_url=pick(store_url, ENV_STORE) or base.store_url,
        workflow_bucket=pick(workflow_bucket, ENV_WORKFLOW_BUCKET) or base.workflow_bucket,
        expected_bucket_owner=pick(expected_bucket_owner, ENV_EXPECTED_BUCKET_OWNER)
        or base.expected_bucket_owner,
        sse_kms_key_id=pick(sse_kms_key_id, ENV_SSE_KMS_KEY_ID) or base.sse_kms_key_id,
        tracer=chosen,
        service_name=pick(service_name, ENV_SERVICE_NAME) or base.service_name,
        log_level=_check_log_level(pick(log_level, ENV_LOG_LEVEL), log_level) or base.log_level,
        metrics_namespace=pick(metrics_namespace, ENV_METRICS_NAMESPACE) or base.metrics_namespace,
        metrics_enabled=metrics_enabled,
        spark_master=master,
        in_lambda=in_lambda,
        initialization_type=env.get(ENV_INITIALIZATION_TYPE) or None if in_lambda else None,
        gc_freeze=gc_freeze,
    )


_DEFAULTS: Final = Settings()
_SCOPE: ContextVar[Settings | None] = ContextVar("ceap_stage_settings", default=None)

#: Every variable :func:`resolve_settings` reads (what :func:`settings_token` watches).
_READ: Final = (
    ENV_STORE,
    ENV_WORKFLOW_BUCKET,
    ENV_EXPECTED_BUCKET_OWNER,
    ENV_SSE_KMS_KEY_ID,
    ENV_TRACER,
    ENV_SPARK_MASTER,
    ENV_GC_FREEZE,
    ENV_SERVICE_NAME,
    ENV_LOG_LEVEL,
    ENV_METRICS_NAMESPACE,
    ENV_METRICS_DISABLED,
    ENV_POWERTOOLS_DEV,
    ENV_TRACE_DISABLED,
    ENV_LAMBDA_FUNCTION_NAME,
    ENV_INITIALIZATION_TYPE,
    ENV_SAM_LOCAL,
    ENV_PYSPARK_GATEWAY_PORT,
)
_READ_ENCODED: Final = tuple(os.fsencode(name) for name in _READ)


def settings_token() -> tuple[object, ...]:
    """A cheap value that changes whenever :func:`resolve_settings` could answer differently.

    The runtime compares it on each warm invocation outside Lambda and resolves again only when
    it changed: the enclosing :func:`using_settings` scope and the raw values of the variables
    read. On POSIX it reads ``os.environ``'s own mapping of encoded names (what
    ``os.environ[name]`` decodes from), which costs well under a microsecond for all of them.

    Example:
        >>> settings_token() == settings_token()
        True
    """
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict) and os.name == "posix":
        return (_SCOPE.get(), *map(data.get, _READ_ENCODED))
    environ = os.environ
    return (_SCOPE.get(), *(environ.get(name) for name in _READ))


def _check_tracer(value: str, source: str) -> TracerChoice:
    chosen = value.strip().lower()
    if chosen not in _TRACERS:
        raise ConfigurationError(
            f"{source} must be one of {', '.join(sorted(_TRACERS))}, not {chosen!r}"
        )
    return chosen  # type: ignore[return-value]


_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _check_log_level(value: str | None, explicit: str | None) -> str | None:
    """A log level Python's logging knows (a name, any case, or a number), else an error."""
    if value is None:
        return None
    said = value.strip()
    if said.upper() in (*_LOG_LEVELS, "WARN", "FATAL", "NOTSET") or said.isdigit():
        return said
    source = "log_level" if explicit else ENV_LOG_LEVEL
    raise ConfigurationError(f"{source} must be one of {', '.join(_LOG_LEVELS)}, not {value!r}")


def _apply(settings: Settings, **explicit: object) -> Settings:
    changes = {name: value for name, value in explicit.items() if value is not None}
    if "tracer" in changes:
        changes["tracer"] = _check_tracer(str(changes["tracer"]), "tracer")
    if "log_level" in changes:
        changes["log_level"] = _check_log_level(str(changes["log_level"]), "log_level")
    return settings.replace(**changes) if changes else settings


@contextlib.contextmanager
def using_settings(settings: Settings) -> Iterator[Settings]:
    """Configure the code run in this block (and context) with ``settings``, not the environment.

    For code that ceap-stage runs in-process but does not call itself: the local runner runs a
    Glue script or a plain Lambda function inside such a block. Handlers built with ``@stage``
    are better configured directly (``handler.runtime.configured(settings=...)``). Nothing is
    written to ``os.environ``; other threads and the code after the block are unaffected.

    Example:
        >>> with using_settings(Settings(store_url="file:///tmp/run")):
        ...     resolve_settings().store_url
        'file:///tmp/run'
        >>> resolve_settings(environ={}).store_url is None
        True
    """
    token = _SCOPE.set(settings)
    try:
        yield settings
    finally:
        _SCOPE.reset(token)


def lambda_trace_id(environ: Mapping[str, str] | None = None) -> str | None:
    """The X-Ray trace header Lambda sets for the current invocation (``_X_AMZN_TRACE_ID``).

    Read at each invocation: unlike the settings, it changes from one invocation to the next.

    Example:
        >>> lambda_trace_id({"_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793"})
        'Root=1-5759e988-bd862e3fe1be46a994272793'
    """
    env = os.environ if environ is None else environ
    return env.get(ENV_TRACE_ID) or None


def resolve_source_date_epoch(environ: Mapping[str, str] | None = None) -> int | None:
    """``SOURCE_DATE_EPOCH`` as an integer, or None when unset or blank (build time only).

    Raises:
        ConfigurationError: The value is not an integer.

    Example:
        >>> resolve_source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"})
        1700000000
        >>> resolve_source_date_epoch({}) is None
        True
    """
    env = os.environ if environ is None else environ
    value = (env.get(ENV_SOURCE_DATE_EPOCH) or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(
            f"{ENV_SOURCE_DATE_EPOCH} must be a whole number of seconds, not {value!r}"
        ) from None
