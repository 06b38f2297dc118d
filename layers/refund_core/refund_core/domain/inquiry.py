"""The inquiry message (what a merchant puts on the queue) and the names derived from it.

The message's shape is checked against the published JSON Schema by the starter; this module
turns a valid message into the values every later step uses: the item key, the execution name
and the polling policy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MERCHANT = "default"
MAX_EXECUTION_NAME = 80
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z_-]+")


@dataclass(frozen=True, slots=True)
class InquiryMessage:
    """One valid queue message: which refund to poll, at which provider, for which merchant profile."""

    provider: str
    merchant: str = DEFAULT_MERCHANT
    refund_id: str | None = None
    refund_request_id: str | None = None
    interval_seconds: int | None = None
    max_duration_seconds: int | None = None
    correlation_id: str | None = None
    force: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> InquiryMessage:
        """Build from a body that already passed the JSON Schema."""
        polling = body.get("polling") or {}
        return cls(
            provider=body["provider"],
            merchant=body.get("merchant") or DEFAULT_MERCHANT,
            refund_id=body.get("refundId"),
            refund_request_id=body.get("refundRequestId"),
            # The schema's "integer" admits 5.0; the Wait state needs a whole number.
            interval_seconds=_whole(polling.get("intervalSeconds")),
            max_duration_seconds=_whole(polling.get("maxDurationSeconds")),
            correlation_id=body.get("correlationId"),
            force=bool(body.get("force", False)),
        )

    @property
    def primary_id(self) -> str:
        """The id the item is keyed by: the merchant's request id when known, as merchants look refunds up by it."""
        value = self.refund_request_id or self.refund_id
        assert value is not None  # the schema requires one of them
        return value

    @property
    def key(self) -> str:
        return item_key(self.provider, self.merchant, self.primary_id)

    def as_state(self, key: str) -> dict[str, Any]:
        """The ``inquiry`` part of the state machine input (no secrets)."""
        state: dict[str, Any] = {"provider": self.provider, "merchant": self.merchant, "key": key}
        for name, value in (
            ("refundId", self.refund_id),
            ("refundRequestId", self.refund_request_id),
            ("correlationId", self.correlation_id),
        ):
            if value:
                state[name] = value
        return state


def item_key(provider: str, merchant: str, refund_key: str) -> str:
    """The results table key of a refund: ``<provider>#<merchant>#<id>``."""
    return f"{provider}#{merchant}#{refund_key}"


def execution_name(provider: str, merchant: str, refund_key: str, generation: int) -> str:
    """A readable, unique execution name: ``<provider>-<merchant>-<id>-g<generation>``.

    Characters outside ``[0-9A-Za-z_-]`` become ``_``; a name over 80 characters keeps its head
    and replaces the tail with a hash of the whole, so support staff still find it by refund id.
    """
    readable = _NAME_UNSAFE.sub("_", f"{provider}-{merchant}-{refund_key}")
    suffix = f"-g{generation}"
    if len(readable) + len(suffix) <= MAX_EXECUTION_NAME:
        return readable + suffix
    digest = hashlib.sha256(f"{provider}\0{merchant}\0{refund_key}".encode()).hexdigest()[:12]
    head = readable[: MAX_EXECUTION_NAME - len(suffix) - len(digest) - 1]
    return f"{head}-{digest}{suffix}"


def _whole(value: Any) -> int | None:
    return None if value is None else int(value)
