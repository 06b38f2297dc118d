"""A stored refund item for people: its status and what it means first, times as ISO with "12 s ago", the last
answer explained (the provider's call result is not the refund's status), then the rest.

``--json`` keeps every field of the item and only turns its epoch-second fields into ISO strings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.table import Table

from refund_poller.cli.render import styled_status

# What each stored status means to someone reading it (README, "Outcomes").
MEANINGS = {
    "SUCCESS": "final: the provider completed the refund",
    "FAIL": "final: the provider says the refund failed",
    "PROCESSING": "not final yet: the provider is still processing it",
    "UNKNOWN": "no trusted answer yet (unreachable, unverified or unexpected answer)",
    "NOT_FOUND": "the provider did not find the refund in the allowed polls",
    "UNRESOLVED": "the polling window closed without a final status: send the message again later",
    "ERROR": "the provider refused the inquiry, or polling failed: see why",
}
# Fields the stack stores as epoch seconds (DynamoDB TTL, the window's deadline, the outbox index).
EPOCH_FIELDS = ("windowEndsAt", "expiresAt", "pendingSince")


def iso(value: Any) -> str:
    """An ISO 8601 UTC string for an epoch number (seconds) or an ISO string; other values as they are."""
    moment = _moment(value)
    if moment is None:
        return str(value)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_time(value: Any, now: float | None = None) -> str:
    """``2026-12-01T04:16:47.830Z (12 s ago)``, or ``(in 5 s)`` for a time still to come."""
    moment = _moment(value)
    if moment is None:
        return str(value)
    delta = (time.time() if now is None else now) - moment.timestamp()
    return f"{iso(value)} ({ago(delta)})"


def ago(seconds: float) -> str:
    span = abs(seconds)
    if span < 90:
        amount = f"{span:.0f} s"
    elif span < 90 * 60:
        amount = f"{span / 60:.0f} min"
    elif span < 36 * 3600:
        amount = f"{span / 3600:.0f} h"
    else:
        amount = f"{span / 86400:.0f} d"
    return f"{amount} ago" if seconds >= 0 else f"in {amount}"


def json_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """The whole item with its epoch fields as ISO strings (all times in one form)."""
    return {name: iso(value) if name in EPOCH_FIELDS and value is not None else value for name, value in item.items()}


def meaning(item: Mapping[str, Any]) -> str:
    status = str(item.get("status") or "")
    if status in ("PROCESSING", "UNKNOWN") and item.get("pollingState") == "POLLING":
        return MEANINGS[status] + "; polling goes on"
    return MEANINGS.get(status, "")


def last_answer(item: Mapping[str, Any], now: float | None = None) -> str:
    """The last answer in words: the refund's status it gave, whether it was proven, when, and the call's result
    code named as what it is (``SUCCESS`` there means the inquiry call worked, not that the refund did)."""
    observation = item.get("lastObservation") or {}
    if not observation:
        return ""
    verified = "signature verified" if observation.get("verified") else "NOT verified: proves nothing"
    words = [f"{observation.get('status', '?')} ({verified})"]
    if item.get("lastPollAt"):
        words.append(f"at {human_time(item['lastPollAt'], now)}")
    said = [str(observation["reason"])] if observation.get("reason") else []
    result = item.get("result") or {}
    code = observation.get("resultCode") or result.get("code")
    if code:
        call = f"the inquiry call's result: {code}"
        status = observation.get("resultStatus") or result.get("status")
        call += f"/{status}" if status else ""
        call += f" {result['message']!r}" if result.get("message") else ""
        said.append(call)
    return " ".join(words) + ("; " + "; ".join(said) if said else "")


def _amount(item: Mapping[str, Any]) -> str:
    amount = item.get("amount") or {}
    if not amount:
        return ""
    return f"{amount.get('value')} {amount.get('currency', '')} (minor units)".strip()


def _ids(item: Mapping[str, Any]) -> str:
    named = [f"{name} {item[name]}" for name in ("refundRequestId", "refundId") if item.get(name)]
    return ", ".join(named)


def _polling(item: Mapping[str, Any], now: float | None) -> str:
    polls = f"{item.get('polls', 0)} polls"
    if item.get("pollingState") == "POLLING":
        ends = f", window closes {human_time(item['windowEndsAt'], now)}" if item.get("windowEndsAt") else ""
        return f"window open (polling): {polls}{ends}"
    closed = f" {human_time(item['resolvedAt'], now)}" if item.get("resolvedAt") else ""
    return f"window closed{closed}: {polls}"


def status_rows(item: Mapping[str, Any], now: float | None = None) -> list[tuple[str, str]]:
    """(label, text) rows, most useful first; every field of the item appears somewhere."""
    shown: set[str] = set()

    def take(*names: str) -> None:
        shown.update(names)

    rows: list[tuple[str, str]] = []
    status = str(item.get("status") or "-")
    rows.append(("status", f"{styled_status(status)}  {_escape(meaning(item))}".rstrip()))  # meaning beside it
    take("status", "final")
    if item.get("reason"):
        rows.append(("why", _escape(str(item["reason"]))))
    take("reason")
    if item.get("finalConflict"):
        count = item.get("finalConflictCount", 1)
        rows.append(("conflict", f"the provider contradicted the final status {count}x: treat as disputed"))
        rows.append(("", _escape(json.dumps(item["finalConflict"], default=str))))
    take("finalConflict", "finalConflictCount")
    answer = last_answer(item, now)
    if answer:
        rows.append(("last answer", _escape(answer)))
    take("lastObservation", "result", "lastPollAt")
    rows.append(("refund", _escape(f"{item.get('provider')}/{item.get('merchant')} {_ids(item)}")))
    take("provider", "merchant", "refundRequestId", "refundId")
    for label, name in (("amount", "amount"), ("refund time", "refundTime"), ("fail reason", "failReason")):
        value = _amount(item) if name == "amount" else item.get(name)
        if value:
            rows.append((label, _escape(str(value))))
        take(name)
    rows.append(("polling", _polling(item, now)))
    take("pollingState", "polls", "windowEndsAt", "resolvedAt")
    for label, name in (
        ("first poll", "firstPollAt"),
        ("final at", "finalAt"),
        ("window opened", "claimedAt"),
        ("kept until", "expiresAt"),
    ):
        if item.get(name):
            verified = item.get("finalVerified")
            proven = "" if verified is None else (", answer verified" if verified else ", answer NOT verified")
            rows.append((label, human_time(item[name], now) + (proven if name == "finalAt" else "")))
        take(name, "finalVerified")
    if item.get("generation") or item.get("windowId"):
        rows.append(("window id", f"g{item.get('generation', '?')} {item.get('windowId', '')}".rstrip()))
    take("generation", "windowId")
    if item.get("correlationId"):
        rows.append(("correlation", _escape(str(item["correlationId"]))))
    take("correlationId")
    if item.get("eventId"):
        pending = "pending (not published yet)" if item.get("eventPending") else "published"
        rows.append(("result event", f"{item['eventId']} {pending}"))
    take("eventId", "eventPending")
    if item.get("executionArn"):
        rows.append(("execution", str(item["executionArn"])))
    take("executionArn")
    for name, value in item.items():
        if name in shown or value is None:
            continue
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        rows.append((name, _escape(iso(value) if name in EPOCH_FIELDS else text)))
    return rows


def status_table(title: str, item: Mapping[str, Any], now: float | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.title = _escape(title)
    table.title_justify = "left"
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for label, text in status_rows(item, now):
        table.add_row(label, text)
    return table


def _moment(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal) or (isinstance(value, str) and _is_number(value)):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
