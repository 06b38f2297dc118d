"""The long tail: after the fast window closes without a final status, one inquiry at a time on a widening schedule,
until the refund is final, not found, or the tail's maximum age is reached (docs/long-tail.md).

Pure planning, no AWS: when the next attempt is due, whether the tail gives up, and the schedule's name. Every
planned time follows from the previous planned time, never from the clock at the firing, so a late or
time-compressed firing does not change the plan, and the give-up point is a fixed instant (``since`` + max age).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from refund_core.domain.inquiry import RefundRef, key_digest

# The default rhythm (about Antom's notification retries, then daily), seconds between attempts; the last repeats.
DEFAULT_SCHEDULE_SECONDS = (120, 600, 1800, 3600, 7200, 21600, 43200, 86400)
DEFAULT_MAX_AGE_SECONDS = 7 * 86400
# Bounds a stack parameter or a message may choose within (also in the message schema and template.yaml).
DELAY_BOUNDS = (60, 86400)
MAX_AGE_BOUNDS = (0, 30 * 86400)
MAX_SCHEDULE_STEPS = 20
# EventBridge Scheduler schedule names: 1-64 characters of [0-9a-zA-Z-_.] (CreateSchedule, request parameter Name).
SCHEDULE_NAME = re.compile(r"[0-9A-Za-z_.-]{1,64}")
TAIL_STATE = "TAIL"  # pollingState while an attempt is pending (between two inquiries)


@dataclass(frozen=True, slots=True)
class TailPolicy:
    """How the tail of one provider (or one refund, after a message's overrides) is scheduled."""

    schedule_seconds: tuple[int, ...] = DEFAULT_SCHEDULE_SECONDS
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS

    @property
    def enabled(self) -> bool:
        return self.max_age_seconds > 0 and bool(self.schedule_seconds)

    def delay(self, attempt: int) -> int:
        """Seconds before tail attempt ``attempt`` (1-based), counted from the previous attempt's planned time."""
        return self.schedule_seconds[min(attempt, len(self.schedule_seconds)) - 1]

    def overridden(self, schedule_seconds: Sequence[int] | None, max_age_seconds: int | None) -> TailPolicy:
        """A message's overrides (already checked against the schema's bounds), clamped once more."""
        policy = self
        if schedule_seconds:
            steps = tuple(_clamp(int(s), DELAY_BOUNDS) for s in schedule_seconds[:MAX_SCHEDULE_STEPS])
            policy = replace(policy, schedule_seconds=steps)
        if max_age_seconds is not None:
            policy = replace(policy, max_age_seconds=_clamp(int(max_age_seconds), MAX_AGE_BOUNDS))
        return policy

    def to_state(self, since: float) -> dict[str, Any]:
        """The plan as carried in the state machine's state and on the item: schedule, max age, the age's origin."""
        return {
            "scheduleSeconds": list(self.schedule_seconds),
            "maxAgeSeconds": self.max_age_seconds,
            "since": round(since, 3),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> TailPolicy:
        return cls(tuple(int(s) for s in data.get("scheduleSeconds") or ()), int(data.get("maxAgeSeconds", 0)))


@dataclass(frozen=True, slots=True)
class NextAttempt:
    attempt: int
    at: float  # epoch seconds


def plan_next(policy: TailPolicy, since: float, attempt: int, previous_at: float) -> NextAttempt | None:
    """Tail attempt ``attempt`` after an attempt (or the fast window's close) planned at ``previous_at``.

    None when the tail is over: the maximum age (from ``since``) was reached by the previous attempt. The last
    attempt is pulled in to the maximum age itself, so a refund is always asked once at its maximum age.
    """
    if not policy.enabled:
        return None
    limit = since + policy.max_age_seconds
    if previous_at >= limit:
        return None
    return NextAttempt(attempt, min(previous_at + policy.delay(attempt), limit))


def policies_from_json(text: str | None) -> dict[str, TailPolicy]:
    """The stack's ``TAIL_POLICY``: ``{"antom": {"scheduleSeconds": [120, …], "maxAgeSeconds": 604800}, …}``.

    Absent (an older template): no tail anywhere, today's behaviour.
    """
    if not text:
        return {}
    policies = {}
    for provider, values in json.loads(text).items():
        steps = tuple(int(s) for s in values.get("scheduleSeconds") or ())
        for step in steps:
            if not DELAY_BOUNDS[0] <= step <= DELAY_BOUNDS[1]:
                raise ValueError(f"TAIL_POLICY {provider}.scheduleSeconds: {step} is outside {DELAY_BOUNDS}")
        max_age = int(values.get("maxAgeSeconds", 0))
        if not MAX_AGE_BOUNDS[0] <= max_age <= MAX_AGE_BOUNDS[1]:
            raise ValueError(f"TAIL_POLICY {provider}.maxAgeSeconds: {max_age} is outside {MAX_AGE_BOUNDS}")
        policies[provider] = TailPolicy(steps, max_age)
    return policies


def schedule_name(key: str, window_id: str, attempt: int) -> str:
    """``rp-<key hash>-<window id>-<attempt>``: one name per refund, window and attempt (at most 64 characters).

    Deterministic, so a retried write creates no second schedule (CreateSchedule answers ConflictException), and
    free of the refund id's characters, which schedule names do not allow. Support staff find the refund from the
    schedule's input (the message), not its name.
    """
    name = f"rp-{key_digest(RefundRef.from_item_key(key))}-{window_id}-{attempt}"
    if not SCHEDULE_NAME.fullmatch(name):
        raise ValueError("schedule name: must be 1-64 characters of [0-9A-Za-z_.-]")
    return name


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))
