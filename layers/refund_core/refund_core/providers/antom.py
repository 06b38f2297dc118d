"""Antom (Alipay global acquiring, "AMS") inquiryRefund.

Request content: ``POST <path>\\n<Client-Id>.<Request-Time>.<body>``; the response is signed the
same way with the response's ``Client-Id`` and ``Response-Time`` headers (providers.md §2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from refund_core.domain.outcome import Status
from refund_core.providers import strict
from refund_core.providers.base import Provider, ReceivedNotification, RefundQuery, SignedRequest

# notifyRefund's notifyType (docs.antom.com/ac/ams/notify_refund): the only kind this endpoint takes.
REFUND_RESULT = "REFUND_RESULT"


class Antom(Provider):
    name: ClassVar[str] = "antom"
    not_found_codes: ClassVar[frozenset[str]] = frozenset({"ORDER_NOT_EXIST"})
    # docs/trust.md cites each: seed 001:167 (CLIENT_INVALID), providers.md §2 (the others; Antom documents
    # INVALID_SIGNATURE answers may come unsigned).
    credential_rejection_codes: ClassVar[frozenset[str]] = frozenset(
        {"INVALID_SIGNATURE", "KEY_NOT_FOUND", "CLIENT_INVALID", "INVALID_CLIENT_STATUS", "ACCESS_DENIED"}
    )
    refund_statuses: ClassVar[Mapping[str, Status]] = {
        "SUCCESS": Status.SUCCESS,
        "FAIL": Status.FAIL,
        "PROCESSING": Status.PROCESSING,
    }

    def query_body(self, query: RefundQuery) -> dict[str, Any]:
        body: dict[str, Any] = query.body()
        if self.profile.merchant_account_id:
            body["merchantAccountId"] = self.profile.merchant_account_id
        return body

    def request_headers(self, request_time: str) -> dict[str, str]:
        return {"Client-Id": self.profile.caller_id, "Request-Time": request_time}

    def request_content(self, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
        return self.content(path, headers["Client-Id"], headers["Request-Time"], body)

    def response_content(self, request: SignedRequest, headers: Mapping[str, str], body: bytes) -> bytes | None:
        response_time = headers.get("Response-Time")
        if response_time is None:
            return None
        # The provider echoes our client id; fall back to it so a missing header fails on the signature, not here.
        client_id = headers.get("Client-Id") or request.headers["Client-Id"]
        return self.content(request.path, client_id, response_time, body)

    def answered_caller_matches(self, request: SignedRequest, headers: Mapping[str, str]) -> bool:
        # One provider key signs every merchant's answers: the signed Client-Id is what binds one to us.
        answered = headers.get("Client-Id")
        return answered is None or answered == request.headers["Client-Id"]

    # notifyRefund: signed like a request, by the provider: ``POST <path as called>\n<Client-Id>.<Request-Time>.<body>``
    def notification_content(self, notification: ReceivedNotification) -> bytes | None:
        client_id, request_time = notification.header("Client-Id"), notification.header("Request-Time")
        if client_id is None or request_time is None:
            return None
        return self.content(notification.path, client_id, request_time, notification.body)

    def notification_caller(self, notification: ReceivedNotification) -> str | None:
        return notification.header("Client-Id")

    def check_notification_kind(self, payload: Mapping[str, Any]) -> None:
        if payload.get("notifyType") != REFUND_RESULT:
            raise strict.MalformedError(f"notifyType: must be {REFUND_RESULT}")

    def content(self, path: str, client_id: str, time_value: str, body: bytes) -> bytes:
        """The bytes signed in either direction; a wallet with another layout overrides this."""
        return client_id_content(path, client_id, time_value, body)


def client_id_content(path: str, client_id: str, time_value: str, body: bytes) -> bytes:
    """``POST <path>\\n<client-id>.<time>.<body>``: the layout Antom and Alipay+ wallets sign."""
    return f"POST {path}\n{client_id}.{time_value}.".encode() + body
