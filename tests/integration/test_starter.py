"""The StartInquiry function on the local stack: rejects to the DLQ with reasons, duplicates, throttling."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.fault_proxy import FaultProxy
from tests.integration.stack_support import drain_dlq, executions, send, store, wait_closed
from tests.integration.test_resilience import sqs_event
from tests.reliability.support import items
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
    item = wait_closed(stack, ["alipayplus#default#rr:success--starter-valid-1"])
    assert item["alipayplus#default#rr:success--starter-valid-1"]["status"] == "SUCCESS"


def test_a_message_sent_three_times_starts_one_polling_loop(stack: DevStack) -> None:
    message = {"provider": "antom", "refundRequestId": "processing2-success--starter-dup-1"}
    send(stack, message, message, message)
    key = "antom#default#rr:processing2-success--starter-dup-1"
    item = wait_closed(stack, [key])[key]
    assert (item["status"], item["generation"]) == ("SUCCESS", 1)
    names = [e["name"] for e in executions(stack) if "starter-dup-1" in e["name"]]
    assert len(names) == 1 and re.fullmatch(
        r"antom-processing2-success--starter-dup-1-[0-9a-f]{12}-g1-[0-9a-f]{16}", names[0]
    )


def test_a_final_refund_is_not_polled_again_unless_forced(stack: DevStack) -> None:
    key = "alphapay#default#r:success--starter-final-1"
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


def test_a_refund_sent_with_its_refund_id_then_with_both_ids_is_one_item_one_loop_one_event(stack: DevStack) -> None:
    refund_id = f"processing4-success--ident-{uuid.uuid4().hex[:8]}"
    send(stack, {"provider": "antom", "refundId": refund_id, "polling": {"maxDurationSeconds": 30}})
    key = f"antom#default#r:{refund_id}"
    deadline = time.monotonic() + 20
    while not (store(stack).get(key) or {}).get("executionArn") and time.monotonic() < deadline:
        time.sleep(0.2)
    sandbox_refund = stack.sandbox.refund("antom", refund_id)
    assert sandbox_refund is not None
    # The merchant learnt its own request id meanwhile and sends both.
    send(stack, {"provider": "antom", "refundId": refund_id, "refundRequestId": sandbox_refund["refundRequestId"]})

    item = wait_closed(stack, [key], timeout=60)[key]

    assert (item["status"], item["generation"]) == ("SUCCESS", 1)
    assert [k for k, i in items(stack).items() if i.get("refundId") == refund_id] == [key]
    assert len([e for e in executions(stack) if refund_id[:20] in e["name"]]) == 1
    events = [e for e in stack.result_events(wait_seconds=2) if e["detail"].get("refundId") == refund_id]
    assert len(events) == 1


def test_fail_after_success_on_force_keeps_success_and_announces_one_conflict(stack: DevStack) -> None:
    refund = f"success--flip-{uuid.uuid4().hex[:8]}"
    key = f"alipayplus#default#rr:{refund}"
    send(stack, {"provider": "alipayplus", "refundRequestId": refund})
    wait_closed(stack, [key])
    stack.sandbox.set_script("alipayplus", refund, "fail")  # the provider now answers FAIL for the same refund

    send(stack, {"provider": "alipayplus", "refundRequestId": refund, "force": True})
    deadline = time.monotonic() + 20
    while not (store(stack).get(key) or {}).get("finalConflict") and time.monotonic() < deadline:
        time.sleep(0.2)

    item = store(stack).get(key)
    assert item is not None
    assert (item["status"], item["final"], item["generation"], item["finalConflictCount"]) == ("SUCCESS", True, 2, 1)
    assert (item["finalConflict"]["stored"]["status"], item["finalConflict"]["observed"]["status"]) == (
        "SUCCESS",
        "FAIL",
    )
    mine = [e for e in stack.result_events(wait_seconds=2) if e["detail"].get("refundRequestId") == refund]
    kinds = sorted((e["detail-type"], e["detail"]["status"]) for e in mine)
    assert kinds == [
        ("Refund Final Status Conflict", "SUCCESS"),
        ("Refund Inquiry Finished", "SUCCESS"),
        ("Refund Inquiry Finished", "SUCCESS"),
    ]


def test_a_result_event_eventbridge_throttled_is_published_once_when_sqs_redelivers(stack: DevStack) -> None:
    refund = f"success--outbox-{uuid.uuid4().hex[:8]}"
    proxy = FaultProxy(stack.cloud.endpoint_url, seed=3).start()
    stack.cloud.route_functions_through(proxy.url)
    try:
        proxy.throttle({"AWSEvents.PutEvents": 1.0})
        # Two records: a batch whose every record fails is an error of the whole invocation (Powertools).
        event = sqs_event({"provider": "alipayplus", "refundRequestId": refund}, {"provider": "antom"})
        first = stack.cloud.invoke("StartInquiryFunction", event)
        assert first.function_error is None, first.payload
        assert [f["itemIdentifier"] for f in first.payload["batchItemFailures"]] == [event["Records"][0]["messageId"]]
        assert proxy.throttled["AWSEvents.PutEvents"] >= 1
        assert store(stack).get(f"alipayplus#default#rr:{refund}")["eventPending"] is True  # type: ignore[index]

        proxy.throttle({})  # SQS redelivers the message: the stored result's event goes out now
        again = stack.cloud.invoke("StartInquiryFunction", {"Records": [event["Records"][0]]})
        assert again.payload == {"batchItemFailures": []}
        stack.cloud.invoke("StartInquiryFunction", {"Records": [event["Records"][0]]})
    finally:
        stack.cloud.route_functions_through(stack.cloud.endpoint_url)
        proxy.stop()
    mine = [e for e in stack.result_events(wait_seconds=2) if e["detail"].get("refundRequestId") == refund]
    assert [(e["detail"]["status"], bool(e["detail"]["eventId"])) for e in mine] == [("SUCCESS", True)]
