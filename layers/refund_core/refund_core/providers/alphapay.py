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
from refund_core.providers.base import (
    Provider,
    QueryError,
    ReceivedNotification,
    RefundFields,
    RefundQuery,
    SignedRequest,
)

NONCE_LENGTH = 32


class AlphaPay(Provider):
    name: ClassVar[str] = "alphapay"
    algorithm: ClassVar[str] = "RS256"
    iso_timespec: ClassVar[str] = "seconds"  # the documented example carries no fraction
    not_found_codes: ClassVar[frozenset[str]] = frozenset({"ORDER_NOT_EXIST", "REFUND_NOT_EXIST"})
    # AlphaPay's code list is unconfirmed (providers.md §4): only the signature rejection its Antom-style
    # scheme shares is accepted unsigned; every other unsigned F keeps polling (docs/trust.md).
    credential_rejection_codes: ClassVar[frozenset[str]] = frozenset({"INVALID_SIGNATURE"})
    amount_field: ClassVar[str] = "refund.refundAmount"
    epoch_millis_response_time: ClassVar[bool] = False  # AlphaPay times are ISO-8601 with offset (providers.md §4)
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

    # The success notification to the refund's notifyUrl, signed as AlphaPay signs answers (assumption, seed 002 is
    # silent on its headers): ``POST <path as called>\n<Merchant-Code>.<Request-Time>.<Nonce>.<body>``.
    def notification_content(self, notification: ReceivedNotification) -> bytes | None:
        fields = [notification.header(name) for name in ("Merchant-Code", "Request-Time", "Nonce")]
        if any(value is None for value in fields):
            return None
        code, request_time, nonce = (str(value) for value in fields)
        return nonce_content(notification.path, code, request_time, nonce, notification.body)

    def notification_caller(self, notification: ReceivedNotification) -> str | None:
        return notification.header("Merchant-Code")

    def raw_amount(self, payload: Mapping[str, Any]) -> Any:
        return _refund(payload).get("refundAmount")

    def refund_fields(self, payload: Mapping[str, Any], status: Status) -> RefundFields:
        # refund.description is "Remark of the refund" (seed 002:62-64): the merchant's own text, sent when the
        # refund was made. It is kept as the description and is never a fail reason; AlphaPay sends none.
        description = _refund(payload).get("description")
        fields = super().refund_fields(payload, status)
        return replace(fields, description=description if isinstance(description, str) else None)


def _refund(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    refund = payload.get("refund")
    return refund if isinstance(refund, Mapping) else {}


def nonce_content(path: str, merchant_code: str, time_value: str, nonce: str, body: bytes) -> bytes:
    """``POST <path>\\n<merchant-code>.<time>.<nonce>.<body>``: the layout AlphaPay signs."""
    return f"POST {path}\n{merchant_code}.{time_value}.{nonce}.".encode() + body
