"""The sandbox's HTTP server and its Python API (:class:`Sandbox`).

A standard-library threading HTTP server: every request gets its own thread, so a slow or reset
answer never holds up the others. It closes the connection after each answer (HTTP/1.0), which
keeps connection resets and timeouts independent from one request to the next.

Response header names go out lower-case, as the providers' HTTP/2 gateways deliver them (RFC 9113
§8.2: field names are lower-case in HTTP/2). The official Antom SDK (global-open-sdk-python 1.7.1,
``DefaultAlipayClient.__parse_header``) looks ``signature``, ``response-time`` and ``client-id`` up by
exact name, so with lower-case names an SDK-based merchant client accepts the sandbox's answers.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from refund_core.domain.profile import is_loopback_host
from refund_poller.sandbox.admin import ADMIN_PREFIX, Admin, AdminRequest
from refund_poller.sandbox.answers import JSON_TYPE, Reply
from refund_poller.sandbox.chaos import ChaosConfig
from refund_poller.sandbox.credentials import PROFILE_SPECS, Credentials
from refund_poller.sandbox.dialects import DIALECTS, RequestHeaders, route
from refund_poller.sandbox.inquiry import InquiryService, refund_view
from refund_poller.sandbox.notifications import NotifyTarget
from refund_poller.sandbox.notifier import Notifier
from refund_poller.sandbox.script import parse_script
from refund_poller.sandbox.state import LoggedRequest, SandboxState
from refund_poller.sandbox.traffic import TrafficConfig

MAX_BODY_BYTES = 64 * 1024
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104  # binding all interfaces is an explicit choice  # nosec B104


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow answer still sleeping must not keep the process alive
    inquiry: InquiryService
    admin: Admin

    def __init__(self, host: str, port: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; anything else is a sandbox bug worth a traceback."""
        if not isinstance(sys.exception(), ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "refund-poller-sandbox/1"
    sys_version = ""
    timeout = 10  # a client that never finishes its request does not hold a thread for ever

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the inquiry service logs one line per inquiry instead."""

    def send_header(self, keyword: str, value: str) -> None:
        """Every header name lower-case, as an HTTP/2 gateway presents it (Server and Date included)."""
        super().send_header(keyword.lower(), value)

    def _dispatch(self) -> None:
        server = cast(_Server, self.server)
        path, query = urlsplit(self.path).path, urlsplit(self.path).query
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self._write_json(413, {"error": f"the body must be at most {MAX_BODY_BYTES} bytes"})
            return
        body = self.rfile.read(int(length))
        dialect = route(path)
        if path.startswith(ADMIN_PREFIX):
            request = AdminRequest(self.command, path, body, self.client_address[0], query)
            status, document = server.admin.handle(request)
            self._write_json(status, document)
        elif dialect is not None and self.command == "POST":
            headers = RequestHeaders(self.headers.items())
            self._reply(server.inquiry.handle(dialect, path, headers, body))
        elif dialect is not None:
            self._write_json(405, {"error": "inquiryRefund takes POST"})
        else:
            self._write_json(404, {"error": f"no endpoint {path}"})

    def _reply(self, reply: Reply) -> None:
        if reply.delay > 0:
            time.sleep(reply.delay)
        if reply.reset:
            self._reset()
            return
        if reply.on_answer is not None:  # before writing: a client that has the answer must see it counted
            reply.on_answer()
        self._write(reply.status, reply.headers, reply.body)

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (linger 0) instead of an answer."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _write_json(self, status: int, document: Mapping[str, Any]) -> None:
        self._write(status, {"Content-Type": JSON_TYPE}, json.dumps(document).encode())

    def _write(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Sandbox:
    """The provider sandbox: all three providers' inquiryRefund on one loopback port.

    ``start()`` serves from a background thread (tests, benchmarks); ``serve_forever()`` serves from
    the calling thread (the CLI). Both bind first unless :meth:`bind` was called: that generates
    fresh keys and writes the merchant profiles.

    Example::

        with Sandbox(profiles_dir=Path("profiles")) as sandbox:
            profile = parse_profile(sandbox.profiles["antom"].read_text(), allow_plain_http=True)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        profiles_dir: Path,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if host not in WILDCARD_HOSTS and not is_loopback_host(host):
            raise ValueError(f"host {host!r}: the sandbox speaks plain http, so it listens on loopback only")
        self.host, self.requested_port, self.profiles_dir = host, port, profiles_dir
        self.state = SandboxState()
        self.profiles: dict[str, Path] = {}
        self.base_url = ""
        self._log = log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._notifier: Notifier | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def bind(self) -> Sandbox:
        """Listen, generate fresh keys and write the profiles; after this ``base_url`` and ``profiles`` are set."""
        if self._server is not None:
            raise RuntimeError("this sandbox is already bound")
        credentials = Credentials()
        server = _Server(self.host, self.requested_port)
        url_host = WILDCARD_HOSTS.get(self.host, self.host)
        url_host = f"[{url_host}]" if ":" in url_host else url_host
        self.base_url = f"http://{url_host}:{server.server_address[1]}"
        try:
            self.profiles = credentials.write_profiles(self.profiles_dir, self.base_url)
        except OSError:
            server.server_close()
            raise
        self._notifier = Notifier(credentials, self._log)
        server.inquiry = InquiryService(self.state, credentials, self._log, self._notifier)
        server.admin = Admin(self.state, self.base_url, self.profiles, self._notifier)
        self._server = server
        return self

    def start(self) -> Sandbox:
        """Serve from a background thread (binding first if needed)."""
        if self._thread is not None:
            raise RuntimeError("this sandbox is already serving")
        server = self._bound()
        self._thread = threading.Thread(target=server.serve_forever, name="refund-poller-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from this thread (binding first if needed) until interrupted; closes the port on the way out."""
        server = self._bound()
        try:
            server.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        """Stop a sandbox started with :meth:`start` and close its port (``serve_forever`` stops on Ctrl-C)."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(urlsplit(self.base_url).port or 0)

    # ---- steering and inspection (the admin endpoints, from Python) ------------------------
    def refund(self, provider: str, refund_id: str) -> dict[str, Any] | None:
        """What the sandbox recorded for a refund (polls, finalAt, script, lastPath …), or None."""
        record = self.state.refunds.get(provider, refund_id)
        return None if record is None else record.to_dict()

    def set_script(self, provider: str, refund_id: str, script: str) -> None:
        self.state.refunds.set_script(provider, refund_id, parse_script(script))

    def set_chaos(self, config: ChaosConfig) -> None:
        self.state.chaos.configure(config)

    def reset(self) -> None:
        self.state.reset()
        if self._notifier is not None:
            self._notifier.reset()

    def set_traffic(self, config: TrafficConfig) -> None:
        """Refuse inquiries over ``config.limit_per_second`` per merchant (``None``: no limit); counting goes on."""
        self.state.traffic.configure(config)

    def traffic(self) -> dict[str, Any]:
        """Inquiries per (provider/caller): requests, refused, maxPerSecond (any one-second span), per second."""
        return self.state.traffic.to_dict()

    def requests(self) -> list[LoggedRequest]:
        """The most recent inquiries as received, oldest first."""
        return self.state.requests.entries()

    # ---- keys (tests sign as the provider or the merchant would) ----------------------------------------
    def provider_key(self, provider: str) -> rsa.RSAPrivateKey:
        """The provider's private key: answers and notifications are signed with it (bound sandboxes only)."""
        return self._credentials().provider_keys[provider]

    def merchant_key(self, provider: str) -> rsa.RSAPrivateKey:
        """The merchant's private key of the provider's profiles: inquiries are signed with it."""
        return self._credentials().merchant_keys[provider]

    # ---- notifications (the /_sandbox/notify endpoints, from Python) --------------------------------------
    @property
    def notifier(self) -> Notifier:
        """The notification sender (bound sandboxes only)."""
        if self._notifier is None:
            raise RuntimeError("bind or start the sandbox first")
        return self._notifier

    def set_notify_target(self, provider: str, target: NotifyTarget) -> None:
        """Push ``provider`` notifications of ``target.merchant``'s refunds to ``target.url`` from now on."""
        self.notifier.set_target(provider, target)

    def notify_to(self, notify_base_url: str, merchants: Mapping[str, str]) -> None:
        """Push every profile's notifications to a stack's endpoint, ``<notify_base_url>/notify/<provider>/<merchant>``.

        ``merchants`` maps a profile name to the merchant name the stack knows it by (devstack.MERCHANTS).
        """
        for spec in PROFILE_SPECS:
            merchant = merchants[spec.name]
            url = f"{notify_base_url.rstrip('/')}/notify/{spec.provider}/{merchant}"
            self.set_notify_target(spec.provider, NotifyTarget(url=url, merchant=merchant, client_id=spec.caller_id))

    def set_script_with_notify(self, provider: str, refund_id: str, script: str, target: NotifyTarget) -> None:
        """Script a refund whose own notifications go to ``target`` (whatever its merchant's target)."""
        self.state.refunds.set_script(provider, refund_id, parse_script(script), target)

    def set_notify_speedup(self, speedup: float) -> None:
        """Divide the providers' retry intervals by ``speedup`` (1: real time)."""
        self.notifier.speedup = speedup

    def push(self, provider: str, target: NotifyTarget, status: str, refund_id: str, refund_request_id: str) -> str:
        """Push one notification now (``status`` SUCCESS or FAIL) with the provider's retries; its id."""
        dialect = DIALECTS[provider]
        state = {"SUCCESS": "success", "FAIL": "fail"}[status]
        notification = self.notifier.push(dialect, target, refund_view(dialect, state, refund_id, refund_request_id))
        if notification is None:
            raise ValueError(f"{provider} never pushes {status}")
        return notification

    def pushes(self, **match: str) -> list[dict[str, Any]]:
        """Every push attempt so far (the admin GET /_sandbox/pushes), filtered by equal fields."""
        return self.notifier.pushes.entries(**match)

    # ---- internals ------------------------------------------------------------------------
    def _credentials(self) -> Credentials:
        return self.notifier.credentials

    def _bound(self) -> _Server:
        if self._server is None:
            self.bind()
        assert self._server is not None  # bind() sets it
        return self._server

    def _close(self) -> None:
        if self._notifier is not None:
            self._notifier.stop()
        if self._server is not None:
            self._server.server_close()
        self._server = None
        self._thread = None
