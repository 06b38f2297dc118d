"""Strict readings of what a provider sends: one meaning per answer or none (docs/trust.md, "Strict parsing").

Lenient parsing lets two readers see two answers in one body (duplicate keys: the last wins here, the first
elsewhere) or a forger smuggle a field past a check. Each function here either returns one meaning or says,
in words naming the field, why there is none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from refund_core.providers import signing

_DIGITS = re.compile(r"[0-9]{1,32}", re.ASCII)
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
# ISO-8601 extended date and time with an explicit offset ("Z" or ±hh:mm), as all three documents show it.
_ISO_TIME = re.compile(
    r"(?P<main>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?(?P<offset>Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_EPOCH_MILLIS = re.compile(r"[0-9]{13}", re.ASCII)
_SIGNATURE_KEYS = ("algorithm", "keyVersion", "signature")


class MalformedError(ValueError):
    """A body or field that has no single, well-formed meaning; the message names the rule it broke."""


def json_object(body: bytes) -> dict[str, Any]:
    """The body as one JSON object: UTF-8 only (no BOM), no duplicate keys, no NaN/Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError("body is not UTF-8") from None
    if text.startswith("\ufeff"):
        raise MalformedError("body starts with a byte order mark")
    try:
        payload = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except MalformedError:
        raise
    except ValueError:
        raise MalformedError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedError("body is not a JSON object")
    return payload


def _unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise MalformedError(f"duplicate JSON key {key!r}")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise MalformedError(f"non-standard JSON constant {name}")


def amount(raw: Any, field: str) -> tuple[str, str]:
    """``(value, currency)`` of an amount object: value a string of digits (minor units), currency ISO 4217."""
    if not isinstance(raw, Mapping):
        raise MalformedError(f"{field}: must be an object with value and currency")
    value, currency = raw.get("value"), raw.get("currency")
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise MalformedError(f"{field}.value: must be a string of digits (got {_kind(value)})")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise MalformedError(f"{field}.currency: must be a 3-letter upper-case code (got {_kind(currency)})")
    return value, currency


def iso_time(raw: Any, field: str) -> datetime:
    """An ISO-8601 date-time with its UTC offset, e.g. ``2020-01-02T12:01:01+08:30``."""
    match = _ISO_TIME.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise MalformedError(f"{field}: must be ISO-8601 with a UTC offset (got {_kind(raw)})")
    fraction = (match["fraction"] or "")[:6]  # datetime keeps microseconds; Java sends up to nanoseconds
    text = match["main"] + (f".{fraction.ljust(6, '0')}" if fraction else "") + match["offset"]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise MalformedError(f"{field}: is not a real date and time") from None


def response_time(raw: str | None, *, epoch_millis_allowed: bool) -> datetime:
    """The ``Response-Time`` header: ISO-8601 with offset, or (Antom and wallets) epoch milliseconds."""
    return header_time(raw, "Response-Time", epoch_millis_allowed=epoch_millis_allowed)


def header_time(raw: str | None, header: str, *, epoch_millis_allowed: bool) -> datetime:
    """A signed time header (``Response-Time``, a notification's ``Request-Time``), in the provider's forms."""
    if raw is None:
        raise MalformedError(f"{header}: missing")
    if epoch_millis_allowed and _EPOCH_MILLIS.fullmatch(raw):
        return datetime.fromtimestamp(int(raw) / 1000, UTC)
    forms = "epoch milliseconds or ISO-8601 with a UTC offset" if epoch_millis_allowed else "ISO-8601 with a UTC offset"
    try:
        return iso_time(raw, header)
    except MalformedError:
        raise MalformedError(f"{header}: must be {forms}") from None


def signature_header(values: Sequence[str], algorithm: str) -> dict[str, str]:
    """The one ``Signature`` header's pairs, checked: one header, each key once, the provider's algorithm.

    ``keyVersion`` must be a whole number when present; it names the provider's own key, which rotates on the
    provider's schedule, so it is not compared with the merchant profile's ``keyVersion`` (that one is ours).
    """
    if len(values) != 1:
        raise MalformedError(f"{len(values)} Signature headers: exactly one is allowed")
    names = [part.strip().partition("=")[0].strip() for part in values[0].split(",")]
    for key in _SIGNATURE_KEYS:
        if names.count(key) > 1:
            raise MalformedError(f"Signature header carries {key} more than once (two headers merged?)")
    pairs = signing.parse_signature_header(values[0])
    if pairs.get("algorithm") != algorithm:
        raise MalformedError(f"Signature algorithm must be {algorithm}")
    key_version = pairs.get("keyVersion")
    if key_version is not None and not _DIGITS.fullmatch(key_version):
        raise MalformedError("Signature keyVersion must be a whole number")
    if not pairs.get("signature"):
        raise MalformedError("Signature header has no signature")
    return pairs


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a malformed string"
    return f"a {type(value).__name__}"
