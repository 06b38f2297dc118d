"""One client process for the per-inquiry overhead benchmark: ours (refund_core) or the official Antom SDK.

Run as ``python bench/inquiry_worker.py ours|sdk PROFILE_JSON REFUND_ID``; then each line ``N`` on stdin makes N
inquiries and answers one JSON line with the CPU time (``time.process_time``) and wall time of each, in ms.
The sandbox runs in another process, so its work is not counted here. Standard library only at the top level:
the SDK variant runs in bench/.venv-sdk, which has neither the project nor its dependencies.

What one inquiry is, for both: build the body, sign it, POST it over a new loopback connection (the sandbox
answers HTTP/1.0 and closes), verify the response signature, parse the answer into the client's result object.
Key material is parsed once, at set-up, where the client allows it (ours); the SDK re-reads its PEM keys on
every call by design, and that is part of its per-call cost.
"""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


def ours(profile_text: str, refund_id: str) -> Callable[[], bool]:
    profile_module: Any = importlib.import_module("refund_core.domain.profile")
    providers: Any = importlib.import_module("refund_core.providers")
    adapter = providers.provider_for(profile_module.parse_profile(profile_text))
    query = providers.RefundQuery(refund_request_id=refund_id)

    def call() -> bool:
        observation = adapter.inquire(query)
        return bool(observation.verified and observation.status.value == "SUCCESS")

    return call


def sdk(profile_text: str, refund_id: str) -> Callable[[], bool]:
    """The official SDK's DefaultAlipayClient.execute(AlipayInquiryRefundRequest), then AlipayInquiryRefundResponse.

    Two shims, neither touching signing, verification or parsing:
    1. the SDK opens ``HTTPSConnection(host, 443)`` whatever the gateway URL says (net/default_http_rpc.py), so it
       cannot reach a plain-http loopback port: its connection factory is replaced by a plain HTTPConnection to
       the gateway's host and port;
    2. the SDK looks response headers up by exact lowercase name (``signature``, ``response-time``, ``client-id``),
       as an HTTP/2 gateway delivers them; our HTTP/1.0 sandbox sends ``Signature``/``Response-Time``/``Client-Id``
       (header names are case-insensitive in HTTP), so the names are lowercased before the SDK reads them.
    """
    serialization: Any = importlib.import_module("cryptography.hazmat.primitives.serialization")
    rpc: Any = importlib.import_module("com.alipay.ams.api.net.default_http_rpc")
    client_module: Any = importlib.import_module("com.alipay.ams.api.default_alipay_client")
    request_module: Any = importlib.import_module("com.alipay.ams.api.request.pay.alipay_inquiry_refund_request")
    response_module: Any = importlib.import_module("com.alipay.ams.api.response.pay.alipay_inquiry_refund_response")
    profile = json.loads(profile_text)
    gateway = urlsplit(profile["baseUrl"])

    class LowercaseHeadersResponse(http.client.HTTPResponse):
        def getheaders(self) -> list[tuple[str, str]]:
            return [(name.lower(), value) for name, value in super().getheaders()]

    class LoopbackConnection(http.client.HTTPConnection):
        response_class = LowercaseHeadersResponse

    def connection(url: str, timeout: int = 15) -> http.client.HTTPConnection:
        return LoopbackConnection(gateway.hostname or "127.0.0.1", gateway.port, timeout=timeout)

    setattr(rpc, "__get_http_connection", connection)  # the module-private name cannot be assigned
    # The SDK wraps the key in "RSA PRIVATE KEY" (PKCS#1) armour itself: give it the PKCS#1 Base64 body.
    private_key = serialization.load_der_private_key(base64.b64decode(profile["privateKey"]), password=None)
    pkcs1 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    client = client_module.DefaultAlipayClient(
        profile["baseUrl"], profile["clientId"], base64.b64encode(pkcs1).decode(), profile["providerPublicKey"]
    )

    def call() -> bool:
        request = request_module.AlipayInquiryRefundRequest()
        request.refund_request_id = refund_id
        body = client.execute(request)
        response = response_module.AlipayInquiryRefundResponse(body)
        status = getattr(response.result.result_status, "value", None)
        return bool(status == "S" and getattr(response.refund_status, "value", None) == "SUCCESS")

    return call


def main() -> None:
    impl, profile_path, refund_id = sys.argv[1:4]
    with open(profile_path, encoding="utf-8") as profile_file:
        profile_text = profile_file.read()
    call = ours(profile_text, refund_id) if impl == "ours" else sdk(profile_text, refund_id)
    print(json.dumps({"ready": impl}), flush=True)
    for line in sys.stdin:
        count = int(line)
        cpu: list[float] = []
        wall: list[float] = []
        ok = 0
        for _ in range(count):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            ok += call()
            cpu.append((time.process_time() - cpu_start) * 1000)
            wall.append((time.perf_counter() - wall_start) * 1000)
        print(json.dumps({"cpu_ms": cpu, "wall_ms": wall, "ok": ok}), flush=True)


if __name__ == "__main__":
    main()
