"""Crashes: 20 % of Inquire invocations die like a crashed runtime, 30 % of DynamoDB UpdateItem calls are
throttled, 10 % of PutEvents entries are refused (``FailedEntryCount``) and 10 % of PutEvents calls kill the
calling worker process first (after the window's close, before its event is published); a third of the refunds
arrive in mixed id forms → the workflow retries, every refund completes correctly, one item and one event per
closed window, never two loops, none stranded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.reliability.load import LOOP_SCRIPTS, Faults, LoadReport, Mix, run_load
from tests.reliability.support import key_needles, leaks, stack_texts

INQUIRE_FAILURE_RATE = 0.2
UPDATE_ITEM_THROTTLE = 0.3
REFUNDS = 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("crashes"), parameter_overrides=FAST_POLICY) as running:
        yield running


@pytest.fixture(scope="module")
def report(stack: DevStack) -> LoadReport:
    faults = Faults(
        inquire_failure_rate=INQUIRE_FAILURE_RATE,
        update_item_throttle=UPDATE_ITEM_THROTTLE,
        # Each also fails the retried poll that publishes: with 20 % Inquire crashes, seven failed attempts in a row
        # (the ASL's retries) leave the event pending for good, as nothing else touches the item (RELIABILITY.md).
        put_events_failure_rate=0.1,
        kill_at_publish_rate=0.1,
        seed=5,
    )
    # Scripts never final at the first inquiry: the workflow (not SQS, 180 s later) retries a failed publish.
    mix = Mix(scripts=LOOP_SCRIPTS, mixed_share=0.35, seed=5)
    # The workflow's retries back off for seconds (full jitter): windows of 60 s leave room for them.
    result = run_load(stack, tag="crash", refunds=REFUNDS, per_second=5, window=60, faults=faults, mix=mix)
    print("crashes:", result.summary())
    return result


def test_every_refund_completes_with_its_scripted_status(report: LoadReport) -> None:
    assert report.problems() == {}
    assert sum(report.statuses.values()) == REFUNDS
    assert set(report.statuses) <= {"SUCCESS", "FAIL"}


def test_the_crashes_throttles_and_publish_failures_really_happened(report: LoadReport) -> None:
    assert report.inquire_failures >= 5
    assert report.throttled >= 10
    assert report.put_events_refused >= 1 and report.killed_at_publish >= 1
    assert report.put_events_refused + report.killed_at_publish >= 2
    assert report.kinds.get("mixed", 0) >= 5
    assert report.loop_samples >= 10  # the duplicate-loop and stranded counts looked often enough to see one


def test_no_key_material_in_logs_histories_or_events(stack: DevStack, report: LoadReport) -> None:
    assert leaks(stack_texts(stack, {"events": report.events}), key_needles(stack.state_dir / "profiles")) == {}
