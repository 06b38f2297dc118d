"""API Gateway HTTP APIs on loopback: ``sam local start-api`` for the template's ``HttpApi`` events, without Docker.

Knows no provider and no route of its own: it serves whatever routes the template's functions declare, turns each
request into the payload format 2.0 event Lambda would receive, invokes the function through the local Lambda API
(the same workers, concurrency rules and logs as every other invocation) and answers with what it returned.

What API Gateway does that the function relies on is done here too (docs/internals.md, "Notifications"): the 10 MB
payload cap, route throttling (token bucket: rate and burst), the integration timeout, the 404/413/429/500/503
answers with API Gateway's bodies, lower-cased and comma-joined headers, and base64 bodies that are not text.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from refund_poller.local.deploy import Created, DeployContext
from refund_poller.local.errors import DeploymentError

# "Amazon API Gateway quotas for configuring and running an HTTP API":
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_INTEGRATION_TIMEOUT_MS = 30_000
# Lambda's synchronous invocation payload (request and response): 6 MB.
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
MAX_INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024
# Content types API Gateway passes to Lambda as text; any other body arrives base64-encoded.
_TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded)|[^;]*\+(json|xml))", re.I)
_PATH_VARIABLE = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer (a provider's sender timing out) is its business, not an error
        of the API: quiet, like API Gateway; anything else keeps its traceback."""
        if not isinstance(sys.exception(), ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class HttpApiDeployment:
    """An ``AWS::Serverless::HttpApi``: its id and the default route throttling (None: account limits only)."""

    logical_id: str
    api_id: str
    rate_limit: float | None = None
    burst_limit: int | None = None


@dataclass
class HttpRoute:
    """One ``HttpApi`` event of a function: ``METHOD /path/{var}`` on an API."""

    api_id: str
    method: str
    path: str
    function_name: str
    timeout_ms: int = MAX_INTEGRATION_TIMEOUT_MS
    payload_format: str = "2.0"
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        regex, position = "", 0
        for match in _PATH_VARIABLE.finditer(self.path):
            regex += re.escape(self.path[position : match.start()])
            regex += f"(?P<{match[1]}>.+)" if match[2] else f"(?P<{match[1]}>[^/]+)"
            position = match.end()
        self.pattern = re.compile(regex + re.escape(self.path[position:]))

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def create_http_api(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    """Register the API; its routes come with the functions' ``HttpApi`` events (``add_route``)."""
    settings = properties.get("DefaultRouteSettings") or {}
    rate, burst = settings.get("ThrottlingRateLimit"), settings.get("ThrottlingBurstLimit")
    api = HttpApiDeployment(
        logical_id,
        secrets.token_hex(5),  # API Gateway ids are 10 lower-case alphanumerics
        None if rate is None else float(rate),
        None if burst is None else int(burst),
    )
    context.deployment.http_apis[api.api_id] = api
    return Created(api.api_id, {"ApiEndpoint": f"https://{api.api_id}.execute-api.{context.region}.amazonaws.com"})


def add_route(context: DeployContext, function_name: str, where: str, properties: dict[str, Any]) -> None:
    api_id = properties.get("ApiId")
    if not isinstance(api_id, str) or api_id not in context.deployment.http_apis:
        raise DeploymentError(f"{where}: ApiId must name an AWS::Serverless::HttpApi of the template")
    if str(properties.get("PayloadFormatVersion", "2.0")) != "2.0":
        raise DeploymentError(f"{where}: only PayloadFormatVersion 2.0 is emulated locally")
    timeout = int(properties.get("TimeoutInMillis", MAX_INTEGRATION_TIMEOUT_MS))
    if not 50 <= timeout <= MAX_INTEGRATION_TIMEOUT_MS:
        raise DeploymentError(
            f"{where}: TimeoutInMillis must be 50 to {MAX_INTEGRATION_TIMEOUT_MS} (API Gateway's range)"
        )
    route = HttpRoute(
        api_id, str(properties.get("Method", "ANY")).upper(), str(properties["Path"]), function_name, timeout
    )
    context.deployment.http_routes.append(route)


class _TokenBucket:
    """API Gateway's throttle: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _gateway(status: int, message: str) -> _Answer:
    """An answer API Gateway gives itself (the function never saw the request)."""
    return _Answer(status, {"Content-Type": "application/json"}, json.dumps({"message": message}).encode())


class LocalHttpApi:
    """Serves the deployment's HTTP API routes on ``127.0.0.1:<port>`` (0: any free port)."""

    def __init__(
        self,
        apis: dict[str, HttpApiDeployment],
        routes: list[HttpRoute],
        lambda_client: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str = "123456789012",
    ) -> None:
        self.apis, self.routes = apis, routes
        self._lambda = lambda_client
        self._account_id = account_id
        self._buckets = {
            api.api_id: _TokenBucket(api.rate_limit, api.burst_limit or 1)
            for api in apis.values()
            if api.rate_limit is not None
        }
        self._server = _QuietServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-http-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def answer(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, peer: str) -> _Answer:
        """API Gateway's handling of one request."""
        raw_path = urlsplit(target).path
        query = urlsplit(target).query
        for route in self.routes:
            match = route.pattern.fullmatch(raw_path)
            if match is None or route.method not in (method, "ANY"):
                continue
            bucket = self._buckets.get(route.api_id)
            if bucket is not None and not bucket.take():
                return _gateway(429, "Too Many Requests")
            event = self._event(route, method, raw_path, query, headers, body, peer, match)
            return self._invoke(route, event)
        return _gateway(404, "Not Found")

    def _event(
        self,
        route: HttpRoute,
        method: str,
        raw_path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        peer: str,
        match: re.Match[str],
    ) -> dict[str, Any]:
        joined: dict[str, str] = {}
        for name, value in headers:  # payload 2.0: names lower-cased, repeated headers joined with commas
            key = name.lower()
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        content_type = joined.get("content-type", "")
        text: str | None = None
        if _TEXT_TYPES.match(content_type):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": joined,
            "requestContext": {
                "accountId": self._account_id,
                "apiId": route.api_id,
                "domainName": joined.get("host", ""),
                "domainPrefix": route.api_id,
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": peer,
                    "userAgent": joined.get("user-agent", ""),
                },
                "requestId": uuid.uuid4().hex[:20],
                "routeKey": route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "pathParameters": {name: unquote(value) for name, value in match.groupdict().items()},
            "isBase64Encoded": text is None and bool(body),
        }
        if body:
            event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
        return event

    def _invoke(self, route: HttpRoute, event: dict[str, Any]) -> _Answer:
        payload = json.dumps(event).encode()
        if len(payload) > MAX_INVOKE_PAYLOAD_BYTES:  # Lambda refuses the invocation: the function never runs
            return _gateway(413, "Request Entity Too Large")
        client = self._lambda(Config(read_timeout=route.timeout_ms / 1000, retries={"max_attempts": 0}))
        try:
            response = client.invoke(FunctionName=route.function_name, Payload=payload)
        except ReadTimeoutError:
            return _gateway(503, "Service Unavailable")
        except ClientError:
            return _gateway(500, "Internal Server Error")
        text = response["Payload"].read().decode("utf-8")
        if response.get("FunctionError"):
            return _gateway(500, "Internal Server Error")
        return _response(json.loads(text) if text else None)


def _response(result: Any) -> _Answer:
    """Payload 2.0's response: ``{statusCode, headers, body, isBase64Encoded}``, or anything else as a JSON 200."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return _Answer(200, {"Content-Type": "application/json"}, json.dumps(result).encode())
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    return _Answer(int(result["statusCode"]), headers, raw)


def _handler(api: LocalHttpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_PAYLOAD_BYTES:
                answer = _gateway(413, "Request Entity Too Large")
                self.close_connection = True  # the body is not read
            else:
                body = self.rfile.read(length) if length else b""
                answer = api.answer(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
            self.end_headers()
            self.wfile.write(answer.body)

        do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815  # http.server's naming

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            return None

    return Handler
