"""`refund-poller local up` serves the notification endpoint on loopback and records its URL in the state file."""

from __future__ import annotations

import json

import requests

from refund_core.domain.inquiry import item_key
from tests.e2e.conftest import LocalStack


def test_local_up_serves_the_notification_endpoint_and_records_its_url(local_stack: LocalStack) -> None:
    base = local_stack.state["notify_base_url"]
    assert base.startswith("http://127.0.0.1:")
    unsigned = requests.post(f"{base}/notify/antom/default", data=b"{}", timeout=30)
    assert unsigned.status_code == 401  # the Notify function answered: no signature, nothing recorded
    assert requests.post(f"{base}/elsewhere", data=b"{}", timeout=30).json() == {"message": "Not Found"}


def test_local_up_has_the_sandbox_push_final_results_to_its_endpoint(local_stack: LocalStack, unique: str) -> None:
    """`local up` wires the sandbox's notifications to its own endpoint: a refund that turns final 2 s after its
    first poll is final by notification long before its next poll (8 s, the message's own interval)."""
    refund_request_id = f"processing2s-success--{unique} 退款"
    message = {"provider": "antom", "refundRequestId": refund_request_id, "polling": {"intervalSeconds": 8}}
    local_stack.target.client("sqs").send_message(
        QueueUrl=local_stack.state["outputs"]["InquiryQueueUrl"], MessageBody=json.dumps(message)
    )
    item = local_stack.closed_item(item_key("antom", "default", refund_request_id=refund_request_id), timeout=30)
    assert (item["status"], item["source"], item["polls"]) == ("SUCCESS", "notification", 1)
