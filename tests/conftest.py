"""Fixtures shared by the whole test suite.

- Every test runs with fake AWS credentials and region, and without any ``CEAP_*`` or endpoint
  variable inherited from the shell (tests that need one set it with ``monkeypatch``).
- ``pytest_collection_modifyitems``: tests sharing an expensive session fixture (Spark, the
  Lambda layer build) form one pytest-xdist group, so ``--dist loadgroup`` sets it up once.
- ``moto_server``: one moto S3 server over real HTTP on 127.0.0.1 (a free port) for the session
  (of each pytest-xdist worker); it yields the endpoint URL. Use a fresh bucket per test:
  ``moto_bucket`` makes one, and :func:`create_bucket` makes more.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FAKE_REGION = "us-east-1"

# Variables that would make a test reach real AWS or change how the SDK picks its store.
_SCRUBBED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "CEAP_STORE",
    "CEAP_WORKFLOW_BUCKET",
    "CEAP_EXPECTED_BUCKET_OWNER",
    "CEAP_SSE_KMS_KEY_ID",
)


# Hypothesis: no timing checks (a loaded machine, or another xdist worker, makes any test
# slow; speed is measured by bench/, never asserted in tests).
settings.register_profile("ceap", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ceap")

#: pytest-xdist groups (``make test`` runs ``--dist loadgroup``): tests that share an expensive
#: session fixture run on one worker, so it is set up once rather than once per worker. A test
#: joins a group when it uses one of the names as a fixture or carries it as a marker.
_XDIST_GROUPS = {
    # One local JVM: the `spark` fixture (tests/glue/conftest.py), and tests marked `spark`
    # whose code calls getOrCreate (it returns that session).
    "spark": frozenset({"spark"}),
    # One layer build (tests/layer/conftest.py); the other layer tests build their own.
    "layer": frozenset({"host_layer", "layer_python", "project_snapshot", "snapshot_wheel"}),
    # One layer cache for `package`/`deploy` (tests/deploy/conftest.py): each target built once.
    "deploy": frozenset({"layer_cache"}),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the tests of each expensive session fixture into one pytest-xdist group."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        uses = {*getattr(item, "fixturenames", ()), *(mark.name for mark in item.iter_markers())}
        for group, names in _XDIST_GROUPS.items():
            if names & uses:
                item.add_marker(pytest.mark.xdist_group(group))
                break


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; no inherited endpoint, profile or ``CEAP_*`` setting."""
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", FAKE_REGION)
    monkeypatch.setenv("AWS_REGION", FAKE_REGION)
    # Never ask an instance metadata service for credentials or a region.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def _isolated_process_state() -> Iterator[None]:
    """Undo what a test leaves in process-wide state: environment variables set without
    monkeypatch (e.g. by the CLI run in-process) and the level and handlers of loggers that
    existed before the test (a Powertools ``Logger`` sets its level once per process, at its
    first creation; the Glue helper installs its handler on first use)."""
    import logging
    import os

    environ = dict(os.environ)
    manager = logging.Logger.manager
    loggers = {
        name: (logger.level, list(logger.handlers), logger.propagate)
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    for name, (level, handlers, propagate) in loggers.items():
        logger = manager.loggerDict.get(name)
        if isinstance(logger, logging.Logger):
            if logger.level != level:
                logger.setLevel(level)
            if logger.handlers != handlers:
                logger.handlers[:] = handlers
            logger.propagate = propagate
    if dict(os.environ) != environ:
        os.environ.clear()
        os.environ.update(environ)


def run_python(code: str, *args: str, env: Mapping[str, str], cwd: Path | str | None = None) -> str:
    """Run ``code`` in a fresh interpreter (``python -c code args...``), assert that it
    succeeded (its stderr is the message), and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def last_json(stdout: str, prefix: str = "") -> Any:
    """The JSON of the last line of ``stdout`` that starts with ``prefix`` (prefix removed)."""
    line = next(x for x in reversed(stdout.splitlines()) if x.startswith(prefix))
    return json.loads(line.removeprefix(prefix))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_bucket_name(prefix: str = "ceap-test") -> str:
    """A valid, unique S3 bucket name."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def s3_client(endpoint_url: str | None = None) -> S3Client:
    """A plain boto3 S3 client (against ``endpoint_url`` when given, e.g. ``moto_server``)."""
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=FAKE_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_bucket(client: S3Client, name: str | None = None) -> str:
    """Create a bucket (a fresh unique one unless ``name`` is given) and return its name."""
    bucket = name or new_bucket_name()
    client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 (free port) for the whole session; yields its endpoint URL.

    Its state is shared by every test of the session (of the pytest-xdist worker, each has its
    own server): use unique bucket names. The server binds port 0, so the system picks the port
    as it binds: workers starting at the same time cannot race for one port.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_server_client(moto_server: str) -> S3Client:
    """A boto3 S3 client talking to ``moto_server`` over HTTP."""
    return s3_client(moto_server)


@pytest.fixture
def moto_bucket(moto_server_client: S3Client) -> str:
    """A fresh bucket on ``moto_server``."""
    return create_bucket(moto_server_client)
