"""AlphaPay Open API v2.0 inquiryRefund.

Request content: ``POST <path>\\n<Merchant-Code>.<Request-Time>.<Nonce>.<body>`` with a fresh
32-character nonce per request and ``algorithm=RS256``. The response is checked with the request's
merchant code and the response's ``Response-Time`` and ``Nonce`` headers (providers.md §4).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from refund_core.domain.outcome import Status
from refund_core.providers.base import Provider, QueryError, RefundFields, RefundQuery, SignedRequest

NONCE_LENGTH = 32


class AlphaPay(Provider):
    name: ClassVar[str] = "alphapay"
    algorithm: ClassVar[str] = "RS256"
    iso_timespec: ClassVar[str] = "seconds"  # the documented example carries no fraction
    not_found_codes: ClassVar[frozenset[str]] = frozenset({"ORDER_NOT_EXIST", "REFUND_NOT_EXIST"})
    refund_statuses: ClassVar[Mapping[str, Status]] = {
        "SUCCESS": Status.SUCCESS,
        "FAILED": Status.FAIL,
        "REFUND_IN_PROCESS": Status.PROCESSING,
    }

    def query_body(self, query: RefundQuery) -> dict[str, Any]:
        if not query.refund_id:
            raise QueryError("refundId: is required for provider 'alphapay'")
        return query.body()

    def request_headers(self, request_time: str) -> dict[str, str]:
        return {
            "Merchant-Code": self.profile.caller_id,
            "Request-Time": request_time,
            "Nonce": secrets.token_hex(NONCE_LENGTH // 2),
            "Accept": "application/json",
        }

    def request_content(self, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
        return nonce_content(path, headers["Merchant-Code"], headers["Request-Time"], headers["Nonce"], body)

    def response_content(self, request: SignedRequest, headers: Mapping[str, str], body: bytes) -> bytes | None:
        response_time, nonce = headers.get("Response-Time"), headers.get("Nonce")
        if response_time is None or nonce is None:
            return None
        return nonce_content(request.path, request.headers["Merchant-Code"], response_time, nonce, body)

    def refund_fields(self, payload: Mapping[str, Any]) -> RefundFields:
        # AlphaPay nests the amount under "refund"; a failed refund's only explanation is its description.
        refund = payload.get("refund")
        refund = refund if isinstance(refund, Mapping) else {}
        fields = super().refund_fields({**payload, "refundAmount": refund.get("refundAmount")})
        description = refund.get("description")
        if fields.fail_reason is None and payload.get("refundStatus") == "FAILED" and isinstance(description, str):
            return replace(fields, fail_reason=description)
        return fields


def nonce_content(path: str, merchant_code: str, time_value: str, nonce: str, body: bytes) -> bytes:
    """``POST <path>\\n<merchant-code>.<time>.<nonce>.<body>``: the layout AlphaPay signs."""
    return f"POST {path}\n{merchant_code}.{time_value}.{nonce}.".encode() + body
