"""The polling policy and the one decision the state machine reads after every poll.

Deadlines are decided here, in code, rather than by timestamp rules in the state machine
(moto's interpreter mis-compares fractional timestamps, and code is easier to test).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from refund_core.domain.outcome import Observation, Status

Next = Literal["wait", "done", "fail"]
# "Back off when rate-limited" (providers.md §2, §3 U rows); HTTP 429 Too Many Requests says the same.
RATE_LIMIT_CODES = frozenset({"REQUEST_TRAFFIC_EXCEED_LIMIT"})
RATE_LIMIT_HTTP_STATUS = 429
# Bounds a message may choose within (architecture.md: "per message within bounds").
INTERVAL_BOUNDS = (1, 300)
DURATION_BOUNDS = (1, 900)
# EXPRESS workflows stop at 5 minutes: keep the window (plus a last poll and retries) well inside.
EXPRESS_MAX_WINDOW_SECONDS = 240


@dataclass(frozen=True, slots=True)
class Policy:
    """How one refund is polled. ``not_found_*`` apply to providers with a documented not-found rhythm (Antom)."""

    interval_seconds: int = 5
    max_duration_seconds: int = 60
    not_found_interval_seconds: int | None = None
    not_found_max_polls: int | None = None

    def to_state(self) -> dict[str, int]:
        return {_camel(k): v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> Policy:
        return cls(
            interval_seconds=int(data["intervalSeconds"]),
            max_duration_seconds=int(data["maxDurationSeconds"]),
            not_found_interval_seconds=_optional_int(data.get("notFoundIntervalSeconds")),
            not_found_max_polls=_optional_int(data.get("notFoundMaxPolls")),
        )

    def overridden(self, interval_seconds: int | None, max_duration_seconds: int | None) -> Policy:
        """This policy with a message's overrides, clamped to the allowed bounds."""
        return replace(
            self,
            interval_seconds=_clamp(interval_seconds, INTERVAL_BOUNDS, self.interval_seconds),
            max_duration_seconds=_clamp(max_duration_seconds, DURATION_BOUNDS, self.max_duration_seconds),
        )

    def capped(self, max_duration_seconds: int) -> Policy:
        """This policy with its window no longer than ``max_duration_seconds``."""
        return replace(self, max_duration_seconds=min(self.max_duration_seconds, max_duration_seconds))


def policies_from_json(text: str) -> dict[str, Policy]:
    """Parse the stack's ``POLLING_POLICY`` variable: ``{"antom": {"intervalSeconds": 5, …}, …}``."""
    return {provider: Policy.from_state(values) for provider, values in json.loads(text).items()}


@dataclass(frozen=True, slots=True)
class Decision:
    next: Next
    status: Status
    wait_seconds: int = 0

    def to_state(self) -> dict[str, Any]:
        return {"next": self.next, "waitSeconds": self.wait_seconds, "status": self.status.value}


def decide(observation: Observation, policy: Policy, *, now: float, deadline: float, not_found_polls: int) -> Decision:
    """What to do after ``observation``, given the window ending at ``deadline`` (epoch seconds).

    ``not_found_polls`` counts consecutive not-found answers including this one.
    """
    status = observation.status
    if status.final:
        return Decision("done", status)
    if status is Status.ERROR:
        return Decision("fail", status)
    if status is Status.NOT_FOUND and policy.not_found_max_polls is not None:
        # Antom: "call again after 15 seconds; after three retries with no result, the order was never placed".
        if not_found_polls > policy.not_found_max_polls:
            return Decision("done", Status.NOT_FOUND)
        return _wait_or_close(policy.not_found_interval_seconds or policy.interval_seconds, status, now, deadline)
    interval = policy.interval_seconds
    if rate_limited(observation):
        interval *= 2  # back off when the provider says we ask too often
    return _wait_or_close(interval, status, now, deadline)


def deferred(policy: Policy, *, now: float, deadline: float, retry_after: float) -> Decision:
    """The decision for a poll the provider rate budget did not let ask: wait longer than the interval (until a
    turn may be free), or close the window if that wait would pass its deadline."""
    wait = policy.interval_seconds + max(1, math.ceil(retry_after))
    return _wait_or_close(wait, Status.UNKNOWN, now, deadline)


def rate_limited(observation: Observation) -> bool:
    """True when the provider says we ask too often: REQUEST_TRAFFIC_EXCEED_LIMIT, or HTTP 429."""
    return observation.result.code in RATE_LIMIT_CODES or observation.http_status == RATE_LIMIT_HTTP_STATUS


def _wait_or_close(interval: int, status: Status, now: float, deadline: float) -> Decision:
    if now + interval < deadline:
        return Decision("wait", status, interval)
    # The window closed: a refund nobody has heard of ends "not found", anything else "unresolved".
    return Decision("done", Status.NOT_FOUND if status is Status.NOT_FOUND else Status.UNRESOLVED)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _clamp(value: int | None, bounds: tuple[int, int], default: int) -> int:
    if value is None:
        return default
    return max(bounds[0], min(bounds[1], value))
