"""``dlq`` lists what the starter rejected, with the reason, and ``dlq redrive`` moves it back to the queue."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import LocalStack, eventually


def _dlq_with_body(stack: LocalStack, body: str) -> list[dict[str, Any]]:
    return [m.to_json() for m in stack.dlq_messages() if m.body == body]


def test_a_rejected_message_is_listed_with_its_reason_and_redriven_to_the_inquiry_queue(
    local_stack: LocalStack, unique: str
) -> None:
    body = json.dumps({"provider": "antom", "refundRequestId": f"success--{unique}", "colour": "red"})
    sent = local_stack.cli("send", "--no-validate", "--raw", body)
    assert sent.returncode == 0, sent.stderr
    original_id = sent.stdout.split()[0]

    eventually(lambda: _dlq_with_body(local_stack, body))
    [listed] = [m for m in local_stack.cli_json("dlq") if m["body"] == body]
    assert listed["sourceMessageId"] == original_id
    assert "colour" in listed["reason"]  # the reason names the unknown field
    table = local_stack.cli("dlq")
    assert table.returncode == 0 and listed["messageId"] in table.stdout

    redriven = local_stack.cli("dlq", "redrive", "--message-id", listed["messageId"])

    assert redriven.returncode == 0, redriven.stderr
    assert "1 message(s) moved" in redriven.stdout
    # Back through the inquiry queue: still invalid, so rejected again as a new message from a new source.
    [again] = eventually(
        lambda: [m for m in _dlq_with_body(local_stack, body) if m["sourceMessageId"] != original_id] or None
    )
    assert again["messageId"] != listed["messageId"]
    assert all(m.message_id != listed["messageId"] for m in local_stack.dlq_messages())


def test_redrive_needs_all_or_one_message_id(local_stack: LocalStack) -> None:
    done = local_stack.cli("dlq", "redrive")

    assert done.returncode == 2
    assert done.stderr.startswith("error: give either --all or --message-id")
