"""Who may start polling a refund: the idempotency rules of architecture.md, as one pure function.

- SQS redelivery of the same message never starts a second loop;
- a second message while a poll is running does not start a second loop;
- a refund already final is not polled again unless ``force``;
- a refund whose last window ended (unresolved, not found, error) can be polled again.

Every claim, a resume included, opens a new window (a new ``windowId``): a loop a crashed starter may
already have started belongs to the old window, and its next write fails, so it ends (docs/internals.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

POLLING = "POLLING"
IDLE = "IDLE"
# A claim whose window ended this long ago without being closed belongs to a starter that died.
STALE_CLAIM_GRACE_SECONDS = 120

Verdict = Literal["claim", "resume", "skip"]
# The item's outbox (docs/internals.md, "Result events"): a result event stored but not yet published.
EVENT_PENDING = "eventPending"
EVENT_ID = "eventId"
CONFLICT_EVENT_PENDING = "conflictEventPending"
CONFLICT_EVENT_ID = "conflictEventId"


def has_pending_event(item: Mapping[str, Any] | None) -> bool:
    """True when a closed window's result (or conflict) event has not been published yet."""
    return bool(item and (item.get(EVENT_PENDING) or item.get(CONFLICT_EVENT_PENDING)))


@dataclass(frozen=True, slots=True)
class ClaimVerdict:
    verdict: Verdict
    reason: str


def judge_claim(item: Mapping[str, Any] | None, *, message_id: str, force: bool, now: float) -> ClaimVerdict:
    """Decide whether a message may poll the refund whose stored ``item`` is given (None: never seen)."""
    if item is None:
        return ClaimVerdict("claim", "first inquiry for this refund")
    polling = item.get("pollingState") == POLLING
    if item.get("claimMessageId") == message_id:
        if polling and not item.get("executionArn"):
            return ClaimVerdict("resume", "redelivery of the message that claimed this refund (new window)")
        return ClaimVerdict("skip", "redelivery of a message already handled")
    if item.get("final") and not force:
        return ClaimVerdict("skip", f"refund already final ({item.get('status')}); send force=true to poll again")
    if polling and float(item.get("windowEndsAt", 0)) + STALE_CLAIM_GRACE_SECONDS > now:
        return ClaimVerdict("skip", "a poll for this refund is already running")
    return ClaimVerdict("claim", "polling again after an earlier window ended")
