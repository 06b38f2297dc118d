"""An HTTP proxy in front of the emulated AWS endpoint that throttles chosen API operations.

moto never throttles, but the handlers must treat throttling as transient (batch item failures,
workflow retries). Functions pointed at this proxy see real ``ThrottlingException`` answers over
HTTP for the operations and share of calls configured; everything else is forwarded unchanged.
Operations are named by their ``X-Amz-Target`` header, e.g. ``AWSStepFunctions.StartExecution``
or ``DynamoDB_20120810.UpdateItem``.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})
# DynamoDB names its throttling error differently from the other JSON-protocol services.
_ERROR_TYPES = {"DynamoDB_20120810": "ProvisionedThroughputExceededException"}


class FaultProxy:
    """``FaultProxy(upstream).start()``; then ``throttle({"AWSStepFunctions.StartExecution": 1.0})``."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0, seed: int | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self._rules: dict[str, float] = {}
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._lock = threading.Lock()
        self.throttled: Counter[str] = Counter()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def throttle(self, rules: dict[str, float]) -> None:
        """Throttle each named operation with the given probability (1.0: always); {} turns it off."""
        with self._lock:
            self._rules = dict(rules)

    def should_throttle(self, target: str) -> bool:
        with self._lock:
            share = self._rules.get(target, 0.0)
            hit = share > 0 and self._random.random() < share
            if hit:
                self.throttled[target] += 1
            return hit

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the functions' own logs are what matter."""

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                if target and proxy.should_throttle(target):
                    self._throttled(target)
                else:
                    self._forward(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any  # noqa: N815 - stdlib naming

            def _throttled(self, target: str) -> None:
                error = _ERROR_TYPES.get(target.split(".", 1)[0], "ThrottlingException")
                payload = json.dumps({"__type": error, "message": "Rate exceeded (injected)"}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-ErrorType", error)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

        return Handler
