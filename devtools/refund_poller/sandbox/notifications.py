"""Where the sandbox pushes refund-result notifications, with which faults, and the log of every push attempt.

A :class:`NotifyTarget` is set per merchant (admin ``PUT /_sandbox/notify/merchants/{provider}/{merchant}``)
or per refund (the ``notify`` object of a refund script). :class:`PushLog` keeps every attempt and the
receiver's reply, so tests count what arrived. docs/sandbox.md, "Notifications", is the reference.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from refund_core.domain.profile import is_loopback_host

# dropped: never arrives; delayed: the first attempt goes out delayMs late; duplicated: every attempt arrives
# twice, byte for byte; outoforder: held back and released last-first with the merchant's next notification
# (or after holdMs); forged: an attacker's copy with the status flipped, carrying the genuine signature, goes
# out first (the genuine notification follows); wrongkey: every attempt signed with a key that is not the
# provider's (a provider-side key mix-up: never verifies, so it is retried until the schedule runs out).
NOTIFY_FAULTS = ("dropped", "delayed", "duplicated", "outoforder", "forged", "wrongkey")
MERCHANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_URL_LENGTH = 2_048
MAX_DELAY_MS = 600_000
DEFAULT_DELAY_MS = 1_000
MAX_PUSHES = 10_000
MAX_REPLY_CHARS = 1_024
MAX_SPEEDUP = 10_000_000.0


class NotifyConfigError(ValueError):
    """A notification setting is malformed; the message names the field and the rule."""


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """Where one merchant's (or one refund's) notifications go, and which share of them is spoiled how."""

    url: str
    merchant: str = "default"
    client_id: str | None = None  # the caller id the push is signed for; None: the provider's usual profile
    faults: tuple[str, ...] = ()
    rate: float = 1.0  # with this probability a notification gets one fault, picked uniformly from ``faults``
    seed: int | None = None
    delay_ms: int = DEFAULT_DELAY_MS  # how late ``delayed`` pushes go out
    hold_ms: int = DEFAULT_DELAY_MS  # how long ``outoforder`` holds a push waiting for the next one

    def to_dict(self) -> dict[str, Any]:
        return {
            "notifyUrl": self.url,
            "merchant": self.merchant,
            "clientId": self.client_id,
            "faults": list(self.faults),
            "rate": self.rate,
            "seed": self.seed,
            "delayMs": self.delay_ms,
            "holdMs": self.hold_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], merchant: str | None = None) -> NotifyTarget:
        """Validate an admin body such as ``{"notifyUrl": "http://127.0.0.1:8/notify/antom/m", "faults": ["dropped"]}``.

        Raises:
            NotifyConfigError: naming the first bad field.
        """
        fields = {"notifyUrl", "merchant", "clientId", "faults", "rate", "seed", "delayMs", "holdMs"}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise NotifyConfigError(f"{unknown[0]}: is not a notification field ({', '.join(sorted(fields))})")
        name = merchant if merchant is not None else data.get("merchant", "default")
        if not isinstance(name, str) or not MERCHANT_NAME.fullmatch(name):
            raise NotifyConfigError("merchant: must match [A-Za-z0-9_-]{1,64}")
        client_id = data.get("clientId")
        if client_id is not None and (not isinstance(client_id, str) or not 1 <= len(client_id) <= 64):
            raise NotifyConfigError("clientId: must be a string of 1 to 64 characters")
        return cls(
            url=check_notify_url(data.get("notifyUrl")),
            merchant=name,
            client_id=client_id,
            faults=check_faults(data.get("faults", [])),
            rate=_number(data, "rate", 1.0, 0.0, 1.0),
            seed=_seed(data.get("seed")),
            delay_ms=int(_number(data, "delayMs", DEFAULT_DELAY_MS, 0, MAX_DELAY_MS, whole=True)),
            hold_ms=int(_number(data, "holdMs", DEFAULT_DELAY_MS, 0, MAX_DELAY_MS, whole=True)),
        )


def check_notify_url(url: object, field_name: str = "notifyUrl") -> str:
    """An absolute http(s) URL without query or fragment; plain http to a loopback host only.

    Raises:
        NotifyConfigError: naming ``field_name`` and the rule.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise NotifyConfigError(f"{field_name}: is required, an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise NotifyConfigError(f"{field_name}: is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyConfigError(f"{field_name}: must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise NotifyConfigError(f"{field_name}: must not carry credentials, a query or a fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise NotifyConfigError(f"{field_name}: plain http is allowed to a loopback host only; use https")
    return url


def check_faults(faults: object) -> tuple[str, ...]:
    if not isinstance(faults, list) or any(fault not in NOTIFY_FAULTS for fault in faults):
        raise NotifyConfigError(f"faults: must be a list drawn from {', '.join(NOTIFY_FAULTS)}")
    return tuple(faults)


def check_speedup(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1.0 <= value <= MAX_SPEEDUP:
        raise NotifyConfigError(f"speedup: must be a number from 1 to {MAX_SPEEDUP:.0f}")
    return float(value)


def _number(
    data: Mapping[str, Any], name: str, default: float, low: float, high: float, *, whole: bool = False
) -> float:
    value = data.get(name, default)
    kinds = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise NotifyConfigError(f"{name}: must be {kind} from {low:g} to {high:g}")
    return float(value)


def _seed(seed: object) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise NotifyConfigError("seed: must be a whole number or null")
    return seed


@dataclass
class PushLog:
    """Every push attempt (and drop) with the receiver's reply, oldest first; waiters learn of new entries."""

    _entries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_PUSHES))
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, entry: dict[str, Any]) -> None:
        with self._changed:
            self._entries.append(entry)
            self._changed.notify_all()

    def entries(self, **match: str) -> list[dict[str, Any]]:
        """The entries whose fields equal every given value (e.g. ``provider="antom"``)."""
        with self._changed:
            return [entry for entry in self._entries if all(entry.get(k) == v for k, v in match.items())]

    def wait_for(self, notification: str, timeout: float) -> dict[str, Any] | None:
        """The first entry of ``notification``, waiting up to ``timeout`` seconds for it."""
        with self._changed:
            self._changed.wait_for(lambda: self._first(notification) is not None, timeout)
            return self._first(notification)

    def _first(self, notification: str) -> dict[str, Any] | None:
        return next((entry for entry in self._entries if entry["notification"] == notification), None)

    def clear(self) -> None:
        with self._changed:
            self._entries.clear()
