"""What the sandbox remembers: refunds and where each stands in its script, used nonces, recent requests.

Polls are counted per refund; the wall-clock time of the first final answer (``finalAt``) is kept
so benchmarks can measure how long the poller took to notice. All methods are thread-safe: the
HTTP server answers each request on its own thread.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from refund_poller.sandbox.chaos import Chaos, ChaosConfig
from refund_poller.sandbox.notifications import NotifyTarget
from refund_poller.sandbox.script import Script, Step, script_for_id
from refund_poller.sandbox.traffic import Traffic

FINAL_KINDS = frozenset({"success", "fail"})
MAX_NONCES = 100_000
MAX_LOGGED_REQUESTS = 1_000


@dataclass
class RefundRecord:
    """One refund at one provider: its script, the cursor into it, and what was answered."""

    provider: str
    script: Script
    refund_id: str | None = None
    refund_request_id: str | None = None
    polls: int = 0
    chaos_faults: int = 0
    first_poll_at: float | None = None
    last_poll_at: float | None = None
    final_at: float | None = None
    final_status: str | None = None
    last_path: str | None = None
    refund_time: str | None = None  # fixed at the first final answer, so every later answer repeats it
    position: int = 0
    step_polls: int = 0
    step_started: float | None = None  # monotonic clock: seconds-long steps must not jump with the wall clock
    caller: str | None = None  # the caller id of the latest poll: whose merchant notifications go to
    notify: NotifyTarget | None = None  # a per-refund notification target (overrides the merchant's)
    settle_due: float | None = None  # when a timer will check whether the clock made this refund final

    def advance(self, now: float) -> str:
        """Consume one poll of the script and return the kind of answer it calls for."""
        steps = self.script.steps
        while self.position + 1 < len(steps) and self._step_done(steps[self.position], now):
            self.position, self.step_polls, self.step_started = self.position + 1, 0, None
        if self.step_started is None:
            self.step_started = now
        self.step_polls += 1
        return steps[self.position].kind

    def final_due(self) -> float | None:
        """When the clock alone makes this refund final: its current step lasts seconds, a final step follows."""
        steps = self.script.steps
        step = steps[self.position]
        if step.seconds is None or self.step_started is None or self.position + 1 >= len(steps):
            return None
        return self.step_started + step.seconds if steps[self.position + 1].kind in FINAL_KINDS else None

    def settle(self, now: float) -> str | None:
        """Move past seconds-long steps the clock has finished, without a poll; the kind reached, if it moved."""
        steps = self.script.steps
        moved = False
        while (
            self.position + 1 < len(steps)
            and steps[self.position].seconds is not None
            and self._step_done(steps[self.position], now)
        ):
            self.position, self.step_polls, self.step_started, moved = self.position + 1, 0, None, True
        return steps[self.position].kind if moved else None

    def _step_done(self, step: Step, now: float) -> bool:
        if step.polls is not None:
            return self.step_polls >= step.polls
        if step.seconds is not None and self.step_started is not None:
            return now - self.step_started >= step.seconds
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "refundId": self.refund_id,
            "refundRequestId": self.refund_request_id,
            "script": self.script.text,
            "polls": self.polls,
            "chaosFaults": self.chaos_faults,
            "firstPollAt": self.first_poll_at,
            "lastPollAt": self.last_poll_at,
            "finalAt": self.final_at,
            "finalStatus": self.final_status,
            "lastPath": self.last_path,
            "notify": None if self.notify is None else self.notify.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Poll:
    """The outcome of counting one poll: what to answer and how late."""

    kind: str
    number: int
    slow_ms: int
    chaos: bool


class RefundBook:
    """Refunds by provider and id; a refund id and a refund request id both lead to the same record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], RefundRecord] = {}

    def find_or_create(self, provider: str, refund_id: str | None, refund_request_id: str | None) -> RefundRecord:
        """The refund an inquiry names (refundId wins, as at the providers), created from its id's script.

        Raises:
            ScriptError: when a new refund's id carries a script that does not parse.
        """
        key = refund_id or refund_request_id
        assert key is not None  # the caller checked that at least one id is given
        with self._lock:
            record = self._records.get((provider, key))
            if record is None:
                record = RefundRecord(provider=provider, script=script_for_id(key))
            record.refund_id = record.refund_id or refund_id or invent_id(provider, "refundId", key)
            record.refund_request_id = (
                record.refund_request_id or refund_request_id or invent_id(provider, "refundRequestId", key)
            )
            for alias in (key, record.refund_id, record.refund_request_id):
                self._records.setdefault((provider, alias), record)
            return record

    def set_script(
        self, provider: str, refund_id: str, script: Script, notify: NotifyTarget | None = None
    ) -> RefundRecord:
        """Start the refund afresh with an explicit script (overrides the one its id carries)."""
        with self._lock:
            old = self._records.get((provider, refund_id))
            if old is not None:  # forget the old record under all its ids, not just this one
                self._records = {key: value for key, value in self._records.items() if value is not old}
            record = RefundRecord(provider=provider, script=script, notify=notify)
            self._records[(provider, refund_id)] = record
            return record

    def get(self, provider: str, refund_id: str) -> RefundRecord | None:
        with self._lock:
            return self._records.get((provider, refund_id))

    def poll(self, record: RefundRecord, path: str, chaos: Chaos, caller: str | None = None) -> Poll:
        """Count one poll; a chaos fault answers instead of the script without moving it on."""
        with self._lock:
            now = time.time()
            record.caller = caller or record.caller
            record.polls += 1
            record.first_poll_at = record.first_poll_at or now
            record.last_poll_at, record.last_path = now, path
            fault = chaos.roll()
            if fault is not None and fault != "slow":
                record.chaos_faults += 1
                return Poll(kind=fault, number=record.polls, slow_ms=record.script.slow_ms, chaos=True)
            slow_ms = record.script.slow_ms + (chaos.config.slow_ms if fault == "slow" else 0)
            kind = record.advance(time.monotonic())
            _fix_refund_time(record, kind, now)
            return Poll(kind=kind, number=record.polls, slow_ms=slow_ms, chaos=fault is not None)

    def settle(self, record: RefundRecord) -> str | None:
        """Let the clock move the refund on (no poll); the final kind it reached, or None."""
        with self._lock:
            record.settle_due = None
            kind = record.settle(time.monotonic())
            if kind not in FINAL_KINDS:
                return None
            _fix_refund_time(record, kind, time.time())
            return kind

    def claim_settle(self, record: RefundRecord) -> float | None:
        """The time to check the clock for this refund, unless a check is already due then (or none is needed)."""
        with self._lock:
            due = record.final_due()
            if due is None or due == record.settle_due or record.final_at is not None:
                return None
            record.settle_due = due
            return due

    def mark_final(self, record: RefundRecord, kind: str) -> bool:
        """Remember when a final status was first answered (called as the answer goes out, after any delay).

        True the first time only: the moment the refund turns final, when its notification goes out.
        """
        with self._lock:
            if record.final_at is None and kind in FINAL_KINDS:
                record.final_at, record.final_status = time.time(), kind.upper()
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def _fix_refund_time(record: RefundRecord, kind: str, now: float) -> None:
    if kind in FINAL_KINDS and record.refund_time is None:
        record.refund_time = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def invent_id(provider: str, field_name: str, key: str) -> str:
    """A stable id for the one the caller did not give, so the same question gets the same answer."""
    digest = hashlib.sha256(f"{provider}|{field_name}|{key}".encode()).hexdigest()[:24].upper()
    return {"refundId": "SBXR", "refundRequestId": "SBXQ", "paymentId": "SBXP"}[field_name] + digest


class NonceBook:
    """AlphaPay nonces already used, per merchant; the oldest are forgotten past a bound."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def claim(self, merchant: str, nonce: str) -> bool:
        """True the first time ``nonce`` is used by ``merchant``; False on a replay."""
        with self._lock:
            if (merchant, nonce) in self._seen:
                return False
            self._seen[(merchant, nonce)] = None
            if len(self._seen) > MAX_NONCES:
                self._seen.popitem(last=False)
            return True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """An inquiry as it arrived: tests read the path and headers the adapter really sent."""

    provider: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        """The header's value, matching the name exactly (AlphaPay documents names as case-sensitive)."""
        return next((value for key, value in self.headers if key == name), None)


@dataclass
class RequestLog:
    """The most recent inquiries, oldest first."""

    _entries: deque[LoggedRequest] = field(default_factory=lambda: deque(maxlen=MAX_LOGGED_REQUESTS))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class SandboxState:
    """Everything the sandbox remembers between requests; :meth:`reset` forgets it all."""

    refunds: RefundBook = field(default_factory=RefundBook)
    nonces: NonceBook = field(default_factory=NonceBook)
    chaos: Chaos = field(default_factory=Chaos)
    requests: RequestLog = field(default_factory=RequestLog)
    traffic: Traffic = field(default_factory=Traffic)

    def reset(self) -> None:
        self.refunds.clear()
        self.nonces.clear()
        self.requests.clear()
        self.chaos.configure(ChaosConfig())
        self.traffic.clear()
