"""The capacity model's arithmetic (bench/capacity.py) on a case small enough to work out by hand."""

from __future__ import annotations

import pytest

from bench.capacity import PEAK_FACTOR, PerPoll, TokenBucket, closed_form, simulate, transitions

# One refund a second at the peak; every number below follows from these by hand.
ONE_PER_SECOND_AT_PEAK = 86_400 // PEAK_FACTOR
PER_POLL = PerPoll(
    transitions_per_poll=3.0,
    inquire_s=0.5,
    starter_batch_s=2.0,
    writes_per_refund=5.0,
    standard_usd=0.0002,
    express_usd=0.00002,
)


def test_a_token_bucket_serves_its_burst_then_its_refill_and_queues_the_rest() -> None:
    bucket = TokenBucket(size=10, refill=5)
    assert bucket.second(8) == 8  # full bucket: 10 tokens, 2 left
    assert bucket.second(8) == 7  # 2 + 5 tokens; 1 request waits
    assert bucket.backlog == 1
    assert bucket.second(8) == 5  # 5 tokens for 1 + 8 wanted; 4 wait
    assert bucket.backlog == 4
    assert bucket.second(0) == 4  # the backlog drains once demand falls below the refill
    assert bucket.backlog == 0
    assert bucket.throttled_seconds == 2


def test_the_closed_form_of_one_refund_a_second_with_three_polls() -> None:
    demand = closed_form(ONE_PER_SECOND_AT_PEAK, PER_POLL, polls=3)
    assert demand.arrivals_per_s == pytest.approx(1.0)
    assert demand.polls_per_s == pytest.approx(3.0)  # the starter's poll + 2 in the execution
    assert transitions(3.0, 3) == 7  # 3 states per execution poll + the final one
    assert demand.state_transitions_per_s == pytest.approx(7.0)
    assert demand.open_executions == pytest.approx(2 * (5 + 0.5))  # Little: 1/s x two 5.5 s polls
    assert demand.inquire_concurrency == pytest.approx(2 * 0.5)  # 2 polls/s, 0.5 s each
    assert demand.starter_concurrency == pytest.approx(0.1 * 2.0)  # a batch of 10 every 10 s, 2 s each
    assert demand.dynamodb_wru_per_s == pytest.approx(5.0)
    assert demand.standard_usd_per_day == pytest.approx(ONE_PER_SECOND_AT_PEAK * 0.0002)


def test_the_simulation_reaches_the_closed_forms_rates_when_nothing_throttles() -> None:
    simulated = simulate(ONE_PER_SECOND_AT_PEAK, PER_POLL, polls=3, seconds=60)
    assert simulated.max_polls_per_s == pytest.approx(3.0)
    assert simulated.max_state_transitions_per_s == pytest.approx(7.0)
    assert simulated.max_inquire_concurrency == pytest.approx(1.0)
    assert simulated.polls_served == pytest.approx(60 * 3)  # every refund's three polls were made
    assert simulated.start_execution_throttled_s == simulated.state_transition_throttled_s == 0
