"""SnapStart: prime before the snapshot, renew after restore.

With SnapStart, Lambda initialises a function version once, when the version is published
(``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``), snapshots the memory and disk of that
environment, and starts every new execution environment by restoring the snapshot. Whatever the
init phase did costs nothing on restore; whatever it left for the first invocation is paid again
by every restored environment. And whatever the snapshot holds is shared by all of them.

Inside Lambda a handler creates its store (and so its S3 client) and its observer when it is
created, at import (:mod:`ceap_stage._runtime`). For a SnapStart initialisation the runtime then
calls :func:`register`, which hands two hooks to the runtime's ``snapshot_restore_py`` module:

- before the snapshot, :func:`prime` loads what the first invocation would otherwise load:

  - botocore's S3 operation models (``GetObject``, ``PutObject``) and their shapes, its endpoint
    resolution, request serialisation and signing (by presigning a ``GetObject`` and a
    ``PutObject`` URL: no network), and the ``idna`` codec every new connection's host lookup
    uses;
  - Powertools' log formatter (one record formatted, not written) and its EMF provider (one
    metric document serialised on a throwaway provider, not written);
  - the stage's pydantic validators and serialisers (a tiny sample, ``[]`` or ``{}``, validated
    and dumped; a sample the model refuses is simply refused).

  A step that fails is skipped: a snapshot is never refused over a cache left cold. Then,
  unless ``CEAP_GC_FREEZE=false``, what priming made is frozen for the garbage collector
  (``gc.freeze``), as the handler's creation froze what came before it: no collection in a
  restored environment scans it.

- after restore, :func:`renew` renews what must not be shared by restored environments:

  - the S3 client's pooled HTTP connections are closed (the client stays; the next call opens a
    connection of its own);
  - Python's ``random`` generator is seeded again from ``os.urandom`` (the retry policy's jitter
    would otherwise be the same sequence in every restored environment);
  - the cold-start flags (ceap-stage's and Powertools' logger and metrics flags) are set again: the
    first invocation after a restore is a cold start even if the init phase invoked something.

``uuid.uuid4`` and ``secrets`` read ``os.urandom`` on every call and need nothing. Clients,
connections or random state of your own: register hooks of your own the same way (see
docs/snapstart.md).

When ``snapshot_restore_py`` cannot be imported (a runtime without it), :func:`register` primes
at once, in the init phase, and registers nothing.
"""

from __future__ import annotations

import gc
import logging
import random
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from ._runtime import StageRuntime
    from ._store import Store

__all__ = ["SNAP_START", "prime", "register", "renew"]

#: ``AWS_LAMBDA_INITIALIZATION_TYPE`` of an initialisation for a snapshot.
SNAP_START: Final = "snap-start"

#: A bucket name for the presigned URLs when the handler is not pinned to one.
_PRIME_BUCKET = "ceap-stage-snapstart-prime"
_PRIME_KEY = "executions/snapstart-prime/Stage/output.json"


def register(runtime: StageRuntime) -> bool:
    """Register ``runtime``'s :func:`prime` and :func:`renew` with ``snapshot_restore_py``.

    Called by the runtime when a handler is created inside Lambda for a SnapStart snapshot.

    Args:
        runtime: The handler's runtime, with its store and observer resolved.

    Returns:
        True when the hooks were registered; False when ``snapshot_restore_py`` cannot be
        imported, in which case ``runtime`` was primed at once.
    """
    try:
        import snapshot_restore_py
    except ImportError:
        prime(runtime)
        return False
    snapshot_restore_py.register_before_snapshot(prime, runtime)
    snapshot_restore_py.register_after_restore(renew, runtime)
    return True


def prime(runtime: StageRuntime) -> list[str]:
    """Load, before the snapshot, what ``runtime``'s first invocation would otherwise load.

    Returns:
        The names of the steps that ran (``s3``, ``logger``, ``metrics``, ``models``); a step
        that does not apply (no S3 store, no Powertools logger, metrics off) or fails is left out,
        and none runs when the handler's configuration cannot be resolved (its first invocation
        reports why).
    """
    try:
        resolved = runtime._resolve()
    except Exception:
        return []  # the first invocation resolves again and reports what fails
    steps: list[tuple[str, Callable[[], bool]]] = [
        ("s3", lambda: _prime_s3(resolved.store, resolved.bucket)),
        ("logger", lambda: _prime_logger(getattr(resolved.observer, "logger", None))),
        ("metrics", lambda: _prime_metrics(runtime)),
        ("models", lambda: _prime_models(runtime)),
        ("tracer", lambda: _prime_tracer(resolved.observer)),
    ]
    done = []
    for name, step in steps:
        try:
            if step():
                done.append(name)
        except Exception:  # best effort: never refuse a snapshot over a cold cache
            continue
    if resolved.settings.in_lambda and resolved.settings.gc_freeze:
        gc.freeze()  # what priming made is as long-lived as what init made
    return done


def renew(runtime: StageRuntime) -> None:
    """Renew, after a restore, what restored environments must not share."""
    from ._s3 import S3Store

    resolved = runtime._resolved
    if resolved is not None and isinstance(resolved.store, S3Store):
        resolved.store.close()
    random.seed()  # from os.urandom
    _reset_cold_start()


# -- priming -------------------------------------------------------------------------------


def _prime_s3(store: Store, bucket: str | None) -> bool:
    from ._s3 import S3Store

    if not isinstance(store, S3Store):
        return False
    client = store.client
    model = client.meta.service_model
    for operation in ("GetObject", "PutObject"):
        shapes = model.operation_model(operation)
        _ = shapes.input_shape.members if shapes.input_shape is not None else None
        _ = shapes.output_shape.members if shapes.output_shape is not None else None
    # Endpoint resolution, serialisation and signing, without a request.
    params = {"Bucket": bucket or _PRIME_BUCKET, "Key": _PRIME_KEY}
    client.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    client.generate_presigned_url(
        "put_object", Params={**params, "ContentType": "application/json"}, ExpiresIn=60
    )
    "s3.amazonaws.com".encode("idna")  # the codec a new connection's host name lookup uses
    return True


def _prime_logger(logger: Any) -> bool:
    formatter = getattr(logger, "registered_formatter", None)
    if not isinstance(formatter, logging.Formatter):
        return False
    record = logging.LogRecord(
        "ceap_stage", logging.INFO, __file__, 0, "snapshot primed", None, None
    )
    formatter.format(record)  # formatted, not written
    return True


def _prime_metrics(runtime: StageRuntime) -> bool:
    if not runtime._resolve().settings.metrics_enabled:
        return False
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    provider = AmazonCloudWatchEMFProvider(namespace="CeapStageSnapStart", service="")
    provider.add_dimension("stage", "snapstart-prime")
    provider.add_metric("StageDuration", "Milliseconds", 0.0)
    provider.serialize_metric_set()  # serialised, not written
    provider.clear_metrics()
    return True


def _prime_models(runtime: StageRuntime) -> bool:
    spec = runtime.spec
    _sample(spec.input_adapter)
    output = _sample(spec.output_adapter)
    if output is not None:
        spec.output_adapter.dump_json(output)
    return True


def _sample(adapter: TypeAdapter[Any]) -> Any:
    """Validate a tiny JSON sample with ``adapter``; the value, or None if refused."""
    for text in (b"[]", b"{}"):
        try:
            return adapter.validate_json(text)
        except ValidationError:
            continue
    return None


# -- renewing ------------------------------------------------------------------------------


def _prime_tracer(observer: Any) -> bool:
    # E.g. the X-Ray provider builds Powertools' Tracer (imports the X-Ray SDK, patches botocore).
    tracing = getattr(observer, "tracing", None)
    if tracing is None or not hasattr(tracing, "prepare"):
        return False
    observer.prepare()
    return True


def _reset_cold_start() -> None:
    # ceap-stage's process-wide flag (the observer's, if its module was imported).
    for name in ("ceap_stage._observability", "ceap_stage._powertools"):
        flag = getattr(sys.modules.get(name), "_ColdStart", None)
        if flag is not None:
            flag.value = True
    # Powertools' own flags, for the author's Logger and Metrics (only if already imported).
    logger_module = sys.modules.get("aws_lambda_powertools.logging.logger")
    if logger_module is not None:
        logger_module.is_cold_start = True  # type: ignore[attr-defined]
    metrics_module = sys.modules.get("aws_lambda_powertools.metrics.provider.cold_start")
    if metrics_module is not None:
        metrics_module.reset_cold_start_flag()
