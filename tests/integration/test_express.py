"""The same stack with WorkflowType=EXPRESS: execution names are not unique there, so the idempotency
rules hold through the claims in the results table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import send, wait_closed


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    overrides = {**FAST_POLICY, "WorkflowType": "EXPRESS"}
    with DevStack(tmp_path_factory.mktemp("express"), parameter_overrides=overrides) as running:
        yield running


def test_an_express_loop_polls_to_the_final_status(stack: DevStack) -> None:
    key = "alphapay#default#r:processing2-fail--express-1"
    send(stack, {"provider": "alphapay", "refundId": "processing2-fail--express-1"})
    item = wait_closed(stack, [key])[key]
    assert (item["status"], item["polls"], item["final"]) == ("FAIL", 3, True)
    assert ":express:" in item["executionArn"] or ":execution:" in item["executionArn"]


def test_duplicates_start_one_express_loop(stack: DevStack) -> None:
    key = "antom#default#rr:processing3-success--express-dup"
    message = {"provider": "antom", "refundRequestId": "processing3-success--express-dup"}
    send(stack, message, message, message)
    item = wait_closed(stack, [key])[key]
    # One claim (generation 1) and exactly the scripted number of polls: no second loop polled.
    assert (item["status"], item["generation"], item["polls"]) == ("SUCCESS", 1, 4)
    refund = stack.sandbox.refund("antom", "processing3-success--express-dup")
    assert refund is not None and refund["polls"] == 4
