"""Build the inquiry service from the function's environment (the template sets these variables), and the time
budget of the work an invocation does, from the time Lambda says it has left."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import boto3

from refund_core.aws.events import EventBridgeEvents
from refund_core.aws.profiles import SecretsManagerAdapters
from refund_core.aws.rate_budget import DynamoDbRateBudget
from refund_core.aws.scheduler import EventBridgeTailScheduler
from refund_core.domain import tail
from refund_core.domain.polling import EXPRESS_MAX_WINDOW_SECONDS, policies_from_json
from refund_core.domain.rate import DEFAULT_RATE_PER_SECOND, RateBudgetError, check_rate
from refund_core.service import InquiryService
from refund_core.store import DynamoDbRefundStore

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

# Time budgets (docs/internals.md, "Timeouts, retries and concurrency"). A provider call gets what the invocation
# has left minus these margins, so the record's own AWS calls and the handler's return still fit before Lambda's
# timeout:
#
#   remaining ─┬─ SETUP: merchant profile (GetSecretValue when not cached), refundId lookup (Query), claim (UpdateItem)
#              ├─ provider call: the budget, capped by PROVIDER_TOTAL_TIMEOUT and the adapter's connect + read
#              ├─ WRITE: observation write or close (UpdateItem), then PutEvents, or StartExecution + ARN write
#              └─ RETURN: metrics flush, batch response, logs
#
# Each margin covers up to three AWS calls in the function's region (tens of milliseconds each) with one SDK retry
# and its back-off each. Provider budget = remaining - 3 s: StartInquiry (30 s) 27 s, so PROVIDER_TOTAL_TIMEOUT
# decides; Inquire (8 s) 5 s. A call that overruns its margin anyway (an AWS call that hangs) is StartInquiry's
# backstop's business (the record is left for redelivery at RETURN_MARGIN before the end) or, in Inquire, the
# state machine's retry after Lambda's timeout.
SETUP_MARGIN_SECONDS = 1.0
WRITE_MARGIN_SECONDS = 1.5
RETURN_MARGIN_SECONDS = 0.5
# Less than this cannot carry a TLS handshake and an answer from a provider in another region: such a record is
# not started (StartInquiry reports it as a batch item failure, so SQS redelivers it; Inquire fails the attempt,
# which the state machine retries).
MIN_PROVIDER_BUDGET_SECONDS = 1.0


class OutOfTimeError(RuntimeError):
    """Too little of the invocation is left to start a record's work and still finish it in time."""


class RemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class InvocationDeadline:
    """The instant Lambda stops the invocation, read once from the context, and budgets derived from it."""

    def __init__(
        self,
        context: RemainingTime,
        *,
        provider_cap_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._end = clock() + context.get_remaining_time_in_millis() / 1000
        self._cap = provider_cap_seconds

    def seconds_left(self) -> float:
        return self._end - self._clock()

    def seconds_for_work(self) -> float:
        """How long the records may run: everything but the handler's own return."""
        return self.seconds_left() - RETURN_MARGIN_SECONDS

    def provider_budget(self) -> float:
        """The total budget of a provider call that starts now (after the record's set-up).

        Raises OutOfTimeError when less than MIN_PROVIDER_BUDGET_SECONDS would be left.
        """
        budget = self.seconds_left() - SETUP_MARGIN_SECONDS - WRITE_MARGIN_SECONDS - RETURN_MARGIN_SECONDS
        if budget < MIN_PROVIDER_BUDGET_SECONDS:
            raise OutOfTimeError(
                f"{self.seconds_left():.3f} s left of the invocation: too little to ask the provider "
                f"(at least {MIN_PROVIDER_BUDGET_SECONDS:g} s) and record the answer"
            )
        return budget if self._cap is None else min(budget, self._cap)


class LazyClient:
    """A boto3 client of the default session made at its first use, for a client that most invocations never
    call: creating one loads its service model and endpoint rules (10-15 ms of a cold start each, bench/README.md),
    which a cold start should not pay for a call it may never make. Safe to first use from several threads."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:  # boto3's default session is not thread-safe while it creates a client
                if self._client is None:
                    self._client = boto3.client(self._service)  # type: ignore[call-overload]  # runtime name
                client = self._client
        return getattr(client, name)


def service_from_environment() -> InquiryService:
    """One service per container: clients, profile cache and HTTP pool are reused across invocations."""
    env = os.environ
    dynamodb = boto3.client("dynamodb")
    return InquiryService(
        store=DynamoDbRefundStore(dynamodb, env["RESULTS_TABLE"], int(env.get("ITEM_TTL_DAYS", "90"))),
        adapters=SecretsManagerAdapters(env["PROFILE_SECRET_PREFIX"], **provider_options(env)),
        # Only a poll that closes the window publishes: most first invocations never do.
        events=EventBridgeEvents(cast("EventBridgeClient", LazyClient("events")), env.get("EVENT_BUS_NAME", "default")),
        policies=policies_from_json(env["POLLING_POLICY"]),
        max_window_seconds=EXPRESS_MAX_WINDOW_SECONDS if env.get("WORKFLOW_TYPE") == "EXPRESS" else None,
        tail_policies=tail.policies_from_json(env.get("TAIL_POLICY")),
        tail_scheduler=tail_scheduler(env),
        still_processing_event=env.get("TAIL_STILL_PROCESSING_EVENT") == "true",
        rate_budget=rate_budget(env, dynamodb),
        record_every_poll=record_every_poll(env),
    )


def tail_scheduler(env: Mapping[str, str]) -> EventBridgeTailScheduler | None:
    """The long tail's scheduler when the template configures one (TAIL_SCHEDULE_GROUP, TAIL_TARGET_ARN,
    TAIL_ROLE_ARN); None (no tail) otherwise."""
    names = ("TAIL_SCHEDULE_GROUP", "TAIL_TARGET_ARN", "TAIL_ROLE_ARN")
    if not all(env.get(name) for name in names):
        return None
    group, target, role = (env[name] for name in names)
    return EventBridgeTailScheduler(lambda: boto3.client("scheduler"), group, target, role)


def rate_budget(env: Mapping[str, str], dynamodb: Any) -> DynamoDbRateBudget | None:
    """PROVIDER_RATE_LIMIT: inquiries per second per (provider, merchant) for the whole stack; 0 turns the budget
    off (no schedule, no extra DynamoDB call per poll). Unset: the default."""
    text = env.get("PROVIDER_RATE_LIMIT", "")
    try:
        value = float(text) if text else DEFAULT_RATE_PER_SECOND
    except ValueError:
        value = float("nan")
    if value == 0:
        return None
    try:
        rate = check_rate(value, "PROVIDER_RATE_LIMIT")
    except RateBudgetError as exc:
        raise ValueError(f"{exc} (or 0: off), got {text!r}") from None
    return DynamoDbRateBudget(dynamodb, env["RESULTS_TABLE"], rate)


def record_every_poll(env: Mapping[str, str]) -> bool:
    """RECORD_EVERY_POLL (the stack's RecordEveryPoll): "true" (default) or "false"."""
    text = env.get("RECORD_EVERY_POLL", "true")
    if text not in ("true", "false"):
        raise ValueError(f"RECORD_EVERY_POLL: must be true or false, got {text!r}")
    return text == "true"


def provider_options(env: Mapping[str, str]) -> dict[str, Any]:
    """The provider adapters' constructor options. Bounds the template does not set are left to the adapter's
    defaults (and are not passed at all, so an adapter without that option still works)."""
    options: dict[str, Any] = {
        "timeout": (_seconds(env, "PROVIDER_CONNECT_TIMEOUT", 3.0), _seconds(env, "PROVIDER_READ_TIMEOUT", 10.0))
    }
    if env.get("PROVIDER_MAX_BODY_BYTES"):
        options["max_body_bytes"] = _whole(env, "PROVIDER_MAX_BODY_BYTES")
    if env.get("PROVIDER_MAX_CLOCK_SKEW_SECONDS"):
        options["max_clock_skew_seconds"] = _seconds(env, "PROVIDER_MAX_CLOCK_SKEW_SECONDS", 0.0)
    return options


def provider_total_timeout(env: Mapping[str, str] = os.environ) -> float | None:
    """PROVIDER_TOTAL_TIMEOUT: the most one provider call may take in all (None: the invocation's time decides)."""
    return _seconds(env, "PROVIDER_TOTAL_TIMEOUT", 0.0) if env.get("PROVIDER_TOTAL_TIMEOUT") else None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: must be a positive number of seconds, got {text!r}")
    return value


def _whole(env: Mapping[str, str], name: str) -> int:
    text = env[name]
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}: must be a whole number of at least 1, got {text!r}")
    return int(text)
