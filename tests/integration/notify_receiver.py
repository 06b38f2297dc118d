"""A merchant's notification endpoint for tests: a real HTTP(S) server on 127.0.0.1 that verifies every push.

It checks signatures on its own, with the provider public key from the sandbox's merchant profile and the layer's
signature code (refund_core.providers.signing and the adapters' content builders), the way a merchant's endpoint
must: "verified" means a merchant would have believed the push.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from refund_core.providers import signing
from refund_core.providers.alphapay import nonce_content
from refund_core.providers.antom import client_id_content
from refund_poller.sandbox import Sandbox

ACK = {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}
PROFILE_OF = {"antom": "antom", "alipayplus": "alipayplus", "alphapay": "alphapay"}


@dataclass(frozen=True)
class Arrival:
    """One request as the receiver got it, and whether its signature verified."""

    provider: str
    merchant: str
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.body))


class Receiver:
    """A merchant's notification endpoint: verify, then acknowledge (or refuse the first ``refuse`` pushes)."""

    def __init__(self, sandbox: Sandbox, context: ssl.SSLContext | None = None) -> None:
        self.keys = {
            provider: signing.load_public_key(json.loads(sandbox.profiles[name].read_text())["providerPublicKey"])
            for provider, name in PROFILE_OF.items()
        }
        self.arrivals: list[Arrival] = []
        self.refuse = 0  # verified pushes answered 500 before acknowledging
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if context is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, provider: str, merchant: str) -> str:
        return f"{self.base_url}/notify/{provider}/{merchant}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, merchant: str) -> list[Arrival]:
        with self._lock:
            return [arrival for arrival in self.arrivals if arrival.merchant == merchant]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        _, _, provider, merchant = handler.path.split("/")
        verified = verify_push(self.keys[provider], provider, handler.path, dict(handler.headers.items()), body)
        arrival = Arrival(provider, merchant, handler.path, dict(handler.headers.items()), body, verified, time.time())
        with self._lock:
            self.arrivals.append(arrival)
            refuse = verified and len([a for a in self.arrivals if a.verified]) <= self.refuse
        if not verified:
            self._reply(handler, 401, {"error": "signature"})
        elif refuse:
            self._reply(handler, 500, {"error": "not stored yet"})
        else:
            self._reply(handler, 200, ACK)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def verify_push(key: Any, provider: str, path: str, headers: dict[str, str], body: bytes) -> bool:
    """A merchant's check of a push: the provider's algorithm name, key version 1, a signature over the bytes."""
    pairs = signing.parse_signature_header(headers.get("Signature"))
    if provider == "alphapay":
        names = ("Merchant-Code", "Request-Time", "Nonce")
        if pairs.get("algorithm") != "RS256" or any(not headers.get(name) for name in names):
            return False
        content = nonce_content(path, headers["Merchant-Code"], headers["Request-Time"], headers["Nonce"], body)
    else:
        if pairs.get("algorithm") != "RSA256" or not headers.get("Client-Id") or not headers.get("Request-Time"):
            return False
        content = client_id_content(path, headers["Client-Id"], headers["Request-Time"], body)
    return pairs.get("keyVersion") == "1" and signing.verify(key, content, pairs.get("signature", ""))
