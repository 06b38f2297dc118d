"""The StartInquiry function on the local stack: rejects to the DLQ with reasons, duplicates, throttling."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import drain_dlq, executions, send, store, wait_closed
from tests.unit.test_message_validation import INVALID


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("starter"), parameter_overrides=FAST_POLICY) as running:
        yield running


def test_every_invalid_message_goes_to_the_dlq_at_once_with_its_reason(stack: DevStack) -> None:
    bodies = {body: reason for body, reason in INVALID.values() if body}  # SQS refuses an empty body itself
    huge = json.dumps({"provider": "antom", "refundId": "r", "note": "x" * 200_000})
    wrong_merchant = json.dumps({"provider": "antom", "refundId": "r-wm", "merchant": "nobody"})
    bodies |= {huge: "note: is not a known field", wrong_merchant: "no merchant profile secret"}
    valid = {"provider": "alipayplus", "refundRequestId": "success--starter-valid-1"}
    before = len(executions(stack))
    send(stack, *bodies, valid)

    rejected = drain_dlq(stack, expected=len(bodies))
    reasons = {m["Body"]: m["MessageAttributes"]["rejectionReason"]["StringValue"] for m in rejected}
    assert set(reasons) == set(bodies)
    for body, reason in reasons.items():
        assert bodies[body] in reason
        assert "privateKey" not in reason
    assert all(m["Attributes"].get("ApproximateReceiveCount", "1") == "1" for m in rejected if "Attributes" in m)
    assert len(executions(stack)) == before
    # A valid message in the same batches is unaffected.
    item = wait_closed(stack, ["alipayplus#default#success--starter-valid-1"])
    assert item["alipayplus#default#success--starter-valid-1"]["status"] == "SUCCESS"


def test_a_message_sent_three_times_starts_one_polling_loop(stack: DevStack) -> None:
    message = {"provider": "antom", "refundRequestId": "processing2-success--starter-dup-1"}
    send(stack, message, message, message)
    key = "antom#default#processing2-success--starter-dup-1"
    item = wait_closed(stack, [key])[key]
    assert (item["status"], item["generation"]) == ("SUCCESS", 1)
    names = [e["name"] for e in executions(stack) if "starter-dup-1" in e["name"]]
    assert names == ["antom-default-processing2-success--starter-dup-1-g1"]


def test_a_final_refund_is_not_polled_again_unless_forced(stack: DevStack) -> None:
    key = "alphapay#default#success--starter-final-1"
    send(stack, {"provider": "alphapay", "refundId": "success--starter-final-1"})
    first = wait_closed(stack, [key])[key]
    send(stack, {"provider": "alphapay", "refundId": "success--starter-final-1"})
    time.sleep(2)
    assert store(stack).get(key)["polls"] == first["polls"]  # type: ignore[index]
    send(stack, {"provider": "alphapay", "refundId": "success--starter-final-1", "force": True})
    deadline = time.monotonic() + 20
    while store(stack).get(key)["polls"] == first["polls"] and time.monotonic() < deadline:  # type: ignore[index]
        time.sleep(0.2)
    assert store(stack).get(key)["generation"] == 2  # type: ignore[index]
