"""Each provider's side of inquiryRefund, as the sandbox plays it (providers.md §2-§4).

A dialect knows its paths, the headers that identify a caller, what is signed in each direction,
its result codes and the shape of its answer body. The content strings come from the adapters'
own builders, so the sandbox and the adapters cannot drift apart on them silently; everything
else (header names, algorithm names, nonce rules) is checked here independently.
"""

from __future__ import annotations

import json
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from refund_core.providers.alphapay import nonce_content
from refund_core.providers.antom import client_id_content

ANTOM_LIVE_PATH = "/ams/api/v1/payments/inquiryRefund"
ANTOM_SANDBOX_PATH = "/ams/sandbox/api/v1/payments/inquiryRefund"
# "POST /v1/payments/inquiryRefund", host and any prefix assigned by each wallet (seed 000_29cee8de70e96ca6.txt):
# the sandbox plays a wallet on this path under any prefix (a profile's pathPrefix), e.g. /gcash/v1/payments/…
WALLET_PATH = "/v1/payments/inquiryRefund"
_WALLET_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")
ALPHAPAY_PATH = "/api/v2.0/payments/inquiryRefund"
NONCE_LENGTH = 32
_EPOCH_MILLIS = re.compile(r"[0-9]{13}")
_NONCE = re.compile(rf"[!-~]{{{NONCE_LENGTH}}}")  # printable, no spaces: it sits inside a signed string
# Antom's notifyRefund: "retried up to eight times within 24 hours, at intervals of 0 s, 2 min, 10 min, 10 min,
# 1 h, 2 h, 6 h and 15 h" (docs.antom.com/ac/ams/notify_refund). Read as: after the first push, a retry follows
# each interval in turn, counted from the attempt before it, until the fixed acknowledgement comes back.
ANTOM_RETRY_INTERVALS = (0.0, 120.0, 600.0, 600.0, 3_600.0, 7_200.0, 21_600.0, 54_000.0)
ACKNOWLEDGEMENT = {"resultCode": "SUCCESS", "resultStatus": "S"}


class Refused(Exception):  # noqa: N818 - a control-flow signal carrying the provider's F answer, not an error
    """The provider refuses the inquiry: answer F with this code (INVALID_SIGNATURE answers go unsigned)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RequestHeaders:
    """Request headers with case-insensitive lookup, or exact lookup where a provider demands it."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self.items = tuple(items)

    def get(self, name: str, *, exact: bool = False) -> str | None:
        for key, value in self.items:
            if key == name or (not exact and key.lower() == name.lower()):
                return value
        return None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, and the values the request signature covers besides path and body."""

    caller: str
    request_time: str
    nonce: str | None = None

    @property
    def sent_at(self) -> float | None:
        """The signed Request-Time as epoch seconds (when the caller sent the request), None when unreadable."""
        if _EPOCH_MILLIS.fullmatch(self.request_time):
            return int(self.request_time) / 1000
        return datetime.fromisoformat(self.request_time).timestamp() if _iso_with_offset(self.request_time) else None


@dataclass(frozen=True, slots=True)
class RefundView:
    """A refund as one answer shows it; ``state`` is success, fail or processing."""

    state: str
    refund_id: str
    refund_request_id: str
    payment_id: str
    amount_value: str
    refund_time: str | None


class Dialect(ABC):
    """One provider's protocol facts; subclasses fill them in."""

    name: ClassVar[str]
    paths: ClassVar[tuple[str, ...]]
    caller_header: ClassVar[str]
    algorithm: ClassVar[str] = "RSA256"
    exact_header_names: ClassVar[bool] = False
    unknown_caller_code: ClassVar[str]
    not_found_code: ClassVar[str]
    key_version_code: ClassVar[str] = "INVALID_SIGNATURE"
    parse_error_code: ClassVar[str] = "PARAM_ILLEGAL"
    refund_id_required: ClassVar[bool] = False
    currency: ClassVar[str]
    statuses: ClassVar[dict[str, str]] = {"success": "SUCCESS", "fail": "FAIL", "processing": "PROCESSING"}
    # Notifications (the provider calling the merchant): which final states are pushed, and the retry intervals.
    notified_states: ClassVar[frozenset[str]] = frozenset({"success", "fail"})
    retry_intervals: ClassVar[tuple[float, ...]] = ANTOM_RETRY_INTERVALS

    def header(self, headers: RequestHeaders, name: str) -> str:
        value = headers.get(name, exact=self.exact_header_names)
        if not value:
            exact = " (header names are case-sensitive)" if self.exact_header_names else ""
            raise Refused("PARAM_ILLEGAL", f"header {name} is required{exact}")
        return value

    def identity(self, headers: RequestHeaders) -> Identity:
        """The caller and the signed header values. Raises :class:`Refused` when one is missing or malformed."""
        caller = self.header(headers, self.caller_header)
        request_time = self.header(headers, "Request-Time")
        if not self.valid_request_time(request_time):
            raise Refused("PARAM_ILLEGAL", "header Request-Time must be epoch milliseconds or ISO-8601 with offset")
        return Identity(caller=caller, request_time=request_time)

    def valid_request_time(self, value: str) -> bool:
        return bool(_EPOCH_MILLIS.fullmatch(value)) or _iso_with_offset(value)

    def response_time(self, request_time: str) -> str:
        """Now, in the same format family the caller used (Antom SDKs differ: millis or ISO-8601)."""
        now = datetime.now(UTC)
        if _EPOCH_MILLIS.fullmatch(request_time):
            return str(int(now.timestamp() * 1000))
        return now.isoformat(timespec="milliseconds")

    def check_route(self, path: str, identity: Identity) -> None:
        """Refuse a caller on a path it may not use (Antom: sandbox ids on the sandbox path only)."""
        return None

    @abstractmethod
    def request_content(self, path: str, identity: Identity, body: bytes) -> bytes: ...

    @abstractmethod
    def response_headers(self, identity: Identity) -> dict[str, str]:
        """The headers an answer carries besides Content-Type and Signature."""

    @abstractmethod
    def response_content(self, path: str, identity: Identity, headers: dict[str, str], body: bytes) -> bytes: ...

    def refund_payload(self, view: RefundView) -> dict[str, Any]:
        """The refund fields of an S answer."""
        payload: dict[str, Any] = {
            "refundId": view.refund_id,
            "refundRequestId": view.refund_request_id,
            "refundAmount": {"value": view.amount_value, "currency": self.currency},
            "refundStatus": self.statuses[view.state],
        }
        if view.state == "success":
            payload["refundTime"] = view.refund_time
        return payload

    # ---- notifications: the same signature scheme, the provider now the caller ------------------------------
    def notification_payload(self, view: RefundView) -> dict[str, Any]:
        """The body of a refund-result notification: the result object and the refund as an answer shows it."""
        return {"result": {**ACKNOWLEDGEMENT, "resultMessage": "success"}, **self.refund_payload(view)}

    def notification_identity(self, caller: str) -> Identity:
        """A fresh Request-Time for one push attempt (every attempt is signed anew)."""
        return Identity(caller=caller, request_time=str(int(datetime.now(UTC).timestamp() * 1000)))

    def notification_headers(self, identity: Identity) -> dict[str, str]:
        """The identifying headers of a push besides Content-Type and Signature."""
        return {self.caller_header: identity.caller, "Request-Time": identity.request_time}

    def acknowledged(self, status: int, body: bytes) -> bool:
        """Whether the merchant's reply is the fixed acknowledgement (HTTP 200, result SUCCESS / S)."""
        try:
            reply = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return False
        result = reply.get("result") if isinstance(reply, dict) else None
        fixed = isinstance(result, dict) and all(result.get(name) == value for name, value in ACKNOWLEDGEMENT.items())
        return status == 200 and fixed


class AntomDialect(Dialect):
    name = "antom"
    paths: ClassVar[tuple[str, ...]] = (ANTOM_LIVE_PATH, ANTOM_SANDBOX_PATH)
    caller_header = "Client-Id"
    unknown_caller_code = "CLIENT_INVALID"
    not_found_code = "ORDER_NOT_EXIST"
    key_version_code = "KEY_NOT_FOUND"
    currency = "USD"

    def check_route(self, path: str, identity: Identity) -> None:
        sandbox_caller = identity.caller.startswith("SANDBOX_")
        if sandbox_caller and path != ANTOM_SANDBOX_PATH:
            raise Refused("INVALID_API", f"sandbox client ids are served on {ANTOM_SANDBOX_PATH}")
        if not sandbox_caller and path == ANTOM_SANDBOX_PATH:
            raise Refused("INVALID_API", f"live client ids are served on {ANTOM_LIVE_PATH}")

    def request_content(self, path: str, identity: Identity, body: bytes) -> bytes:
        return client_id_content(path, identity.caller, identity.request_time, body)

    def response_headers(self, identity: Identity) -> dict[str, str]:
        return {"Client-Id": identity.caller, "Response-Time": self.response_time(identity.request_time)}

    def response_content(self, path: str, identity: Identity, headers: dict[str, str], body: bytes) -> bytes:
        return client_id_content(path, headers["Client-Id"], headers["Response-Time"], body)

    def notification_payload(self, view: RefundView) -> dict[str, Any]:
        """notifyRefund: ``notifyType`` REFUND_RESULT first (docs.antom.com/ac/ams/notify_refund)."""
        return {"notifyType": "REFUND_RESULT", **super().notification_payload(view)}


class WalletDialect(AntomDialect):
    name = "alipayplus"
    paths = (WALLET_PATH,)
    unknown_caller_code = "INVALID_CLIENT"
    not_found_code = "REFUND_NOT_EXIST"
    key_version_code = "INVALID_SIGNATURE"
    parse_error_code = "MSG_PARSE_ERROR"
    currency = "PHP"

    def check_route(self, path: str, identity: Identity) -> None:
        return None

    def refund_payload(self, view: RefundView) -> dict[str, Any]:
        payload = {**super().refund_payload(view), "refundReason": "sandbox refund"}
        if view.state == "fail":
            payload["refundFailReason"] = "sandbox: the script says fail"
        return payload


class AlphaPayDialect(Dialect):
    name = "alphapay"
    paths = (ALPHAPAY_PATH,)
    caller_header = "Merchant-Code"
    algorithm = "RS256"
    exact_header_names = True
    unknown_caller_code = "INVALID_MERCHANT"
    not_found_code = "REFUND_NOT_EXIST"
    refund_id_required = True
    currency = "CAD"
    statuses: ClassVar[dict[str, str]] = {"success": "SUCCESS", "fail": "FAILED", "processing": "REFUND_IN_PROCESS"}
    # "push the refund success notification after the refund is successful" (seed 002_2f9cd1440fe8aed9.txt,
    # refund.notifyUrl): success only, and once, never retried (providers.md §4).
    notified_states: ClassVar[frozenset[str]] = frozenset({"success"})
    retry_intervals: ClassVar[tuple[float, ...]] = ()

    def identity(self, headers: RequestHeaders) -> Identity:
        base = super().identity(headers)
        nonce = self.header(headers, "Nonce")
        if not _NONCE.fullmatch(nonce):
            raise Refused("PARAM_ILLEGAL", f"header Nonce must be {NONCE_LENGTH} printable characters")
        return Identity(caller=base.caller, request_time=base.request_time, nonce=nonce)

    def valid_request_time(self, value: str) -> bool:
        return _iso_with_offset(value)

    def response_time(self, request_time: str) -> str:
        return datetime.now(UTC).isoformat(timespec="seconds")

    def request_content(self, path: str, identity: Identity, body: bytes) -> bytes:
        assert identity.nonce is not None  # identity() refuses a request without one
        return nonce_content(path, identity.caller, identity.request_time, identity.nonce, body)

    def response_headers(self, identity: Identity) -> dict[str, str]:
        return {"Response-Time": self.response_time(identity.request_time), "Nonce": secrets.token_hex(16)}

    def response_content(self, path: str, identity: Identity, headers: dict[str, str], body: bytes) -> bytes:
        return nonce_content(path, identity.caller, headers["Response-Time"], headers["Nonce"], body)

    def notification_identity(self, caller: str) -> Identity:
        return Identity(caller=caller, request_time=self.response_time(""), nonce=secrets.token_hex(16))

    def notification_headers(self, identity: Identity) -> dict[str, str]:
        assert identity.nonce is not None  # notification_identity() always draws one
        return {**super().notification_headers(identity), "Nonce": identity.nonce}

    def refund_payload(self, view: RefundView) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "paymentId": view.payment_id,
            "refundId": view.refund_id,
            "refundRequestId": view.refund_request_id,
            "refundStatus": self.statuses[view.state],
            "refund": {
                "refundAmount": {"value": view.amount_value, "currency": self.currency},
                "description": "sandbox: the script says fail" if view.state == "fail" else "sandbox refund",
            },
        }
        if view.state == "success":
            payload["refundTime"] = view.refund_time
        return payload


DIALECTS: dict[str, Dialect] = {d.name: d for d in (AntomDialect(), WalletDialect(), AlphaPayDialect())}
ROUTES: dict[str, Dialect] = {path: dialect for dialect in DIALECTS.values() for path in dialect.paths}


def route(path: str) -> Dialect | None:
    """The dialect serving ``path``: a documented path, or the wallet's path under a wallet-assigned prefix."""
    dialect = ROUTES.get(path)
    if dialect is None and path.endswith(WALLET_PATH) and _WALLET_PREFIX.fullmatch(path.removesuffix(WALLET_PATH)):
        dialect = DIALECTS["alipayplus"]
    return dialect


def _iso_with_offset(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False
