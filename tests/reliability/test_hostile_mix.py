"""A hostile provider in the mix (issue 10): half the Antom and Alipay+ refunds are answered by a provider that
replays a genuine answer about another refund, drips its answer a byte every half second, sends a gzip bomb
(1.1 GB inflated, no Content-Length) or a 300 MB body, or answers SUCCESS and then FAIL on a ``force`` re-poll;
the rest go to the sandbox as usual. Nothing is lost, no final status is wrong (an answer that proves nothing is
never stored as final), no final status flips silently (a conflict is recorded and announced), and the
function workers' peak memory stays bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.hostile_provider import HostileProvider
from tests.reliability.load import HOSTILE_SCENARIOS, Faults, LoadReport, Mix, run_load

REFUNDS = 30
# A function's worker holds the interpreter, boto3 and the layer (~75-85 MB here); a body or an inflated bomb
# read whole would add hundreds of MB (the 1.1 GB bomb alone). Twice today's figure is the bound.
PEAK_MEMORY_MB = 160


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("hostile"), parameter_overrides=FAST_POLICY) as running:
        yield running


@pytest.fixture(scope="module")
def report(stack: DevStack) -> LoadReport:
    mix = Mix(hostile_share=0.6, seed=4)
    with HostileProvider() as hostile:
        result = run_load(
            stack, tag="hx", refunds=REFUNDS, per_second=5, window=40, faults=Faults(seed=4), mix=mix, hostile=hostile
        )
    print("hostile mix:", result.summary())
    return result


def test_nothing_lost_nothing_wrong_no_silent_regression(report: LoadReport) -> None:
    assert report.problems() == {}
    assert report.lost == [] and report.wrong == [] and report.silent_regressions == []


def test_every_hostile_scenario_ran_and_each_flip_recorded_a_conflict(report: LoadReport) -> None:
    assert {f"hostile {scenario}" for scenario in HOSTILE_SCENARIOS} <= set(report.kinds)
    assert report.conflicts_recorded == report.kinds["hostile flip"]


def test_peak_memory_of_the_function_workers_is_bounded(report: LoadReport) -> None:
    assert 0 < report.peak_memory_mb["InquireFunction"] <= PEAK_MEMORY_MB
    assert 0 < report.peak_memory_mb["StartInquiryFunction"] <= PEAK_MEMORY_MB
