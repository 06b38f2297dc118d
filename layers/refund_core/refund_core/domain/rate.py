"""The provider rate budget's arithmetic: how many inquiries per second one merchant's credentials may make.

Every process that polls for one (provider, merchant) shares one schedule (where it is kept is the AWS layer's
business: refund_core/aws/rate_budget.py). The schedule is GCRA, the "virtual scheduling" form of a token bucket
without burst: ``nextSlot`` is the earliest instant the next inquiry may go; a caller takes the turn
``max(nextSlot, now + lead)``, moves ``nextSlot`` a spacing past it, sleeps until its turn and asks the provider
then (``lead`` covers the store call's own latency, so the turn is still ahead when the answer comes back; a turn
whose answer came back too late is given up, never used late). Turns are at least ``1 / rate`` apart (plus a
small margin for sending), so any one-second span holds at most ``rate`` inquiries, however many callers there
are.

The rate adapts (AIMD): a rate-limit answer from the provider halves the rate in force (at most once per
``LOWERING_COOLDOWN_SECONDS``: the answers of one burst arrive together), and the rate then grows back linearly,
by ``RECOVERY_SHARE_PER_SECOND`` of the configured budget each second, until it is the configured budget again.
Only the lowering is stored (``loweredRate``, ``loweredAt``); the recovered rate is computed, so recovery costs
no writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# The stack's default budget per (provider, merchant), inquiries per second (template.yaml ProviderRateLimit).
DEFAULT_RATE_PER_SECOND = 20.0
# Bounds of a configured budget (the stack parameter and a merchant profile's rateLimitPerSecond).
MIN_RATE_PER_SECOND = 0.1
# One item takes every turn: DynamoDB sustains 1,000 write units a second per partition key, and a turn is one or
# two writes under contention (docs/internals.md, "Provider rate budget").
MAX_RATE_PER_SECOND = 400.0
# A caller may reserve a turn at most this far after its earliest instant and sleep until it; later is "over budget".
MAX_AHEAD_SECONDS = 1.0
# Turns are (1 + SPACING_MARGIN) / rate apart; a turn is sent at most LATE_TOLERANCE_SECONDS after its instant
# (a caller whose store call answered later gives the turn up), leaving the rest of the margin for the send.
SPACING_MARGIN = 0.1
LATE_TOLERANCE_SECONDS = 0.05
# A turn later than this is given up even when the schedule could be moved past it: a process that starved is
# likely to be slow sending too.
MAX_KEPT_LATENESS_SECONDS = 0.25
# The lead a caller takes before its earliest turn: about twice its store call's latency, within these bounds.
MIN_LEAD_SECONDS = 0.02
MAX_LEAD_SECONDS = 1.0
# A rate-limit answer halves the rate, never below this share of the configured budget.
MIN_RATE_SHARE = 1 / 32
LOWERING_COOLDOWN_SECONDS = 1.0
RECOVERY_SHARE_PER_SECOND = 0.05  # from half the budget back to all of it in 10 s without new rate-limit answers


class RateBudgetError(ValueError):
    """A configured rate budget is out of bounds (the message names the setting and the rule)."""


def check_rate(value: object, setting: str) -> float:
    """A configured budget: a number from MIN to MAX inquiries per second; raises naming ``setting``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RateBudgetError(f"{setting}: must be a number of inquiries per second")
    if not MIN_RATE_PER_SECOND <= value <= MAX_RATE_PER_SECOND:
        raise RateBudgetError(
            f"{setting}: must be from {MIN_RATE_PER_SECOND:g} to {MAX_RATE_PER_SECOND:g} inquiries per second"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Schedule:
    """The shared schedule as last read: all None when it does not exist yet."""

    next_slot: float | None = None
    lowered_rate: float | None = None
    lowered_at: float | None = None

    def rate(self, configured: float, now: float) -> float:
        """The rate in force at ``now``: the configured budget, or the lowered rate recovering towards it."""
        if self.lowered_rate is None or self.lowered_at is None:
            return configured
        recovered = self.lowered_rate + configured * RECOVERY_SHARE_PER_SECOND * max(0.0, now - self.lowered_at)
        return min(configured, recovered)

    def lowered(self, configured: float, now: float) -> float:
        """The rate after one more rate-limit answer at ``now``: half the rate in force, within the floor."""
        return max(configured * MIN_RATE_SHARE, self.rate(configured, now) / 2)

    def may_lower(self, now: float) -> bool:
        return self.lowered_at is None or now - self.lowered_at >= LOWERING_COOLDOWN_SECONDS


Move = Literal["idle", "queue", "over"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a caller tries, given the schedule as it knows it.

    ``idle``: the schedule is free by ``slot`` (the caller's earliest instant: now plus the lead its store call
    needs): take ``slot``. ``queue``: take ``nextSlot``, at most MAX_AHEAD_SECONDS after the earliest instant.
    ``over``: over budget, no turn for ``retry_after`` seconds.
    """

    move: Move
    spacing: float  # seconds between turns at the rate in force
    slot: float = 0.0
    retry_after: float = 0.0


def spacing(rate: float) -> float:
    """Seconds between turns: ``1 / rate`` plus SPACING_MARGIN, which absorbs up to SPACING_MARGIN seconds of
    lateness in sending (``rate + 1`` turns then span more than ``1 + SPACING_MARGIN`` seconds)."""
    return (1 + SPACING_MARGIN) / rate


def plan(schedule: Schedule, configured: float, now: float, lead: float) -> Plan:
    """The move to try. ``nextSlot`` only ever grows, so a stale schedule errs towards trying, never over budget."""
    gap, earliest = spacing(schedule.rate(configured, now)), now + lead
    if schedule.next_slot is None or schedule.next_slot <= earliest:
        return Plan("idle", gap, slot=earliest)
    if schedule.next_slot <= earliest + MAX_AHEAD_SECONDS:
        return Plan("queue", gap, slot=schedule.next_slot)
    return Plan("over", gap, retry_after=schedule.next_slot - MAX_AHEAD_SECONDS - earliest)


@dataclass(frozen=True, slots=True)
class Grant:
    """A caller's turn, taken: ask the provider now (``delay``: the seconds it took, already waited); or not taken:
    over budget, come back in ``retry_after`` seconds.

    ``calls`` counts the schedule's store operations it took (the cost).
    """

    granted: bool
    delay: float = 0.0
    retry_after: float = 0.0
    calls: int = 0
