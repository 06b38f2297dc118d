"""The provider rate budget against a real moto server: one schedule item per (provider, merchant), shared by
every poller (each thread here has its own client and its own remembered schedule, as a Lambda container would).

Never over budget in any one-second span, however many pollers; over budget a poll waits and the refund still
ends with its real outcome; a rate-limit answer halves the rate once per burst, and the rate recovers.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from refund_core.aws.rate_budget import DynamoDbRateBudget, rate_key
from refund_core.domain.inquiry import InquiryMessage
from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.domain.polling import Policy
from refund_core.domain.rate import LOWERING_COOLDOWN_SECONDS, MIN_RATE_SHARE, Schedule, spacing
from refund_core.providers import RefundQuery
from refund_core.service import InquiryService
from refund_core.store import DynamoDbRefundStore, load_item
from tests.integration.conftest import free_port
from tests.integration.core_support import Core, ScriptedAdapters, answer, core, create_results_table  # the fixture

__all__ = ["core"]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BUDGET = 10.0


def most_in_one_second(times: list[float]) -> int:
    """The largest number of instants in any half-open one-second span [t, t + 1)."""
    ordered = sorted(times)
    return max((bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


def client(endpoint: str) -> DynamoDBClient:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def poll_flat_out(endpoint: str, table: str, ready: Any, go: Any, seconds: float, results: Any) -> None:
    """One Lambda container's worth of polling, in a process of its own: take a turn, "ask" (10 ms), again."""
    budget = DynamoDbRateBudget(client(endpoint), table, BUDGET)
    turns, denied = [], 0
    ready.release()
    go.wait()
    until = time.time() + seconds
    while time.time() < until:
        grant = budget.acquire("antom", "m-1")
        if grant.granted:
            turns.append(time.time())  # the instant the provider would be asked
            time.sleep(0.01)
        else:
            denied += 1
            time.sleep(min(grant.retry_after, 0.2))
    results.put((turns, denied))


def test_concurrent_pollers_never_exceed_the_budget(moto_endpoint: str, dynamodb: Any) -> None:
    """8 processes (as many Lambda containers) poll one merchant flat out for 6 s with a budget of 10/s."""
    table = create_results_table(dynamodb)
    processes, seconds = 8, 6.0
    spawn = multiprocessing.get_context("spawn")
    ready, go, results = spawn.Semaphore(0), spawn.Event(), spawn.Queue()
    workers = [
        spawn.Process(target=poll_flat_out, args=(moto_endpoint, table, ready, go, seconds, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        assert ready.acquire(timeout=120), "a polling process did not start"
    go.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    turns = [t for process_turns, _ in outcomes for t in process_turns]
    assert most_in_one_second(turns) <= BUDGET, f"{most_in_one_second(turns)} turns in one second"
    # The budget is used, not just respected: pollers asking flat out get a good share of it.
    assert len(turns) >= 0.5 * BUDGET * seconds, len(turns)


def test_budget_is_per_provider_and_merchant(moto_endpoint: str, dynamodb: Any) -> None:
    table = create_results_table(dynamodb)
    # A lead of 1 s: however slow this machine's moto answers, a first turn is never late (and given up).
    budget = DynamoDbRateBudget(client(moto_endpoint), table, 0.5, lead=1.0)
    assert budget.acquire("antom", "m-1").granted
    # Two seconds between turns at 0.5/s: the next turn for m-1 is more than a second away (over budget, come
    # back later), but m-2 and AlphaPay's m-1 have schedules of their own.
    second = budget.acquire("antom", "m-1")
    assert not second.granted and 0 < second.retry_after <= 2.1
    assert budget.acquire("antom", "m-2").granted
    assert budget.acquire("alphapay", "m-1").granted
    # A budget of 1/s queues the next turn (a sleep of about a second) instead.
    queued = DynamoDbRateBudget(client(moto_endpoint), table, 1.0, lead=1.0)
    assert queued.acquire("antom", "m-3").granted
    turn = queued.acquire("antom", "m-3")
    assert turn.granted and turn.delay > 0.5


@dataclass
class FakeTime:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limit_answers_halve_the_rate_once_per_burst_and_it_recovers(moto_endpoint: str, dynamodb: Any) -> None:
    table = create_results_table(dynamodb)
    clock = FakeTime()
    containers = [
        DynamoDbRateBudget(client(moto_endpoint), table, BUDGET, clock=clock, sleep=clock.sleep) for _ in range(5)
    ]
    assert containers[0].acquire("antom", "m-1").granted
    # A burst of rate-limit answers seen by five containers at once lowers the rate once, to half.
    lowered = [budget.lower("antom", "m-1") for budget in containers]
    assert lowered.count(True) == 1
    item = load_item(dynamodb.get_item(TableName=table, Key={"pk": {"S": rate_key("antom", "m-1")}})["Item"])
    assert item["loweredRate"] == BUDGET / 2
    # Turns are now about 1 / 5 s apart for every container, also one that never saw the lowering.
    before = float(item["nextSlot"])
    assert containers[3].acquire("antom", "m-1").granted
    after = load_item(dynamodb.get_item(TableName=table, Key={"pk": {"S": rate_key("antom", "m-1")}})["Item"])
    assert float(after["nextSlot"]) - before == pytest.approx(spacing(BUDGET / 2), abs=1e-5)
    # Answers that keep coming lower it again after each cooldown, never below the floor.
    for _ in range(12):
        clock.now += LOWERING_COOLDOWN_SECONDS
        assert containers[1].lower("antom", "m-1")
    item = load_item(dynamodb.get_item(TableName=table, Key={"pk": {"S": rate_key("antom", "m-1")}})["Item"])
    assert BUDGET * MIN_RATE_SHARE <= item["loweredRate"] < BUDGET / 8
    floor = Schedule(None, BUDGET * MIN_RATE_SHARE, clock.now)
    assert floor.lowered(BUDGET, clock.now) == BUDGET * MIN_RATE_SHARE
    schedule = Schedule(float(item["nextSlot"]), float(item["loweredRate"]), float(item["loweredAt"]))
    # Without rate-limit answers it recovers: all of the budget again within 20 s.
    assert schedule.rate(BUDGET, clock.now + 5) < BUDGET
    assert schedule.rate(BUDGET, clock.now + 20) == BUDGET


class RateLimitingProvider:
    """A provider with a limit of its own: more than ``limit`` inquiries in any one second get
    REQUEST_TRAFFIC_EXCEED_LIMIT; otherwise PROCESSING for each refund's first two polls, then SUCCESS."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.asked: list[float] = []
        self.polls: dict[str, int] = {}
        self._lock = threading.Lock()

    def inquire(self, query: RefundQuery, *, timeout_seconds: float | None = None) -> Observation:
        with self._lock:
            now = time.time()
            self.asked.append(now)
            if sum(1 for t in self.asked if now - 1.0 < t <= now) > self.limit:
                return Observation(
                    provider="antom",
                    status=Status.UNKNOWN,
                    result=ProviderResult("REQUEST_TRAFFIC_EXCEED_LIMIT", "U", "request traffic exceeds the limit"),
                    reason="provider rate limit",
                )
            refund = str(query.refund_request_id)
            self.polls[refund] = self.polls.get(refund, 0) + 1
            return answer(Status.SUCCESS if self.polls[refund] > 2 else Status.PROCESSING, refund_request_id=refund)


def run_loop(service: InquiryService, state: dict[str, Any], sleep: Callable[[float], None]) -> dict[str, Any]:
    """What the state machine does: wait the decision's seconds (scaled down), poll, until not ``wait``."""
    while state["decision"]["next"] == "wait":
        sleep(state["decision"]["waitSeconds"] * 0.1)
        state = service.poll(state).state
    return state


def test_no_refund_fails_because_of_the_budget(core: Core) -> None:
    """30 refunds polled at once through the service, budget 10/s: the provider is never asked more than 10 times
    in a second, and every refund ends SUCCESS (a poll over budget waits; nothing fails or closes early)."""
    provider = RateLimitingProvider(limit=int(BUDGET))
    adapters = ScriptedAdapters()
    adapters.provider = provider  # type: ignore[assignment]
    store = DynamoDbRefundStore(core.dynamodb, core.table, ttl_days=1)
    policies = {"antom": Policy(interval_seconds=1, max_duration_seconds=120)}
    results: dict[str, dict[str, Any]] = {}
    refunds = [f"rb-{uuid.uuid4().hex[:8]}-{n}" for n in range(30)]

    def one(refund: str) -> None:
        service = InquiryService(
            store,
            adapters,
            core.events,
            policies,
            rate_budget=DynamoDbRateBudget(client(core.endpoint), core.table, BUDGET),
        )
        message = InquiryMessage.from_body({"provider": "antom", "merchant": "m-30", "refundRequestId": refund})
        started = service.start(message, message_id=uuid.uuid4().hex, executions=NoExecutions())
        assert started.poll is not None
        results[refund] = run_loop(service, started.poll.state, time.sleep)

    threads = [threading.Thread(target=one, args=(refund,)) for refund in refunds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_in_one_second(provider.asked) <= BUDGET
    assert all(state["decision"]["status"] == "SUCCESS" for state in results.values()), results
    items = core.items()
    assert {items[f"antom#m-30#rr:{refund}"]["status"] for refund in refunds} == {"SUCCESS"}
    assert sum(state.get("deferredPolls", 0) for state in results.values()) > 0  # the budget did hold polls back


class NoExecutions:
    """The loop is run by the test itself (run_loop): starting an execution only names it."""

    def start(self, name: str, state: Any) -> str:
        return f"arn:aws:states:us-east-1:123456789012:execution:test:{name}"


def test_rate_limit_answer_lowers_the_budget_and_polling_backs_off(core: Core) -> None:
    provider = RateLimitingProvider(limit=0)  # every answer is REQUEST_TRAFFIC_EXCEED_LIMIT
    adapters = ScriptedAdapters()
    adapters.provider = provider  # type: ignore[assignment]
    budget = DynamoDbRateBudget(client(core.endpoint), core.table, BUDGET)
    service = InquiryService(
        core.store, adapters, core.events, {"antom": Policy(5, 60)}, clock=core.clock, rate_budget=budget
    )
    message = InquiryMessage.from_body({"provider": "antom", "merchant": "m-rl", "refundRequestId": "r-1"})
    started = service.start(message, message_id="m1", executions=NoExecutions())
    assert started.poll is not None and started.poll.decision.wait_seconds == 10  # the interval doubled
    item = load_item(core.dynamodb.get_item(TableName=core.table, Key={"pk": {"S": rate_key("antom", "m-rl")}})["Item"])
    assert item["loweredRate"] == BUDGET / 2


def test_a_schedule_that_cannot_be_reached_defers_the_poll_instead_of_failing_it(core: Core) -> None:
    """DynamoDB unreachable (or throttling past the SDK's retries): no turn, so no inquiry; the poll waits."""
    port = free_port()  # nothing listens there: every call is refused at once
    unreachable = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),
    )
    budget = DynamoDbRateBudget(unreachable, core.table, BUDGET)
    grant = budget.acquire("antom", "m-down")
    assert not grant.granted and grant.retry_after >= 1.0
    assert budget.lower("antom", "m-down") is False
    service = InquiryService(
        core.store, core.adapters, core.events, {"antom": Policy(5, 60)}, clock=core.clock, rate_budget=budget
    )
    message = InquiryMessage.from_body({"provider": "antom", "merchant": "m-down", "refundRequestId": "r-down"})
    started = service.start(message, message_id="m-down", executions=NoExecutions())
    assert started.action == "polling" and started.poll is not None and started.poll.deferred
    assert started.poll.decision.next == "wait" and started.poll.decision.wait_seconds >= 6
    assert core.provider.queries == []  # the provider was not asked
