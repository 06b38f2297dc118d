"""The one status vocabulary of the product, and the observation an inquiry produces.

Every provider maps its own answers into :class:`Status`; finality is defined here once and
drives the polling loop, the store's no-regression rule and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Normalised refund status (architecture.md, "Normalised outcome")."""

    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    PROCESSING = "PROCESSING"
    NOT_FOUND = "NOT_FOUND"
    UNKNOWN = "UNKNOWN"
    # Outcomes of a whole inquiry rather than of one answer:
    ERROR = "ERROR"  # the provider refused the request (F other than not-found): stop, alert
    UNRESOLVED = "UNRESOLVED"  # the polling window closed without a final answer

    @property
    def final(self) -> bool:
        """True for the refund's own final states; only these stop polling for good."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.SUCCESS, Status.FAIL})


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """The provider's ``result`` object: whether the inquiry call itself worked."""

    code: str | None = None
    status: str | None = None  # S / F / U
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One answer to one inquiry, normalised.

    ``verified`` is True only when the response signature checked out; refund data
    (amount, time, fail reason) is only ever filled from a verified answer.
    ``reason`` explains, in words, why an observation is not verified or not final.
    """

    provider: str
    status: Status
    refund_id: str | None = None
    refund_request_id: str | None = None
    amount_value: str | None = None
    amount_currency: str | None = None
    refund_time: str | None = None
    fail_reason: str | None = None
    result: ProviderResult = ProviderResult()
    verified: bool = False
    latency_ms: float | None = None
    reason: str | None = None
    # Why an answer was not trusted, as a short machine-readable tag (metrics count by it): "another-refund",
    # "stale-response", "bad-signature", "unsigned", "oversize", "deadline", "malformed"; None when trusted or
    # when nothing came back to distrust.
    distrust: str | None = None
    # The refund's remark as the provider returned it (AlphaPay's refund.description: the merchant's own text,
    # never a fail reason). Verified answers only, like the other refund data.
    description: str | None = None
    # The HTTP status of the answer, when one came back (429 makes the poller back off).
    http_status: int | None = None

    @property
    def final(self) -> bool:
        return self.status.final

    def to_dict(self) -> dict[str, Any]:
        """The observation as JSON-ready camelCase fields (absent values are None)."""
        return {
            "provider": self.provider,
            "status": self.status.value,
            "final": self.final,
            "verified": self.verified,
            "refundId": self.refund_id,
            "refundRequestId": self.refund_request_id,
            "amount": (
                {"value": self.amount_value, "currency": self.amount_currency}
                if self.amount_value is not None or self.amount_currency is not None
                else None
            ),
            "refundTime": self.refund_time,
            "failReason": self.fail_reason,
            "resultCode": self.result.code,
            "resultStatus": self.result.status,
            "resultMessage": self.result.message,
            "latencyMs": None if self.latency_ms is None else round(self.latency_ms, 3),
            "reason": self.reason,
            "distrust": self.distrust,
            "description": self.description,
            "httpStatus": self.http_status,
        }
