"""The inquiry workflow both handlers share: claim, poll once, record, decide, close.

Ports are small protocols so the handlers wire AWS adapters and tests may wire others.
The starter makes the first inquiry itself: most refunds are long final when a merchant asks,
and recording those at once costs no state transitions.
"""

from __future__ import annotations

import contextlib
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
from refund_core.domain.polling import Decision, Policy, decide, deferred, rate_limited
from refund_core.domain.rate import Grant
from refund_core.domain.tail import NextAttempt, TailPolicy, plan_next, schedule_name
from refund_core.providers import Provider, ReceivedNotification, RefundQuery
from refund_core.store import (
    FINAL_BY_NOTIFICATION,
    NOTIFICATION_SOURCE,
    OUTBOX_GRACE_SECONDS,
    STATUS_WRITERS,
    SUPERSEDED_REASON,
    ClaimContendedError,
    DynamoDbRefundStore,
    Window,
    epoch_time,
    event_detail,
    iso_time,
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


class TailScheduler(Protocol):
    """The engine that waits between two tail attempts (EventBridge Scheduler on AWS, docs/long-tail.md)."""

    def schedule(self, name: str, at: float, message: Mapping[str, Any]) -> None:
        """Put ``message`` on the inquiry queue at epoch ``at``, once; an existing ``name`` is left as it is."""
        ...

    def cancel(self, name: str) -> None:
        """Delete a pending schedule; one already gone is no error (an optimisation only)."""
        ...


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
# Optional (stack parameter TailStillProcessingEvent): the fast window handed the refund over to the long tail.
STILL_PROCESSING_DETAIL_TYPE = "Refund Still Processing"


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
    tail_next: NextAttempt | None = None  # the window went on to this pending tail attempt
    gave_up: bool = False  # the tail reached its maximum age: closed UNRESOLVED with gaveUp

    @property
    def tail_gave_up(self) -> int:
        """The ``TailGaveUp`` metric's value for this poll."""
        return 1 if self.gave_up else 0

    deferred: bool = False  # over the provider rate budget: the provider was not asked, the poll waits longer
    # RecordEveryPoll false, the starter's first poll: not written yet; start() writes it with the loop's ARN.
    record_at: float | None = None

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
        tail_policies: Mapping[str, TailPolicy] | None = None,
        tail_scheduler: TailScheduler | None = None,
        still_processing_event: bool = False,
        rate_budget: RateBudget | None = None,
        record_every_poll: bool = True,
    ) -> None:
        self.still_processing_event = still_processing_event
        self.max_window_seconds = max_window_seconds
        # No scheduler (or no policy for a provider): no tail, a window closes UNRESOLVED as before.
        self.tail_policies = dict(tail_policies or {}) if tail_scheduler is not None else {}
        self.tail_scheduler = tail_scheduler
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
        if message.is_tail_attempt:
            return self.tail_attempt(message, message_id=message_id, budget_seconds=budget_seconds)
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
        if claim.superseded_tail:
            self._cancel_tail(claim.superseded_tail)
        state: dict[str, Any] = {
            "inquiry": message.as_state(key),
            "policy": policy.to_state(),
            "deadline": round(deadline, 3),
            "generation": claim.generation,
            "windowId": claim.window_id,
            "polls": 0,
            "notFoundPolls": 0,
        }
        tail = self.tail_policies.get(message.provider, TailPolicy(max_age_seconds=0)).overridden(
            message.tail_schedule_seconds, message.tail_max_age_seconds
        )
        if tail.enabled:
            state["tail"] = {**tail.to_state(since=now), "attempt": 0}
        poll = self.poll_once(adapter, state, budget_seconds=budget_seconds, record_later=not self.record_every_poll)
        if poll.superseded:
            return StartResult("skipped", SUPERSEDED_REASON, poll, republished=republished)
        if poll.tail_next is not None:
            return StartResult("tail", claim.reason, poll, republished=republished)
        if poll.decision.next != "wait":
            return StartResult("recorded", claim.reason, poll, republished=republished)
        assert claim.window_id is not None
        name = execution_name(RefundRef.from_item_key(key), claim.generation, claim.window_id)
        arn = executions.start(name, poll.state)
        if poll.record_at is not None:  # the first answer and the ARN in one write (RecordEveryPoll false)
            written = self.store.record_first(key, claim.window, poll.observation, arn, now=poll.record_at)
            if written.outcome == "written":
                return StartResult("polling", claim.reason, poll, arn, republished)
            if written.outcome == "superseded":
                return StartResult("skipped", SUPERSEDED_REASON, poll, arn, republished)
            # The loop wrote first (its window closed, or a later poll was recorded): the ARN and this poll's
            # count only, so the item names its execution and counts every poll.
            recorded = self.store.set_execution(key, claim.window, arn, polls=1)
        else:
            recorded = self.store.set_execution(key, claim.window, arn)
        if not recorded:
            # A newer window took the refund meanwhile; the loop just started ends at its first poll.
            return StartResult("skipped", SUPERSEDED_REASON, poll, arn, republished)
        return StartResult("polling", claim.reason, poll, arn, republished)

    def poll(self, state: Mapping[str, Any], *, budget_seconds: float | None = None) -> PollResult:
        """One poll of a running loop (the Inquire function's whole job).

        The item is read first: a window already closed (by a notification, or by this poll's own earlier
        attempt) or taken by a newer one ends the loop here, without calling the provider.
        """
        started = time.monotonic()
        ended = self.ended_without_polling(state)
        if ended is not None:
            return ended
        inquiry = state["inquiry"]
        adapter = self.adapters.adapter(inquiry["provider"], inquiry["merchant"])
        # The provider's budget was set before the read above (and the profile's load): what they took is spent.
        return self.poll_once(adapter, state, budget_seconds=_less(budget_seconds, time.monotonic() - started))

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
            new_state["decision"] = {**decision.to_state(), "reason": SUPERSEDED_REASON, "superseded": True}
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
        forms = {ref.tag for ref in message.refs if ref.form not in resolution.unlinked}
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
        self,
        adapter: Provider,
        state: Mapping[str, Any],
        *,
        budget_seconds: float | None = None,
        record_later: bool = False,
    ) -> PollResult:
        """``budget_seconds``: the provider call's total time budget (from the invocation's remaining time).
        ``record_later``: a poll that would be written and goes on waiting is not written here; the result's
        ``record_at`` says so, and the caller writes it (the starter, with the ARN of the loop it starts).

        Every write is conditional on the state's window: when a newer window owns the refund nothing is written
        and the decision is ``done`` (this loop ends). A window closed already (a retried invocation) publishes
        its result event if still pending. Raises :class:`ResultEventPendingError` when the event of the window
        this poll closed could not be published (the item keeps it pending; a retry publishes it).
        """
        inquiry = state["inquiry"]
        key, window = inquiry["key"], Window.from_state(state)
        started = time.monotonic()
        grant = self._turn(adapter, inquiry)
        new_state = dict(state)
        unrecorded = int(state.get("unrecordedPolls", 0))
        if grant.granted:
            query = RefundQuery(refund_id=inquiry.get("refundId"), refund_request_id=inquiry.get("refundRequestId"))
            # The turn (its DynamoDB calls and its wait) is spent from the provider's budget, so the record's own
            # writes still fit before the invocation ends (aws/wiring.py, the margins).
            observation = adapter.inquire(query, timeout_seconds=_less(budget_seconds, time.monotonic() - started))
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
        if record_later and decision.next == "wait":
            new_state.pop("unrecordedPolls", None)
            if observation.status in STATUS_WRITERS:
                new_state["recordedStatus"] = observation.status.value
            new_state["decision"] = decision.to_state()
            return PollResult(new_state, observation, decision, None, record_at=now)
        asked = observation if grant.granted else None
        tail_next, gave_up, tail_fields = None, False, None
        if "tail" in state and decision.next != "wait":
            tail_next, gave_up, tail_fields = self._tail_step(state, observation, decision, now)
        live = self.record_every_poll
        if decision.next == "wait":
            written = self.store.record(key, window, observation, now=now, polls=unrecorded, live=live)
        elif tail_next is not None:
            assert tail_fields is not None
            written = self._enter_tail(key, window, state, observation, tail_next, tail_fields, now, unrecorded)
            decision = Decision("done", observation.status)
        else:
            reason = _closing_reason(decision, observation, new_state["polls"])
            if gave_up:
                reason = _gave_up_reason(state, observation)
            written = self.store.record_and_close(
                key, window, asked, decision.status, reason, now=now, tail=tail_fields, polls=unrecorded, live=live
            )
        new_state.pop("unrecordedPolls", None)
        if not self.record_every_poll and observation.status in STATUS_WRITERS:
            new_state["recordedStatus"] = observation.status.value
        if written.outcome == "superseded":
            decision = Decision("done", observation.status)
            reason = SUPERSEDED_REASON if written.item else "no item for this refund (never claimed, or deleted)"
            # superseded (and conflict below) appear only when they hold: the state machine tests them with IsPresent.
            new_state["decision"] = {**decision.to_state(), "reason": reason, "superseded": True}
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
        new_state["decision"] = decision.to_state() | ({"conflict": True} if written.conflict else {})
        if tail_next is not None and written.outcome == "written":
            when = iso_time(tail_next.at)
            new_state["decision"]["reason"] = f"long tail: attempt {tail_next.attempt} planned at {when}"
            new_state["decision"]["tail"] = True  # the execution ends in "Handed to long tail"
            if tail_next.attempt == 1 and self.still_processing_event:
                self._announce_still_processing(written.item)
            return PollResult(new_state, observation, decision, None, tail_next=tail_next)
        gave_up = gave_up and written.outcome == "written" and outcome is not None and not outcome.get("final")
        return PollResult(new_state, observation, decision, outcome, final_conflict=written.conflict, gave_up=gave_up)

    # -- the long tail (docs/long-tail.md) ----------------------------------------------------------------------

    def tail_attempt(
        self, message: InquiryMessage, *, message_id: str, budget_seconds: float | None = None
    ) -> StartResult:
        """One tail attempt, sent by its schedule: one inquiry, only while this attempt is still the pending one.

        The conditional take (window id, attempt number, not final) is the source of truth: a late, duplicate or
        superseded firing (a newer message, ``force``, a final answer from any channel) does nothing and never
        asks the provider.
        """
        assert message.tail_window_id is not None and message.tail_attempt is not None
        now = self.clock()
        key = self.store.resolve(message, now=now).key
        window_id, attempt = message.tail_window_id, message.tail_attempt
        taken, item = self.store.take_tail_attempt(key, window_id, attempt, message_id=message_id, now=now)
        if not taken:
            if item.get("tailMessageId") == message_id and item.get("windowId") == window_id:
                # The redelivery of the message that made this attempt and closed the window, whose process died
                # or failed before its event went out: publish it now rather than at the next outbox sweep.
                self.publish_pending(key, item)
            return StartResult("skipped", _stale_attempt_reason(item, window_id, attempt))
        window = Window(int(item.get("generation", 0)), window_id)
        try:
            adapter = self.adapters.adapter(message.provider, message.merchant)
        except RejectedMessageError as exc:
            # The merchant profile went away meanwhile: the tail stops here, with a clear ERROR and its event.
            reason = f"tail attempt {attempt}: {exc}"
            written = self.store.close(key, window, Status.ERROR, reason, now=now, tail={})
            if written.outcome == "written":
                self.publish_pending(key, written.item)
            return StartResult("recorded", reason)
        plan = dict(item.get("tailPlan") or {})
        planned = epoch_time(item.get("nextPollAt")) or now
        policy = self.policies[message.provider]
        state: dict[str, Any] = {
            "inquiry": message.as_state(key),
            "policy": policy.to_state(),
            "deadline": round(now, 3),  # one inquiry: the decision closes at once unless the refund is final
            "generation": window.generation,
            "windowId": window_id,
            "polls": int(item.get("polls", 0)),
            "notFoundPolls": 0,
            "tail": {**plan, "attempt": attempt, "plannedAt": planned},
        }
        poll = self.poll_once(adapter, state, budget_seconds=budget_seconds, record_later=not self.record_every_poll)
        if poll.superseded:
            return StartResult("skipped", SUPERSEDED_REASON, poll)
        return StartResult("tail" if poll.tail_next else "recorded", f"tail attempt {attempt}", poll)

    def _tail_step(
        self, state: Mapping[str, Any], observation: Observation, decision: Decision, now: float
    ) -> tuple[NextAttempt | None, bool, dict[str, Any] | None]:
        """After the window's last inquiry (fast window or tail attempt): the next attempt, or whether the tail
        gave up, and the tail's fields for the write."""
        tail = state["tail"]
        attempt = int(tail.get("attempt", 0))
        fields: dict[str, Any] = {}
        if attempt:
            fields["history"] = {
                "attempt": attempt,
                "at": iso_time(now),
                "plannedAt": iso_time(float(tail.get("plannedAt", now))),
                "status": observation.status.value,
                "resultCode": observation.result.code,
            }
        if decision.status is not Status.UNRESOLVED:
            return None, False, fields  # final, not found or refused: the tail ends with this window
        policy = TailPolicy.from_state(tail)
        previous = float(tail.get("plannedAt", now)) if attempt else now
        next_attempt = plan_next(policy, float(tail["since"]), attempt + 1, previous)
        if next_attempt is None:
            return None, attempt > 0, {**fields, "gaveUp": attempt > 0}
        return next_attempt, False, fields

    def _enter_tail(
        self,
        key: str,
        window: Window,
        state: Mapping[str, Any],
        observation: Observation,
        next_attempt: NextAttempt,
        fields: dict[str, Any],
        now: float,
        polls: int = 1,
    ) -> Any:
        """Schedule the next attempt, then record it on the item. The schedule comes first: its name is fixed by
        window and attempt (a retry makes no second one), and a schedule whose write then fails finds the item
        moved on when it fires (the write, not the schedule, is what makes an attempt pending)."""
        assert self.tail_scheduler is not None and window.window_id is not None
        name = schedule_name(key, window.window_id, next_attempt.attempt)
        inquiry = state["inquiry"]
        message = {
            k: inquiry[k]
            for k in ("provider", "merchant", "refundId", "refundRequestId", "correlationId")
            if inquiry.get(k)
        }
        message["tailAttempt"] = {"windowId": window.window_id, "attempt": next_attempt.attempt}
        self.tail_scheduler.schedule(name, next_attempt.at, message)
        tail = state["tail"]
        plan = {k: tail[k] for k in ("scheduleSeconds", "maxAgeSeconds", "since")}
        pending = {
            **fields,
            "tailAttempt": next_attempt.attempt,
            "nextPollAt": iso_time(next_attempt.at),
            "tailPlan": plan,
            "tailScheduleName": name,
        }
        written = self.store.enter_tail(
            key, window, observation, pending, now=now, polls=polls, live=self.record_every_poll
        )
        if written.outcome != "written":
            self._cancel_tail(name)
        return written

    def _announce_still_processing(self, item: Mapping[str, Any]) -> None:
        """Best effort, once per window (its id is the window's): the window stays open, so no outbox flag holds
        it, and a failed publish is not retried (docs/long-tail.md, "Events")."""
        with contextlib.suppress(Exception):
            detail = event_detail(item, f"{item.get('windowId')}-still-processing")
            self.events.publish(detail, detail_type=STILL_PROCESSING_DETAIL_TYPE)

    def _cancel_tail(self, name: str) -> None:
        if self.tail_scheduler is None:
            return
        # An optimisation only: a firing that was not cancelled finds a newer window and does nothing.
        with contextlib.suppress(Exception):
            self.tail_scheduler.cancel(name)

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


def _gave_up_reason(state: Mapping[str, Any], observation: Observation) -> str:
    tail = state["tail"]
    hours = int(tail["maxAgeSeconds"]) / 3600
    return (
        f"gave up: not final after {tail.get('attempt', 0)} tail attempts over {hours:g} h, the maximum age "
        f"({observation.reason}); ask the provider or the merchant portal"
    )


def _stale_attempt_reason(item: Mapping[str, Any], window_id: str, attempt: int) -> str:
    if not item:
        return f"tail attempt {attempt}: no item for this refund"
    if item.get("final"):
        return f"tail attempt {attempt}: refund already final ({item.get('status')})"
    if item.get("windowId") != window_id:
        return f"tail attempt {attempt}: superseded by a newer window"
    return f"tail attempt {attempt}: no longer pending (pending attempt: {item.get('tailAttempt')})"


def _closing_reason(decision: Decision, observation: Observation, polls: int) -> str | None:
    if decision.status is Status.UNRESOLVED:
        return f"polling window closed after {polls} polls without a final status ({observation.reason})"
    if decision.status is Status.NOT_FOUND:
        return f"provider did not find the refund in {polls} polls ({observation.result.code})"
    return observation.reason
