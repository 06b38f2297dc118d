"""EXPRESS under the same chaos: 30 % of provider answers spoiled, 15 % of PutEvents entries refused, 15 % of
PutEvents calls kill their worker first, a third of the refunds in mixed id forms, random ids and merchants.
Express has no ListExecutions or DescribeExecution (the strict stack refuses them, as AWS does), so loops are
followed in the execution logs and everything else is read from the results table and the captured events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.reliability.load import LOOP_SCRIPTS, Faults, LoadReport, Mix, run_load

REFUNDS = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    overrides = {**FAST_POLICY, "WorkflowType": "EXPRESS"}
    with DevStack(tmp_path_factory.mktemp("express-chaos"), parameter_overrides=overrides) as running:
        yield running


@pytest.fixture(scope="module")
def report(stack: DevStack) -> LoadReport:
    faults = Faults(chaos_rate=0.3, put_events_failure_rate=0.15, kill_at_publish_rate=0.15, seed=9)
    mix = Mix(scripts=LOOP_SCRIPTS, mixed_share=0.35, seed=9)
    result = run_load(stack, tag="xp", refunds=REFUNDS, per_second=5, window=45, faults=faults, mix=mix)
    print("express chaos:", result.summary())
    return result


def test_nothing_is_lost_split_stranded_or_doubled_on_express(report: LoadReport) -> None:
    assert report.problems() == {}
    assert sum(report.statuses.values()) == REFUNDS
    assert set(report.statuses) <= {"SUCCESS", "FAIL"}


def test_the_chaos_really_happened_and_the_loops_were_seen(report: LoadReport) -> None:
    assert report.chaos_injected >= report.polls // 6
    assert report.put_events_refused + report.killed_at_publish >= 4
    assert report.kinds.get("mixed", 0) >= 5
    assert report.executions >= REFUNDS  # every loop was followed in the logs
    assert report.most_loops_running >= 2 and report.loop_samples >= 10
