"""The reliability load with the long tail on, time-compressed, under the provider chaos of test_provider_chaos.py
(30 % of answers spoiled) and the crashes of test_crashes.py (20 % of Inquire invocations die, 30 % of UpdateItem
calls throttled, 10 % of PutEvents refused, 10 % of PutEvents calls kill their worker, the starter's too), and
EventBridge Scheduler delivering half of its firings twice. 4 s windows hand most refunds over to the tail (a 60 s
step, 20,000 times faster). Every refund ends with its scripted final status: 0 lost, 0 refunds with two pending
tail attempts, 0 provider inquiries after a tail attempt's final status, one event per closed window."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.scheduler import SchedulerSettings
from tests.reliability.load import Faults, LoadReport, Mix, run_load
from tests.reliability.test_crashes import INQUIRE_FAILURE_RATE, UPDATE_ITEM_THROTTLE

REFUNDS = 36
PROVIDER_CHAOS_RATE = 0.3  # test_provider_chaos.py
# Never final at the first inquiry (LOOP_SCRIPTS' reason); most outlast a 4 s window (1 s interval, a third of the
# answers spoiled) and end in the tail.
SCRIPTS = (
    "processing2-success",
    "processing5-fail",
    "processing7-success",
    "processing9-fail",
    "unknown1-processing5-success",
    "processing8-success",
)
# The rate budget off, as in test_provider_chaos.py (the injected 429s would halve it).
POLICY = FAST_POLICY | {"ProviderRateLimit": "0"}
POLICY |= {f"{provider}TailScheduleSeconds": "60" for provider in ("Antom", "AlipayPlus", "AlphaPay")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    settings = SchedulerSettings(time_scale=20_000.0, duplicate_rate=0.5, seed=7)
    with DevStack(
        tmp_path_factory.mktemp("tail-crashes"), parameter_overrides=POLICY, scheduler=settings, tail=True
    ) as running:
        # A killed starter fails every record of its batch (tail attempts it had taken included): SQS redelivers
        # them after the queue's visibility timeout. 30 s (the function's timeout, the least an event source
        # mapping accepts) instead of the template's 180 s, compressed like the scheduler's waits.
        queue = str(running.outputs["InquiryQueueUrl"])
        running.client("sqs").set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "30"})
        yield running


@pytest.fixture(scope="module")
def report(stack: DevStack) -> LoadReport:
    faults = Faults(
        chaos_rate=PROVIDER_CHAOS_RATE,
        inquire_failure_rate=INQUIRE_FAILURE_RATE,
        update_item_throttle=UPDATE_ITEM_THROTTLE,
        put_events_failure_rate=0.1,
        kill_at_publish_rate=0.1,
        seed=11,
    )
    mix = Mix(scripts=SCRIPTS, seed=11)
    # A starter whose publish failed (refused, or killed) leaves the event to the outbox sweep (after its 60 s
    # grace); the sweep runs every 10 s here, as the stack's scheduled rule does every 5 minutes.
    result = run_load(
        stack,
        tag="tailcrash",
        refunds=REFUNDS,
        per_second=6,
        window=4,
        faults=faults,
        mix=mix,
        sweep_every=10,
        # Each attempt waits for the event source's 1 s batching window on a loaded machine, and an attempt whose
        # starter was killed or throttled comes back only after the queue's 30 s visibility timeout: a refund with
        # nine answers to go can need minutes. The load ends as soon as everything is closed.
        settle_seconds=360,
    )
    print("tail under chaos and crashes:", result.summary())
    for name, found in result.problems().items():
        print(name, json.dumps(found, ensure_ascii=False, default=str)[:3000])
    return result


def test_nothing_lost_never_two_pending_attempts_no_inquiry_after_final(report: LoadReport) -> None:
    assert report.problems() == {}  # lost, wrong, two pending tail attempts, inquiries after a final status, ...
    assert sum(report.statuses.values()) == REFUNDS
    assert set(report.statuses) <= {"SUCCESS", "FAIL"} and report.gave_up == 0


def test_the_tail_and_the_faults_really_happened(report: LoadReport) -> None:
    assert report.final_in_tail >= REFUNDS // 2 and report.tail_attempts >= REFUNDS
    assert report.tail_samples >= 10  # the pending attempts were looked at often enough to see two
    assert report.chaos_injected >= report.polls // 5
    assert report.inquire_failures >= 3 and report.throttled >= 10
    assert report.put_events_refused + report.killed_at_publish >= 2
