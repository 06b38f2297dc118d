"""Notifications as a provider sends them, signed in the test with a provider private key (the sender's side).

Written from the wire contract (/work/wt/NOTIFY-CONTRACT.md, docs/notifications.md), independently of the code under
test: the bytes signed are spelled out here, not taken from refund_core.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ACK = {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}


def body(provider: str, status: str = "SUCCESS", **ids: str) -> bytes:
    """A refund-result notification body with the given ids (refundRequestId / refundId) and status."""
    document: dict[str, Any]
    if provider == "alphapay":
        document = {
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
            "refundStatus": {"SUCCESS": "SUCCESS", "FAIL": "FAILED"}.get(status, status),
            **ids,
            "refundTime": "2026-12-01T12:01:01+08:00",
            "refund": {"refundAmount": {"value": "100", "currency": "CAD"}},
        }
    else:
        document = {
            "notifyType": "REFUND_RESULT",
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
            "refundStatus": status,
            **ids,
            "refundAmount": {"value": "100", "currency": "USD"},
        }
        if status == "SUCCESS":
            document["refundTime"] = "2026-12-01T12:01:01+08:00"
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def headers(
    provider: str,
    key: rsa.RSAPrivateKey,
    path: str,
    caller_id: str,
    raw: bytes,
    *,
    request_time: str | None = None,
    algorithm: str | None = None,
) -> dict[str, str]:
    """The headers of one push: identity, Request-Time and a Signature over ``POST <path>\\n…<body>``."""
    if provider == "alphapay":
        sent = request_time or datetime.now(UTC).isoformat(timespec="seconds")
        nonce = secrets.token_hex(16)
        content = f"POST {path}\n{caller_id}.{sent}.{nonce}.".encode() + raw
        identity = {"Merchant-Code": caller_id, "Request-Time": sent, "Nonce": nonce}
        algorithm = algorithm or "RS256"
    else:
        sent = request_time or str(time.time_ns() // 1_000_000)
        content = f"POST {path}\n{caller_id}.{sent}.".encode() + raw
        identity = {"Client-Id": caller_id, "Request-Time": sent}
        algorithm = algorithm or "RSA256"
    signature = base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {
        "Content-Type": "application/json; charset=UTF-8",
        **identity,
        "Signature": f"algorithm={algorithm},keyVersion=1,signature={quote(signature, safe='')}",
    }
