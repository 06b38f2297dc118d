"""The inquiry workflow both handlers share: claim, poll once, record, decide, close.

Ports are small protocols so the handlers wire AWS adapters and tests may wire others.
The starter makes the first inquiry itself: most refunds are long final when a merchant asks,
and recording those at once costs no state transitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from refund_core.domain.claim import (
    CONFLICT_EVENT_ID,
    CONFLICT_EVENT_PENDING,
    EVENT_ID,
    EVENT_PENDING,
    has_pending_event,
)
from refund_core.domain.inquiry import InquiryMessage, RefundRef, execution_name
from refund_core.domain.outcome import Observation, Status
from refund_core.domain.polling import Decision, Policy, decide, deferred, rate_limited
from refund_core.domain.rate import Grant
from refund_core.providers import Provider, RefundQuery
from refund_core.store import (
    OUTBOX_GRACE_SECONDS,
    STATUS_WRITERS,
    SUPERSEDED_REASON,
    ClaimContendedError,
    DynamoDbRefundStore,
    Window,
    event_detail,
    may_publish,
    public_view,
)


class RejectedMessageError(ValueError):
    """A message that can never succeed as sent (it goes to the DLQ with this reason)."""


class Adapters(Protocol):
    def adapter(self, provider: str, merchant: str) -> Provider:
        """The provider adapter for a merchant profile; raises RejectedMessageError when there is none."""
        ...


class Events(Protocol):
    def publish(self, detail: Mapping[str, Any], *, detail_type: str = ...) -> None:
        """Publish one event; raise when it was not accepted (``FailedEntryCount`` included)."""
        ...


class Executions(Protocol):
    def start(self, name: str, state: Mapping[str, Any]) -> str: ...


class RateBudget(Protocol):
    """The shared provider rate budget per (provider, merchant) (docs/internals.md, "Provider rate budget").

    ``rate``: the merchant profile's own budget, None for the stack's.
    """

    def acquire(self, provider: str, merchant: str, rate: float | None = None) -> Grant:
        """A turn to ask the provider (after sleeping until it), or how long until one may be free."""
        ...

    def lower(self, provider: str, merchant: str, rate: float | None = None) -> bool:
        """The provider said we ask too often: lower the budget (it recovers by itself)."""
        ...


# Detail types of the events the product publishes (docs/internals.md, "Result events").
FINISHED_DETAIL_TYPE = "Refund Inquiry Finished"
CONFLICT_DETAIL_TYPE = "Refund Final Status Conflict"


class ResultEventPendingError(RuntimeError):
    """A closed window's result event could not be published: it stays pending on the item, and the retried
    invocation or redelivered message (or the refund's next claim or poll) publishes it."""


@dataclass(frozen=True, slots=True)
class PollResult:
    state: dict[str, Any]
    observation: Observation
    decision: Decision
    outcome: dict[str, Any] | None  # the closed item when this poll ended the window
    final_conflict: dict[str, Any] | None = None  # both answers when the provider contradicted a stored final status
    superseded: bool = False  # a newer window owns the refund: nothing was written and this loop ends
    deferred: bool = False  # over the provider rate budget: the provider was not asked, the poll waits longer

    @property
    def final_status_conflicts(self) -> int:
        """The ``FinalStatusConflicts`` metric's value for this poll."""
        return 1 if self.final_conflict else 0


@dataclass(frozen=True, slots=True)
class StartResult:
    action: str  # "skipped" | "recorded" | "polling"
    reason: str
    poll: PollResult | None = None
    execution_arn: str | None = None
    republished: int = 0  # pending result events of earlier windows this message published


@dataclass(frozen=True, slots=True)
class SweepResult:
    """One outbox sweep: items looked at, events published, items whose publish failed again (left pending)."""

    items: int
    published: int
    failed: int


class InquiryService:
    def __init__(
        self,
        store: DynamoDbRefundStore,
        adapters: Adapters,
        events: Events,
        policies: Mapping[str, Policy],
        clock: Callable[[], float] = time.time,
        max_window_seconds: int | None = None,
        rate_budget: RateBudget | None = None,
        record_every_poll: bool = True,
    ) -> None:
        self.max_window_seconds = max_window_seconds
        self.rate_budget = rate_budget
        # False (the stack's RecordEveryPoll): a poll writes the item only when the status changes, and the close
        # writes the polls in between; the state carries them meanwhile (docs/internals.md, "Express cost mode").
        self.record_every_poll = record_every_poll
        self.store = store
        self.adapters = adapters
        self.events = events
        self.policies = policies
        self.clock = clock

    def start(
        self,
        message: InquiryMessage,
        *,
        message_id: str,
        executions: Executions,
        budget_seconds: float | None = None,
    ) -> StartResult:
        """Handle one valid queue message: claim the refund, poll once, start the loop only if needed."""
        adapter = self.adapters.adapter(message.provider, message.merchant)
        now = self.clock()
        key = self.store.resolve(message, now=now).key
        policy = self.policies[message.provider].overridden(message.interval_seconds, message.max_duration_seconds)
        if self.max_window_seconds is not None:
            policy = policy.capped(self.max_window_seconds)
        deadline = now + policy.max_duration_seconds
        republished = 0
        for _ in range(3):
            claim = self.store.claim(message, key, message_id=message_id, now=now, window_end=deadline)
            if claim.pending is None:
                break
            if may_publish(claim.pending, message_id=message_id, now=now):
                republished += self.publish_pending(key, claim.pending)  # raises when it cannot: message retried
            elif claim.blocked:  # the closer is publishing right now; a new window waits for it (SQS retries)
                raise ClaimContendedError(f"could not claim {key}: the last window's result event is being published")
            else:
                break  # a message that would be skipped anyway leaves the event to its closer
        else:
            raise ClaimContendedError(f"could not claim {key}: result events kept appearing")
        if not claim.proceed:
            return StartResult("skipped", claim.reason, republished=republished)
        state: dict[str, Any] = {
            "inquiry": message.as_state(key),
            "policy": policy.to_state(),
            "deadline": round(deadline, 3),
            "generation": claim.generation,
            "windowId": claim.window_id,
            "polls": 0,
            "notFoundPolls": 0,
        }
        poll = self.poll_once(adapter, state, budget_seconds=budget_seconds)
        if poll.superseded:
            return StartResult("skipped", SUPERSEDED_REASON, poll, republished=republished)
        if poll.decision.next != "wait":
            return StartResult("recorded", claim.reason, poll, republished=republished)
        assert claim.window_id is not None
        name = execution_name(RefundRef.from_item_key(key), claim.generation, claim.window_id)
        arn = executions.start(name, poll.state)
        if not self.store.set_execution(key, claim.window, arn):
            # A newer window took the refund meanwhile; the loop just started ends at its first poll.
            return StartResult("skipped", SUPERSEDED_REASON, poll, arn, republished)
        return StartResult("polling", claim.reason, poll, arn, republished)

    def poll(self, state: Mapping[str, Any], *, budget_seconds: float | None = None) -> PollResult:
        """One poll of a running loop (the Inquire function's whole job)."""
        inquiry = state["inquiry"]
        adapter = self.adapters.adapter(inquiry["provider"], inquiry["merchant"])
        return self.poll_once(adapter, state, budget_seconds=budget_seconds)

    def poll_once(
        self, adapter: Provider, state: Mapping[str, Any], *, budget_seconds: float | None = None
    ) -> PollResult:
        """``budget_seconds``: the provider call's total time budget (from the invocation's remaining time).

        Every write is conditional on the state's window: when a newer window owns the refund nothing is written
        and the decision is ``done`` (this loop ends). A window closed already (a retried invocation) publishes
        its result event if still pending. Raises :class:`ResultEventPendingError` when the event of the window
        this poll closed could not be published (the item keeps it pending; a retry publishes it).
        """
        inquiry = state["inquiry"]
        key, window = inquiry["key"], Window.from_state(state)
        grant = self._turn(adapter, inquiry)
        new_state = dict(state)
        unrecorded = int(state.get("unrecordedPolls", 0))
        if grant.granted:
            query = RefundQuery(refund_id=inquiry.get("refundId"), refund_request_id=inquiry.get("refundRequestId"))
            observation = adapter.inquire(query, timeout_seconds=_less(budget_seconds, grant.delay))
            if self.rate_budget is not None and rate_limited(observation):
                self.rate_budget.lower(inquiry["provider"], inquiry["merchant"], _profile_rate(adapter))
            now = self.clock()
            not_found = int(state.get("notFoundPolls", 0)) + 1 if observation.status is Status.NOT_FOUND else 0
            decision = decide(
                observation,
                Policy.from_state(state["policy"]),
                now=now,
                deadline=float(state["deadline"]),
                not_found_polls=not_found,
            )
            new_state.update(polls=int(state.get("polls", 0)) + 1, notFoundPolls=not_found)
            unrecorded += 1
        else:  # over the rate budget: the provider is not asked, the poll comes back later (the deadline holds)
            observation = _not_asked(inquiry["provider"], grant)
            now = self.clock()
            policy, deadline = Policy.from_state(state["policy"]), float(state["deadline"])
            decision = deferred(policy, now=now, deadline=deadline, retry_after=grant.retry_after)
            new_state["deferredPolls"] = int(state.get("deferredPolls", 0)) + 1
        new_state.setdefault("polls", 0)
        # What the provider said, in the state itself, so each poll in the console's history explains itself.
        new_state["observation"] = _trace_summary(observation)
        if decision.next == "wait" and (not grant.granted or self._unchanged(state, observation)):
            if unrecorded:
                new_state["unrecordedPolls"] = unrecorded
            new_state["decision"] = decision.to_state()
            return PollResult(new_state, observation, decision, None, deferred=not grant.granted)
        asked = observation if grant.granted else None
        if decision.next == "wait":
            written = self.store.record(
                key, window, observation, now=now, polls=unrecorded, live=self.record_every_poll
            )
        else:
            reason = _closing_reason(decision, observation, new_state["polls"])
            written = self.store.record_and_close(
                key, window, asked, decision.status, reason, now=now, polls=unrecorded, live=self.record_every_poll
            )
        new_state.pop("unrecordedPolls", None)
        if not self.record_every_poll and observation.status in STATUS_WRITERS:
            new_state["recordedStatus"] = observation.status.value
        if written.outcome == "superseded":
            decision = Decision("done", observation.status)
            reason = SUPERSEDED_REASON if written.item else "no item for this refund (never claimed, or deleted)"
            new_state["decision"] = {**decision.to_state(), "reason": reason}
            return PollResult(new_state, observation, decision, None, superseded=True)
        outcome = None
        if decision.next != "wait" or written.outcome == "closed":
            outcome = public_view(written.item)
            stored = Status(outcome.get("status", decision.status.value))
            if written.outcome == "closed" or written.conflict:  # the stored outcome is what this window ended with
                decision = Decision("fail" if stored is Status.ERROR else "done", stored)
            self.publish_pending(key, written.item)
        new_state["decision"] = decision.to_state()
        return PollResult(new_state, observation, decision, outcome, final_conflict=written.conflict)

    def _turn(self, adapter: Provider, inquiry: Mapping[str, Any]) -> Grant:
        if self.rate_budget is None:
            return Grant(True)
        return self.rate_budget.acquire(inquiry["provider"], inquiry["merchant"], _profile_rate(adapter))

    def _unchanged(self, state: Mapping[str, Any], observation: Observation) -> bool:
        """RecordEveryPoll false: whether this poll may go unrecorded (not the window's first recorded poll, and the
        status it would store is the one stored, or none)."""
        if self.record_every_poll or "recordedStatus" not in state:
            return False
        return observation.status not in STATUS_WRITERS or observation.status.value == state["recordedStatus"]

    def publish_pending(self, key: str, item: Mapping[str, Any]) -> int:
        """Publish the item's pending events (outbox), clearing each flag after its event was accepted.

        Returns how many were published; raises :class:`ResultEventPendingError` when any was not.
        """
        published, failures = 0, []
        for conflict, pending, ident, detail_type in (
            (False, EVENT_PENDING, EVENT_ID, FINISHED_DETAIL_TYPE),
            (True, CONFLICT_EVENT_PENDING, CONFLICT_EVENT_ID, CONFLICT_DETAIL_TYPE),
        ):
            if not item.get(pending):
                continue
            event_id = str(item[ident])
            try:
                self.events.publish(event_detail(item, event_id), detail_type=detail_type)
            except Exception as exc:  # any failure (refused entry, timeout) leaves it pending
                failures.append(f"{detail_type} {event_id}: {type(exc).__name__}: {exc}")
                continue
            self.store.clear_event(key, event_id, conflict=conflict)
            published += 1
        if failures:
            raise ResultEventPendingError("result event not published, kept pending: " + "; ".join(failures))
        return published

    def sweep_outbox(self, *, limit: int = 100) -> SweepResult:
        """Publish the events left pending longer than ``OUTBOX_GRACE_SECONDS`` that nothing touched again.

        The grace leaves each event to its closer and the closer's retries first. Each item is re-read
        (the index is eventually consistent) and goes through the same publish path as a touch of it.
        """
        keys = self.store.pending_keys(pending_before=self.clock() - OUTBOX_GRACE_SECONDS, limit=limit)
        published = failed = 0
        for key in keys:
            item = self.store.get(key)
            if not has_pending_event(item):
                self.store.forget_pending(key)
                continue
            assert item is not None
            try:
                published += self.publish_pending(key, item)
            except ResultEventPendingError:
                failed += 1  # still pending and still in the index: the next sweep tries again
        return SweepResult(len(keys), published, failed)


def _profile_rate(adapter: Provider) -> float | None:
    """The merchant profile's own rate budget (profile ``rateLimitPerSecond``), if the adapter has a profile."""
    profile = getattr(adapter, "profile", None)
    return getattr(profile, "rate_limit_per_second", None)


def _not_asked(provider: str, grant: Grant) -> Observation:
    return Observation(
        provider=provider,
        status=Status.UNKNOWN,
        reason=f"not asked: over the provider rate budget (a turn in about {grant.retry_after:.1f} s)",
    )


def _less(budget_seconds: float | None, spent: float) -> float | None:
    return None if budget_seconds is None else budget_seconds - spent


def _trace_summary(observation: Observation) -> dict[str, Any]:
    summary = {
        "status": observation.status.value,
        "verified": observation.verified,
        "resultCode": observation.result.code,
        "reason": observation.reason,
    }
    return {name: value for name, value in summary.items() if value is not None}


def _closing_reason(decision: Decision, observation: Observation, polls: int) -> str | None:
    if decision.status is Status.UNRESOLVED:
        return f"polling window closed after {polls} polls without a final status ({observation.reason})"
    if decision.status is Status.NOT_FOUND:
        return f"provider did not find the refund in {polls} polls ({observation.result.code})"
    return observation.reason
