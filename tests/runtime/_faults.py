"""A fault-injecting HTTP proxy in front of the moto S3 server.

moto cannot throttle, fail with 5xx, deny access or hang. This proxy (127.0.0.1, a free port)
forwards every request to the real moto server over HTTP, except the ones a :class:`Fault` rule
matches: those get the S3 error response (or the delay) the rule names. botocore talks real HTTP
to it, so the whole client stack - parsing, error classes, timeouts - is exercised.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class Fault:
    """Fail requests whose method is ``method`` and whose path contains ``path_contains``.

    Args:
        status: HTTP status of the error response.
        code: S3 error code in the XML body.
        times: How many matching requests fail (None: all of them).
        delay: Seconds to wait before answering (longer than the client's read timeout to
            simulate a timeout).
    """

    method: str
    path_contains: str
    status: int = 503
    code: str = "SlowDown"
    times: int | None = None
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if method != self.method or self.path_contains not in path:
            return False
        return self.times is None or self.hits < self.times


@dataclass
class FaultProxy:
    """The running proxy: its endpoint URL, its rules and the requests it saw."""

    upstream: str
    endpoint_url: str = ""
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str, path_contains: str) -> int:
        """How many requests with this method and path fragment arrived."""
        return sum(1 for m, p, _ in self.requests if m == method and path_contains in p)


def _handler_class(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlparse(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with proxy.lock:
                fault = next((f for f in proxy.faults if f.matches(self.command, self.path)), None)
                if fault is not None:
                    fault.hits += 1
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    f"<Error><Code>{fault.code}</Code><Message>injected</Message>"
                    "<RequestId>fault</RequestId></Error>"
                ).encode()
                with proxy.lock:  # recorded before the reply: the client may check at once
                    proxy.requests.append((self.command, self.path, fault.status))
                self._reply(fault.status, {"Content-Type": "application/xml"}, payload)
                return
            conn = http.client.HTTPConnection(upstream.netloc, timeout=30)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in ("connection", "content-length"):
                        conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
                headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, response.status))
                self._reply(response.status, headers, data)
            finally:
                conn.close()

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` in front of ``upstream`` (e.g. the ``moto_server`` URL)."""
    proxy = FaultProxy(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(proxy))
    server.daemon_threads = True
    proxy.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
