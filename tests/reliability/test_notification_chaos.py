"""Notifications under chaos (issue 11): the sandbox pushes every refund's final result to the stack, and 30 % of
the pushes are dropped, duplicated, delayed or preceded by a forgery (the status flipped under the genuine
signature), while the stack keeps polling (with 10 % provider chaos on the answers). Nothing is lost, no final
status is wrong, every item final by notification matches a genuine acknowledged push, forged pushes are refused
and never recorded (no conflict either), and dropped ones are left to the polls."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.reliability.load import Faults, LoadReport, Mix, run_load

REFUNDS = 36  # 12 per provider


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("notify-chaos"), parameter_overrides=FAST_POLICY) as running:
        yield running


@pytest.fixture(scope="module")
def report(stack: DevStack) -> LoadReport:
    faults = Faults(chaos_rate=0.1, chaos_faults=("http500", "reset", "badsig", "unknown"), seed=11)
    result = run_load(
        stack, tag="nc", refunds=REFUNDS, per_second=4, window=60, faults=faults, mix=Mix(notify=True, seed=11)
    )
    print("notification chaos:", result.summary())
    print("problems:", json.dumps(result.problems(), ensure_ascii=False, default=str)[:20_000])
    return result


def test_nothing_lost_nothing_wrong_forged_never_recorded(stack: DevStack, report: LoadReport) -> None:
    assert _beyond_timeout_copies(stack, report) == {}
    assert report.lost == [] and report.wrong == [] and report.notification_problems == []


COPY = re.compile(
    r"^[a-z]+#[A-Za-z0-9_-]+#rr?:(?P<id>.+): 1 windows closed, events \{'[0-9a-f]{32}': 2\}, pending False$"
)


def _beyond_timeout_copies(stack: DevStack, report: LoadReport) -> dict[str, Any]:
    """The load's problems, less one kind when the run shows its cause: a window announced twice under one
    ``eventId`` while Inquire invocations timed out (an overloaded machine: the 8 s timeout passed after the
    publish, before the flag was cleared, and the retried close published again). README "Consuming the result
    event" names it: consumers dedupe by ``eventId``. Only for refunds no notification touched (seen on AlphaPay
    FAIL refunds: AlphaPay pushes SUCCESS only), so a notification announcing a window twice still counts;
    docs/RELIABILITY.md, "Known limits"."""
    problems = dict(report.problems())
    if report.notifications.get("InquireFunction timed out", 0) > 0:
        pushed = {e["refundId"] for e in stack.sandbox.pushes()} | {
            e["refundRequestId"] for e in stack.sandbox.pushes()
        }
        left = [
            p
            for p in problems.get("closed windows with != 1 event", [])
            if not ((copy := COPY.search(p)) and copy["id"] not in pushed)
        ]
        problems.pop("closed windows with != 1 event", None)
        if left:
            problems["closed windows with != 1 event"] = left
    return problems


def test_every_fault_happened_and_notifications_resolved_refunds(report: LoadReport) -> None:
    seen = report.notifications
    assert {f"fault {fault}" for fault in Mix().notify_faults} <= set(seen), seen
    assert seen["forgery"] == seen["fault forged"]  # each refused with 401 (checked per push)
    assert seen.get("final by notification", 0) > 0, seen
