"""Request traffic per merchant: counted per second, and refused over a configurable limit as a provider would.

Providers answer ``REQUEST_TRAFFIC_EXCEED_LIMIT`` (result status U), or HTTP 429, when one merchant's credentials
ask too often (providers.md §2, §3). The sandbox counts every authenticated inquiry per (provider, caller) at
arrival, so tests can prove a poller's rate budget holds: ``maxPerCalendarSecond`` is the most arrivals in one
second of the clock, ``maxPerSecond`` the most in any one-second span (sliding: stricter, and it also counts this
process's own lateness in taking requests in). ``maxSentPerCalendarSecond`` counts the same inquiries by the
signed ``Request-Time`` the caller stamped when it sent them (same machine, same clock): the poller's own pacing,
free of the lateness of this server and of the network in between, which on a loaded machine bunches arrivals that
left evenly spaced. With ``limitPerSecond`` set, an inquiry beyond that many in its second of the clock is refused
(and counted as refused), as a gateway's per-second counter does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TRAFFIC_ANSWERS = ("ratelimit", "http429")
MAX_LIMIT_PER_SECOND = 100_000
KEPT_SECONDS = 600  # per-second counts kept per caller (the most recent)


class TrafficError(ValueError):
    """A traffic configuration is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    """``limitPerSecond`` for every caller (each counted on its own); None: no limit. ``answer``: how a refused
    inquiry is answered (``ratelimit``: HTTP 200 with REQUEST_TRAFFIC_EXCEED_LIMIT, ``http429``: HTTP 429)."""

    limit_per_second: int | None = None
    answer: str = "ratelimit"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrafficConfig:
        unknown = sorted(set(data) - {"limitPerSecond", "answer"})
        if unknown:
            raise TrafficError(f"{unknown[0]}: is not a traffic field (limitPerSecond, answer)")
        limit = data.get("limitPerSecond")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT_PER_SECOND
        ):
            raise TrafficError(f"limitPerSecond: must be a whole number from 1 to {MAX_LIMIT_PER_SECOND}, or null")
        answer = data.get("answer", "ratelimit")
        if answer not in TRAFFIC_ANSWERS:
            raise TrafficError(f"answer: must be one of {', '.join(TRAFFIC_ANSWERS)}")
        return cls(limit, str(answer))


@dataclass
class _Caller:
    requests: int = 0
    refused: int = 0
    max_per_second: int = 0
    recent: deque[float] = field(default_factory=deque)  # arrivals in the last second
    per_second: dict[int, int] = field(default_factory=dict)
    sent_per_second: dict[int, int] = field(default_factory=dict)  # by the caller's signed Request-Time


class Traffic:
    """Thread-safe counters and the limit (the HTTP server answers each request on its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.config = TrafficConfig()
        self._callers: dict[str, _Caller] = {}

    def configure(self, config: TrafficConfig) -> None:
        with self._lock:
            self.config = config

    def admit(self, provider: str, caller: str, now: float, sent_at: float | None = None) -> str | None:
        """Count one arrival (``sent_at``: when the caller says it sent it, if it says); None to answer it, or the
        answer kind (``ratelimit``/``http429``) that refuses it."""
        with self._lock:
            counts = self._callers.setdefault(f"{provider}/{caller}", _Caller())
            counts.requests += 1
            while counts.recent and counts.recent[0] <= now - 1.0:
                counts.recent.popleft()
            counts.recent.append(now)
            counts.max_per_second = max(counts.max_per_second, len(counts.recent))
            second = int(now)
            _count(counts.per_second, second)
            if sent_at is not None:
                _count(counts.sent_per_second, int(sent_at))
            limit = self.config.limit_per_second
            if limit is not None and counts.per_second[second] > limit:
                counts.refused += 1
                return self.config.answer
            return None

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            callers = {
                name: {
                    "requests": c.requests,
                    "refused": c.refused,
                    "maxPerSecond": c.max_per_second,
                    "maxPerCalendarSecond": max(c.per_second.values(), default=0),
                    "maxSentPerCalendarSecond": max(c.sent_per_second.values(), default=0),
                    "perSecond": {str(second): n for second, n in sorted(c.per_second.items())},
                }
                for name, c in self._callers.items()
            }
            return {"limitPerSecond": self.config.limit_per_second, "answer": self.config.answer, "callers": callers}

    def clear(self) -> None:
        with self._lock:
            self._callers.clear()
            self.config = TrafficConfig()


def _count(per_second: dict[int, int], second: int) -> None:
    per_second[second] = per_second.get(second, 0) + 1
    if len(per_second) > KEPT_SECONDS:
        del per_second[min(per_second)]
