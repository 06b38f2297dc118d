"""The inquiry workflow both handlers share: claim, poll once, record, decide, close.

Ports are small protocols so the handlers wire AWS adapters and tests may wire others.
The starter makes the first inquiry itself: most refunds are long final when a merchant asks,
and recording those at once costs no state transitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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
from refund_core.domain.polling import Decision, Policy, decide
from refund_core.providers import Provider, ReceivedNotification, RefundQuery
from refund_core.store import (
    FINAL_BY_NOTIFICATION,
    NOTIFICATION_SOURCE,
    OUTBOX_GRACE_SECONDS,
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
    provider_called: bool = True  # False: the window was already closed (a notification), the loop just ends

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
class NotifyResult:
    """A verified notification, recorded: ``outcome`` as :meth:`DynamoDbRefundStore.record_notification` says, or
    ``ignored`` (not final: nothing written); ``acknowledgement`` is the provider's reply body."""

    outcome: str
    observation: Observation
    acknowledgement: bytes
    key: str | None = None
    final_conflict: dict[str, Any] | None = None
    event_pending: bool = False  # the result event stays in the outbox (publish failed): the sweep publishes it


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
    ) -> None:
        self.max_window_seconds = max_window_seconds
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
        """One poll of a running loop (the Inquire function's whole job).

        The item is read first: a window already closed (by a notification, or by this poll's own earlier
        attempt) or taken by a newer one ends the loop here, without calling the provider.
        """
        ended = self.ended_without_polling(state)
        if ended is not None:
            return ended
        inquiry = state["inquiry"]
        adapter = self.adapters.adapter(inquiry["provider"], inquiry["merchant"])
        return self.poll_once(adapter, state, budget_seconds=budget_seconds)

    def ended_without_polling(self, state: Mapping[str, Any]) -> PollResult | None:
        """The loop's last step when its window no longer polls (docs/internals.md, "Notifications"), else None."""
        key, window = state["inquiry"]["key"], Window.from_state(state)
        item = self.store.get(key)
        if item is None or window.holds(item):
            # No item: a hand-made event (`sam local invoke` of a sample) still asks the provider; its write says
            # the window is unknown and the loop ends, as before notifications existed.
            return None
        stored = Status(item.get("status", Status.UNKNOWN.value))
        observation = Observation(provider=state["inquiry"]["provider"], status=stored, reason="provider not called")
        new_state = {**state, "observation": {"status": stored.value, "reason": "provider not called"}}
        if not window.owns(item):
            decision = Decision("done", stored)
            new_state["decision"] = {**decision.to_state(), "reason": SUPERSEDED_REASON}
            return PollResult(new_state, observation, decision, None, superseded=True, provider_called=False)
        by_notification = closed_by_notification(item)
        decision = Decision("fail" if stored is Status.ERROR else "done", stored)
        reason = FINAL_BY_NOTIFICATION if by_notification else "window already closed"
        new_state["decision"] = {**decision.to_state(), "reason": reason}
        # The notification's handler publishes what it closed (the sweep, if it could not): a second publisher here
        # would announce the window twice. A window this loop closed itself (a retried attempt) publishes now.
        if not left_to_the_notification(item, now=self.clock()):
            self.publish_pending(key, item)
        return PollResult(new_state, observation, decision, public_view(item), provider_called=False)

    def notify(
        self,
        provider: str,
        merchant: str,
        notification: ReceivedNotification,
        *,
        confirm: bool = False,
        budget_seconds: float | None = None,
    ) -> NotifyResult:
        """Verify and record one pushed notification (the Notify function's whole job).

        ``confirm`` (the stack's ConfirmNotifications): one inquiry is made at once and its answer is what is
        stored; a notification it contradicts is recorded as a final-status conflict, one it does not confirm
        (no trusted final answer) closes nothing. ``budget_seconds`` bounds that inquiry.

        Raises RejectedMessageError when there is no such merchant profile, NotificationRejectedError when the
        notification proves nothing (nothing is written then), and any AWS error when the write failed (the provider
        must not be acknowledged: it retries).
        """
        adapter = self.adapters.adapter(provider, merchant)
        now = self.clock()
        observation = adapter.read_notification(notification, now=now)
        ack = adapter.acknowledgement()
        if not observation.final:  # a provider's "still processing" closes nothing; acknowledged so it stops
            return NotifyResult("ignored", observation, ack)
        if confirm:
            query = RefundQuery(refund_id=observation.refund_id, refund_request_id=observation.refund_request_id)
            answer = adapter.inquire(query, timeout_seconds=budget_seconds)
            if not answer.final:  # the poll remains the safety net; the provider need not send it again
                return NotifyResult("unconfirmed", answer, ack)
            if answer.status is not observation.status:  # the answer is stored, the notification is the conflict
                first = self._record_notified(provider, merchant, answer, now)
                second = self._record_notified(provider, merchant, observation, now)
                return replace(second, observation=answer, outcome=first.outcome, acknowledgement=ack)
            observation = answer
        return replace(self._record_notified(provider, merchant, observation, now), acknowledgement=ack)

    def _record_notified(self, provider: str, merchant: str, observation: Observation, now: float) -> NotifyResult:
        """Store a verified final notification (or its confirming answer) and publish the event it closed."""
        message = InquiryMessage(
            provider=provider,
            merchant=merchant,
            refund_id=observation.refund_id,
            refund_request_id=observation.refund_request_id,
        )
        resolution = self.store.resolve(message, now=now)
        forms = {ref.form for ref in message.refs} - set(resolution.unlinked)
        for _ in range(3):
            written = self.store.record_notification(resolution.key, observation, now=now, forms=forms)
            if written.outcome != "blocked":
                break
            self.publish_pending(resolution.key, written.item)  # an earlier window's event goes out first
        else:
            raise ClaimContendedError(f"could not record the notification for {resolution.key}: events kept appearing")
        pending = False
        if written.outcome in ("closed", "written", "conflict"):
            try:
                self.publish_pending(resolution.key, written.item)
            except ResultEventPendingError:
                pending = True  # durably stored with its event in the outbox: acknowledge, the sweep publishes it
        return NotifyResult(written.outcome, observation, b"", resolution.key, written.conflict, pending)

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
        query = RefundQuery(refund_id=inquiry.get("refundId"), refund_request_id=inquiry.get("refundRequestId"))
        observation = adapter.inquire(query, timeout_seconds=budget_seconds)
        now = self.clock()
        not_found = int(state.get("notFoundPolls", 0)) + 1 if observation.status is Status.NOT_FOUND else 0
        decision = decide(
            observation,
            Policy.from_state(state["policy"]),
            now=now,
            deadline=float(state["deadline"]),
            not_found_polls=not_found,
        )
        new_state = {**state, "polls": int(state.get("polls", 0)) + 1, "notFoundPolls": not_found}
        # What the provider said, in the state itself, so each poll in the console's history explains itself.
        new_state["observation"] = _trace_summary(observation)
        if decision.next == "wait":
            written = self.store.record(key, window, observation, now=now)
        else:
            reason = _closing_reason(decision, observation, new_state["polls"])
            written = self.store.record_and_close(key, window, observation, decision.status, reason, now=now)
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
            # A poll past its read whose window a notification closed meanwhile: the handler announces it.
            if written.outcome != "closed" or not left_to_the_notification(written.item, now=now):
                self.publish_pending(key, written.item)
        new_state["decision"] = decision.to_state()
        return PollResult(new_state, observation, decision, outcome, final_conflict=written.conflict)

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

    def sweep_outbox(self, *, page: int = 100, max_items: int = 2000, seconds: float | None = None) -> SweepResult:
        """Publish the events left pending longer than ``OUTBOX_GRACE_SECONDS`` that nothing touched again.

        The grace leaves each event to its closer and the closer's retries first. Each item is re-read
        (the index is eventually consistent) and goes through the same publish path as a touch of it. The sweep
        goes on past items whose publish fails again (page after page, up to ``max_items`` or ``seconds``), so a
        few events EventBridge keeps refusing cannot hold back the ones behind them.
        """
        stop_at = None if seconds is None else time.monotonic() + seconds
        cursor: dict[str, Any] | None = None
        looked = published = failed = 0
        while looked < max_items and (stop_at is None or time.monotonic() < stop_at):
            keys, cursor = self.store.pending_keys(
                pending_before=self.clock() - OUTBOX_GRACE_SECONDS, limit=min(page, max_items - looked), after=cursor
            )
            looked += len(keys)
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
            if cursor is None:
                break
        return SweepResult(looked, published, failed)


def closed_by_notification(item: Mapping[str, Any]) -> bool:
    return item.get("source") == NOTIFICATION_SOURCE and item.get("reason") == FINAL_BY_NOTIFICATION


def left_to_the_notification(item: Mapping[str, Any], *, now: float) -> bool:
    """Whether a loop must leave the window's event to the notification that closed it: its handler publishes
    right after its write, and the outbox sweep after the grace if it could not (one announcement per window)."""
    return closed_by_notification(item) and not may_publish(item, message_id=None, now=now)


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
