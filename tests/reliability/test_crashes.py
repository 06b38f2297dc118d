"""Crashes: 20 % of Inquire invocations die like a crashed runtime and 30 % of DynamoDB UpdateItem calls are
throttled (functions routed through a fault proxy) → the workflow retries and every refund completes correctly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.reliability.load import Faults, LoadReport, run_load
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
    faults = Faults(inquire_failure_rate=INQUIRE_FAILURE_RATE, update_item_throttle=UPDATE_ITEM_THROTTLE, seed=5)
    # The workflow's retries back off for seconds (full jitter): windows of 60 s leave room for them.
    result = run_load(stack, tag="crash", refunds=REFUNDS, per_second=5, window=60, faults=faults)
    print("crashes:", result.summary())
    return result


def test_every_refund_completes_with_its_scripted_status(report: LoadReport) -> None:
    assert report.problems() == {}
    assert sum(report.statuses.values()) == REFUNDS
    assert set(report.statuses) <= {"SUCCESS", "FAIL"}


def test_the_crashes_and_throttles_really_happened(report: LoadReport) -> None:
    assert report.inquire_failures >= 5
    assert report.throttled >= 10


def test_no_key_material_in_logs_histories_or_events(stack: DevStack, report: LoadReport) -> None:
    assert leaks(stack_texts(stack, {"events": report.events}), key_needles(stack.state_dir / "profiles")) == {}
