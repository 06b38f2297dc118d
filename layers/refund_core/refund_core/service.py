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

from refund_core.domain.inquiry import InquiryMessage, execution_name
from refund_core.domain.outcome import Observation, Status
from refund_core.domain.polling import Decision, Policy, decide
from refund_core.providers import Provider, RefundQuery
from refund_core.store import DynamoDbRefundStore


class RejectedMessageError(ValueError):
    """A message that can never succeed as sent (it goes to the DLQ with this reason)."""


class Adapters(Protocol):
    def adapter(self, provider: str, merchant: str) -> Provider:
        """The provider adapter for a merchant profile; raises RejectedMessageError when there is none."""
        ...


class Events(Protocol):
    def publish(self, outcome: Mapping[str, Any]) -> None: ...


class Executions(Protocol):
    def start(self, name: str, state: Mapping[str, Any]) -> str: ...


@dataclass(frozen=True, slots=True)
class PollResult:
    state: dict[str, Any]
    observation: Observation
    decision: Decision
    outcome: dict[str, Any] | None  # the closed item when this poll ended the window


@dataclass(frozen=True, slots=True)
class StartResult:
    action: str  # "skipped" | "recorded" | "polling"
    reason: str
    poll: PollResult | None = None
    execution_arn: str | None = None


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
        key = message.key
        if not message.refund_request_id and message.refund_id:
            key = self.store.key_for_refund_id(message.provider, message.merchant, message.refund_id) or key
        policy = self.policies[message.provider].overridden(message.interval_seconds, message.max_duration_seconds)
        if self.max_window_seconds is not None:
            policy = policy.capped(self.max_window_seconds)
        now = self.clock()
        deadline = now + policy.max_duration_seconds
        claim = self.store.claim(message, key, message_id=message_id, now=now, window_end=deadline)
        if not claim.proceed:
            return StartResult("skipped", claim.reason)
        state: dict[str, Any] = {
            "inquiry": message.as_state(key),
            "policy": policy.to_state(),
            "deadline": round(deadline, 3),
            "generation": claim.generation,
            "polls": 0,
            "notFoundPolls": 0,
        }
        poll = self.poll_once(adapter, state, budget_seconds=budget_seconds)
        if poll.decision.next != "wait":
            return StartResult("recorded", claim.reason, poll)
        name = execution_name(message.provider, message.merchant, message.primary_id, claim.generation)
        arn = executions.start(name, poll.state)
        self.store.set_execution(key, claim.generation, arn)
        return StartResult("polling", claim.reason, poll, arn)

    def poll(self, state: Mapping[str, Any], *, budget_seconds: float | None = None) -> PollResult:
        """One poll of a running loop (the Inquire function's whole job)."""
        inquiry = state["inquiry"]
        adapter = self.adapters.adapter(inquiry["provider"], inquiry["merchant"])
        return self.poll_once(adapter, state, budget_seconds=budget_seconds)

    def poll_once(
        self, adapter: Provider, state: Mapping[str, Any], *, budget_seconds: float | None = None
    ) -> PollResult:
        """``budget_seconds``: the provider call's total time budget (from the invocation's remaining time)."""
        inquiry = state["inquiry"]
        key, generation = inquiry["key"], int(state["generation"])
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
        new_state["decision"] = decision.to_state()
        # What the provider said, in the state itself, so each poll in the console's history explains itself.
        new_state["observation"] = _trace_summary(observation)
        outcome = None
        if decision.next == "wait":
            self.store.record(key, observation, now=now)
        else:
            reason = _closing_reason(decision, observation, new_state["polls"])
            outcome = self.store.record_and_close(key, generation, observation, decision.status, reason, now=now)
            self.events.publish(outcome)
        return PollResult(new_state, observation, decision, outcome)


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
