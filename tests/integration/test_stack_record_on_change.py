"""The cheap Express mode on the whole local stack (WorkflowType=EXPRESS, RecordEveryPoll=false): the loop's
PROCESSING polls leave the item alone, the close writes the whole count."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import send, store, wait_closed


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    overrides = {**FAST_POLICY, "WorkflowType": "EXPRESS", "RecordEveryPoll": "false"}
    with DevStack(tmp_path_factory.mktemp("cheap-express"), parameter_overrides=overrides) as running:
        yield running


def test_the_item_is_written_on_changes_and_the_close_counts_every_poll(stack: DevStack) -> None:
    refund = f"processing5-success--cheap-{str(int(time.time()))[-6:]}"
    key = f"antom#default#rr:{refund}"
    polling = {"intervalSeconds": 1, "maxDurationSeconds": 120}  # room for six polls on a loaded machine
    send(stack, {"provider": "antom", "refundRequestId": refund, "polling": polling})
    seen_polls = set()
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        item = store(stack).get(key)
        if item and item.get("pollingState") == "IDLE":
            break
        if item and "polls" in item:
            seen_polls.add(item["polls"])
        time.sleep(0.1)
    item = wait_closed(stack, [key], timeout=30)[key]
    # The starter's PROCESSING was written (1); the loop's four more PROCESSING answers were not; the close was (6).
    assert seen_polls <= {1}, seen_polls
    assert (item["status"], item["polls"], item["pollsLive"]) == ("SUCCESS", 6, False)
    sandbox = stack.sandbox.refund("antom", refund)
    assert sandbox is not None and sandbox["polls"] == 6
