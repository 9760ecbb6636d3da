"""A small Lambda Runtime API server on 127.0.0.1, enough to drive the real ``awslambdaric``.

It implements the endpoints a runtime client calls
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):

- ``GET  /2018-06-01/runtime/invocation/next``: hands out the next queued event (blocks until
  there is one), with the request id, deadline, function ARN and trace id headers;
- ``POST /2018-06-01/runtime/invocation/{id}/response`` and ``.../{id}/error``;
- ``POST /2018-06-01/runtime/init/error``;
- ``GET  /2018-06-01/runtime/restore/next`` (a SnapStart initialisation: the client calls it
  after its before-snapshot hooks; answered at once, as if the snapshot were taken and restored,
  and recorded in :attr:`RuntimeApi.restored`) and ``POST .../restore/error``.

Everything the client posts is recorded as a :class:`Posted` in :attr:`RuntimeApi.posted`.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:score"
TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"


@dataclass(frozen=True)
class Posted:
    """What the runtime client posted: ``kind`` is response, error, init_error or restore_error."""

    kind: str
    request_id: str | None
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client was stopped mid-connection: expected when a test ends
        super().handle_error(request, client_address)


class RuntimeApi:
    """The Runtime API server. ``invoke(event)`` queues an invocation and returns its id.

    >>> with RuntimeApi() as api:  # doctest: +SKIP
    ...     request_id = api.invoke({"k": "v"})
    ...     # start awslambdaric with AWS_LAMBDA_RUNTIME_API=api.address
    ...     posted = api.next_posted(timeout=30)
    """

    def __init__(self, *, sampled: bool = False) -> None:
        self.sampled = sampled
        self._events: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.posted: queue.Queue[Posted] = queue.Queue()
        #: Set when the client asked for ``restore/next`` (SnapStart).
        self.restored = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """``host:port``, the value of ``AWS_LAMBDA_RUNTIME_API``."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def invoke(self, event: Any) -> str:
        """Queue an invocation of ``event``; returns its request id."""
        request_id = str(uuid.uuid4())
        self._events.put((request_id, json.dumps(event).encode()))
        return request_id

    def next_posted(self, timeout: float) -> Posted:
        """The next thing the client posted (raises ``queue.Empty`` after ``timeout`` s)."""
        return self.posted.get(timeout=timeout)

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._events.put(None)  # releases a client blocked on /next
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 so that `Expect: 100-continue` (sent by the client's libcurl for larger
            # error bodies) is answered at once instead of after curl's one-second wait.
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: HTTPStatus, body: bytes = b"{}", **headers: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was stopped while waiting for its next event

            def do_GET(self) -> None:
                if self.path == f"{PREFIX}/restore/next":
                    api.restored.set()
                    self._reply(HTTPStatus.OK)
                    return
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(HTTPStatus.NOT_FOUND)
                    return
                item = api._events.get()
                if item is None:
                    api._events.put(None)  # keep releasing later callers too
                    self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b'{"errorType":"Shutdown"}')
                    return
                request_id, body = item
                deadline_ms = int((time.time() + 60) * 1000)
                self._reply(
                    HTTPStatus.OK,
                    body,
                    **{
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": (
                            f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled={int(api.sampled)}"
                        ),
                    },
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    posted = Posted("init_error", None, body, headers)
                elif parts == ["restore", "error"]:
                    posted = Posted("restore_error", None, body, headers)
                elif (
                    len(parts) == 3
                    and parts[0] == "invocation"
                    and parts[2]
                    in (
                        "response",
                        "error",
                    )
                ):
                    posted = Posted(parts[2], parts[1], body, headers)
                else:
                    self._reply(HTTPStatus.NOT_FOUND)
                    return
                api.posted.put(posted)
                self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')

        return Handler
