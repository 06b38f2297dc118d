"""The inquiry message (what a merchant puts on the queue) and the names derived from it.

The message's shape is checked against the published JSON Schema by the starter; this module
turns a valid message into the values every later step uses: the item key, the execution name
and the polling policy.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MERCHANT = "default"
MAX_EXECUTION_NAME = 80
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z_-]+")
_WINDOW_ID = re.compile(r"[0-9a-z]{1,32}")
REQUEST_ID = "rr"  # id kind tag of the merchant's refundRequestId in keys and names
REFUND_ID = "r"  # id kind tag of the provider's refundId
ALIAS_PREFIX = "alias#"  # alias items' keys; no provider is called "alias", so they never meet a refund item
KEY_DIGEST_CHARS = 12  # 48 bits of the exact key
WINDOW_ID_BYTES = 8  # 64 random bits per window: 16 hex characters


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
    # The long tail (docs/long-tail.md): a merchant's overrides of the provider's tail policy ...
    tail_schedule_seconds: tuple[int, ...] | None = None
    tail_max_age_seconds: int | None = None
    # ... and, on a message a tail schedule sent, the attempt it stands for (window and attempt number).
    tail_window_id: str | None = None
    tail_attempt: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> InquiryMessage:
        """Build from a body that already passed the JSON Schema."""
        polling = body.get("polling") or {}
        tail, attempt = body.get("tail") or {}, body.get("tailAttempt") or {}
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
            tail_schedule_seconds=_steps(tail.get("scheduleSeconds")),
            tail_max_age_seconds=_whole(tail.get("maxAgeSeconds")),
            tail_window_id=attempt.get("windowId"),
            tail_attempt=_whole(attempt.get("attempt")),
        )

    @property
    def is_tail_attempt(self) -> bool:
        """True for a message a tail schedule sent: it asks once, only while that attempt is still pending."""
        return self.tail_window_id is not None and self.tail_attempt is not None

    @property
    def refs(self) -> tuple[RefundRef, ...]:
        """The refund's id forms this message carries, in the order aliases are bound (docs/internals.md).

        The provider's ``refundId`` comes first: it is the form a message with only that id shares with a
        message carrying both, so the two contend for the same alias item and cannot create two refunds.
        """
        forms = ((REFUND_ID, self.refund_id), (REQUEST_ID, self.refund_request_id))
        return tuple(RefundRef(self.provider, self.merchant, kind, value) for kind, value in forms if value)

    @property
    def proposed_ref(self) -> RefundRef:
        """The id a new item is keyed by: the merchant's request id when known, as merchants look refunds up by it."""
        if self.refund_request_id:
            return RefundRef(self.provider, self.merchant, REQUEST_ID, self.refund_request_id)
        assert self.refund_id is not None  # the schema requires one of them
        return RefundRef(self.provider, self.merchant, REFUND_ID, self.refund_id)

    @property
    def key(self) -> str:
        """The key a refund first seen with this message gets (an earlier message may have keyed it otherwise)."""
        return self.proposed_ref.item_key

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


@dataclass(frozen=True, slots=True)
class RefundRef:
    """One exact form of a refund's identity: provider, merchant profile, which id (``rr``/``r``) and its value."""

    provider: str
    merchant: str
    kind: str  # REQUEST_ID ("rr": the merchant's refundRequestId) or REFUND_ID ("r": the provider's refundId)
    value: str

    @property
    def item_key(self) -> str:
        """``<provider>#<merchant>#<kind>:<id>``: the kind tag keeps a refundId "X" apart from a refundRequestId "X"."""
        return f"{self.provider}#{self.merchant}#{self.kind}:{self.value}"

    @property
    def alias_key(self) -> str:
        """The alias item naming the refund item this id form belongs to (never a refund item's key)."""
        return ALIAS_PREFIX + self.item_key

    @property
    def form(self) -> str:
        """``<kind>:<id>``: the id form in words (``unlinkedIds``, messages)."""
        return f"{self.kind}:{self.value}"

    @property
    def tag(self) -> str:
        """``<kind>:<16 hex of SHA-256 of the id>``, as kept in the item's ``aliasedIds``.

        The set only answers "is this form bound to the item already?", and ids are up to 64 characters of any
        script (192 UTF-8 bytes): full forms made the set the item's largest attribute, past DynamoDB's 1 KB write
        unit (docs/internals.md, "Results table"). 64 bits keep two ids of one merchant apart."""
        return f"{self.kind}:{hashlib.sha256(self.value.encode()).hexdigest()[:16]}"

    def bound_in(self, aliased_ids: Iterable[str]) -> bool:
        """Whether an item's ``aliasedIds`` holds this form (as a tag, or in full as items written before tags)."""
        bound = set(aliased_ids)
        return self.tag in bound or self.form in bound

    @classmethod
    def from_item_key(cls, key: str) -> RefundRef:
        provider, merchant, rest = key.split("#", 2)
        kind, value = rest.split(":", 1)
        if kind not in (REQUEST_ID, REFUND_ID):
            raise ValueError(f"item key: unknown id kind {kind!r}")
        return cls(provider, merchant, kind, value)


def item_key(
    provider: str, merchant: str, *, refund_request_id: str | None = None, refund_id: str | None = None
) -> str:
    """The key of the item a refund gets when first sent with these ids (the request id wins when both are given)."""
    message = InquiryMessage(
        provider=provider, merchant=merchant, refund_id=refund_id, refund_request_id=refund_request_id
    )
    if not message.refs:
        raise ValueError("item key: give refund_request_id or refund_id")
    return message.key


def new_window_id() -> str:
    """A window's token: random, so no name is reused after TTL deleted the item and generation restarted at 1."""
    return secrets.token_hex(WINDOW_ID_BYTES)


def key_digest(ref: RefundRef) -> str:
    """A short hash of the exact key: two refunds whose readable names sanitise alike still get different names."""
    exact = json.dumps([ref.provider, ref.merchant, ref.kind, ref.value], ensure_ascii=False)
    return hashlib.sha256(exact.encode()).hexdigest()[:KEY_DIGEST_CHARS]


def execution_name(ref: RefundRef, generation: int, window_id: str) -> str:
    """``<provider>-<id prefix>-<key hash>-g<generation>-<window id>``, within ``[0-9A-Za-z_-]`` and 80 characters.

    The head is readable (support staff search the console by provider and id prefix: characters outside
    ``[0-9A-Za-z_-]`` become ``_``, the id is cut to fit); the hash of the exact key (provider, merchant, id
    kind, id) makes distinct refunds differ, and the window id, random per claim, makes windows differ, even
    after the item was deleted and its generation restarted at 1.
    """
    if not _WINDOW_ID.fullmatch(window_id):
        raise ValueError("window id: must be 1-32 characters of [0-9a-z]")
    tail = f"-{key_digest(ref)}-g{generation}-{window_id}"
    head = f"{ref.provider}-{_NAME_UNSAFE.sub('_', ref.value)}"
    return head[: MAX_EXECUTION_NAME - len(tail)] + tail


def _whole(value: Any) -> int | None:
    return None if value is None else int(value)


def _steps(values: Any) -> tuple[int, ...] | None:
    return None if not values else tuple(int(v) for v in values)
