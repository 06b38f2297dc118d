"""One client process for the per-inquiry overhead benchmark: ours (refund_core) or the official Antom SDK.

Run as ``python bench/inquiry_worker.py ours|sdk PROFILE_JSON REFUND_ID``; then each line ``N`` on stdin makes N
inquiries and answers one JSON line with the CPU time (``time.process_time``) and wall time of each, in ms.
``sdk-once`` makes one SDK inquiry and prints what the SDK made of the answer as one JSON line (the official-SDK
compatibility test uses it).
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
    # Development tooling against the loopback sandbox: plain http allowed, as the CLI does.
    adapter = providers.provider_for(profile_module.parse_profile(profile_text, allow_plain_http=True))
    query = providers.RefundQuery(refund_request_id=refund_id)

    def call() -> bool:
        observation = adapter.inquire(query)
        return bool(observation.verified and observation.status.value == "SUCCESS")

    return call


def sdk_client(profile_text: str) -> Any:
    """The official SDK's ``DefaultAlipayClient`` for a sandbox profile, as a merchant would build it.

    One shim, touching neither signing, verification nor parsing: the SDK opens ``HTTPSConnection(host, 443)``
    whatever the gateway URL says (net/default_http_rpc.py), so it cannot reach a plain-http loopback port: its
    connection factory is replaced by a plain HTTPConnection to the gateway's host and port. Response headers need
    no shim: the sandbox sends lower-case names, as the SDK expects from an HTTP/2 gateway.
    """
    serialization: Any = importlib.import_module("cryptography.hazmat.primitives.serialization")
    rpc: Any = importlib.import_module("com.alipay.ams.api.net.default_http_rpc")
    client_module: Any = importlib.import_module("com.alipay.ams.api.default_alipay_client")
    profile = json.loads(profile_text)
    gateway = urlsplit(profile["baseUrl"])

    def connection(url: str, timeout: int = 15) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(gateway.hostname or "127.0.0.1", gateway.port, timeout=timeout)

    setattr(rpc, "__get_http_connection", connection)  # the module-private name cannot be assigned
    # The SDK wraps the key in "RSA PRIVATE KEY" (PKCS#1) armour itself: give it the PKCS#1 Base64 body.
    private_key = serialization.load_der_private_key(base64.b64decode(profile["privateKey"]), password=None)
    pkcs1 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return client_module.DefaultAlipayClient(
        profile["baseUrl"], profile["clientId"], base64.b64encode(pkcs1).decode(), profile["providerPublicKey"]
    )


def sdk_inquire(client: Any, refund_request_id: str) -> dict[str, Any]:
    """``client.execute(AlipayInquiryRefundRequest)`` parsed by ``AlipayInquiryRefundResponse``, as plain values.

    ``execute`` raises AlipayApiException when the answer's signature is missing or does not verify.
    """
    request_module: Any = importlib.import_module("com.alipay.ams.api.request.pay.alipay_inquiry_refund_request")
    response_module: Any = importlib.import_module("com.alipay.ams.api.response.pay.alipay_inquiry_refund_response")
    request = request_module.AlipayInquiryRefundRequest()
    request.refund_request_id = refund_request_id
    response = response_module.AlipayInquiryRefundResponse(client.execute(request))
    amount = response.refund_amount
    return {
        "resultStatus": getattr(response.result.result_status, "value", None),
        "resultCode": response.result.result_code,
        "refundStatus": getattr(response.refund_status, "value", None),
        "refundId": response.refund_id,
        "refundRequestId": response.refund_request_id,
        "refundAmount": None if amount is None else {"value": amount.value, "currency": amount.currency},
    }


def sdk(profile_text: str, refund_id: str) -> Callable[[], bool]:
    client = sdk_client(profile_text)

    def call() -> bool:
        answer = sdk_inquire(client, refund_id)
        return bool(answer["resultStatus"] == "S" and answer["refundStatus"] == "SUCCESS")

    return call


def sdk_once(profile_text: str, refund_request_id: str) -> dict[str, Any]:
    """One SDK inquiry; the SDK's refusal (AlipayApiException) becomes ``{"error": message}``."""
    exception_module: Any = importlib.import_module("com.alipay.ams.api.exception.exception")
    try:
        return sdk_inquire(sdk_client(profile_text), refund_request_id)
    except exception_module.AlipayApiException as exc:
        return {"error": str(exc)}


def main() -> None:
    impl, profile_path, refund_id = sys.argv[1:4]
    with open(profile_path, encoding="utf-8") as profile_file:
        profile_text = profile_file.read()
    if impl == "sdk-once":  # tests/integration/test_official_sdk.py
        print(json.dumps(sdk_once(profile_text, refund_id)), flush=True)
        return
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
