"""Fixtures of the reliability suite: a fault-injecting HTTP proxy in front of moto's server.

:class:`FaultProxy` is a small threaded HTTP proxy on 127.0.0.1 that sits between boto3
(``endpoint_url=proxy.endpoint_url``) and moto's ``ThreadedMotoServer``. For a chosen share of
requests (seeded randomness) it answers ``503 SlowDown`` or ``500 InternalError`` with S3's XML
error body, drops the connection without answering, or (``truncate``) sends the real response's
headers and only half of its body. Every other request is forwarded unchanged.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from ceap_stage import S3Store
from ceap_stage._s3 import RetryPolicy
from tests.conftest import FAKE_REGION

#: Fault kinds the proxy can inject.
FAULT_KINDS: tuple[str, ...] = ("503", "500", "drop")

#: A retry policy for tests: many quick attempts, bounded by their count. The time bound is
#: generous on purpose: on a loaded machine one attempt can take seconds, and these tests check
#: what survives faults, not the time bound (test_faults.py checks that with its own policies).
FAST_RETRY = RetryPolicy(max_attempts=12, base_delay=0.001, max_delay=0.01, max_elapsed=30.0)

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
)
_ERRORS = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
}


class FaultProxy:
    """A threaded HTTP proxy that injects S3 faults into a share of the requests.

    Args:
        upstream: The real server's endpoint URL (moto).
        rate: The share of requests that get a fault (0.0 to 1.0).
        seed: Seed of the fault decisions.
        kinds: The faults to choose from, uniformly: ``"503"``, ``"500"``, ``"drop"``,
            ``"truncate"``.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        kinds: Sequence[str] = FAULT_KINDS,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.rate = rate
        self.kinds = tuple(kinds)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        #: Requests seen, by outcome: "forwarded" or the fault kind.
        self.counts: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        """The URL to give boto3 as ``endpoint_url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def faults(self) -> int:
        """How many requests got a fault so far."""
        return sum(n for kind, n in self.counts.items() if kind != "forwarded")

    def decide(self) -> str | None:
        """The fault for the next request, or None to forward it."""
        with self._lock:
            fault = self._rng.choice(self.kinds) if self._rng.random() < self.rate else None
            self.counts[fault or "forwarded"] += 1
            return fault

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 does; 100-continue is answered for us
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: Any
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            headers["Content-Length"] = str(len(body))
        proxy: FaultProxy = self.server.proxy
        for attempt in (1, 2):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=60
                )
            try:
                self._upstream.request(self.command, self.path, body=body, headers=headers)
                response = self._upstream.getresponse()
                data = response.read()
                return response.status, response.reason, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _handle(self) -> None:
        body = self._read_body()
        fault = self.server.proxy.decide()
        if fault == "drop":
            self._drop()
            return
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<RequestId>{uuid.uuid4().hex}</RequestId></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(xml)
            return
        status, reason, headers, data = self._forward(body)
        self.send_response(status, reason)
        for name, value in headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower in ("server", "date"):
                continue
            if lower == "content-length" and self.command != "HEAD":
                continue
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop()
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


@pytest.fixture
def fault_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of the session's moto server (no faults until told)."""
    proxy = FaultProxy(moto_server, seed=7).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def proxied_store(proxy: FaultProxy, retry: RetryPolicy = FAST_RETRY) -> S3Store:
    """An S3Store whose requests go through ``proxy``."""
    return S3Store(endpoint_url=proxy.endpoint_url, region_name=FAKE_REGION, retry=retry)
