"""``dlq`` lists what the starter rejected, with the reason, and ``dlq redrive`` moves it back to the queue."""

from __future__ import annotations

import json
from typing import Any

from refund_poller.cli.dlq_messages import DlqMessage
from tests.e2e.conftest import LocalStack, eventually
from tests.e2e.terminal import run_cli_in_pty, widest_line


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
    assert table.returncode == 0 and listed["messageId"][:8] in table.stdout

    redriven = local_stack.cli("dlq", "redrive", "--include-rejected", "--message-id", listed["messageId"])

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


def _rejected(stack: LocalStack, unique: str, n: int) -> tuple[str, DlqMessage]:
    """A message sent with --no-validate (an unknown field), and the DLQ message the starter made of it."""
    refund = f"退款 {unique}/{n}:v1.{n}"
    body = json.dumps({"provider": "antom", "refundRequestId": refund, "colour": "red" * 10}, ensure_ascii=False)
    sent = stack.cli("send", "--no-validate", "--raw", body)
    assert sent.returncode == 0, sent.stderr
    sent_id = sent.stdout.split()[0]
    [message] = eventually(lambda: [m for m in stack.dlq_messages() if m.source_message_id == sent_id])
    return sent_id, message


def test_the_dlq_table_fits_80_columns_with_short_ids_and_the_id_send_printed(
    local_stack: LocalStack, unique: str
) -> None:
    sent = [_rejected(local_stack, unique, n) for n in range(2)]

    code, screen = run_cli_in_pty(local_stack.cwd, "dlq", columns=80)

    assert code == 0, screen
    assert widest_line(screen) <= 80, screen
    for sent_id, message in sent:
        rows = [line for line in screen.splitlines() if message.message_id[:8] in line]
        assert len(rows) == 1, screen
        [row] = rows
        assert sent_id[:8] in row, screen  # the id `send` printed, beside the DLQ's own
    assert sent[0][1].message_id not in screen  # whole ids are for --json


def test_redrive_skips_messages_rejected_as_invalid_unless_included_and_dry_run_moves_nothing(
    local_stack: LocalStack, unique: str
) -> None:
    _, rejected = _rejected(local_stack, unique, 0)
    # A valid message SQS itself moved after failed deliveries: no rejection attributes.
    sqs, dlq_url = local_stack.target.client("sqs"), local_stack.state["outputs"]["InquiryDLQUrl"]
    failed_body = json.dumps({"provider": "alipayplus", "refundRequestId": f"success--{unique} 再/试"})
    sqs.send_message(QueueUrl=dlq_url, MessageBody=failed_body)
    [failed] = eventually(lambda: [m for m in local_stack.dlq_messages() if m.body == failed_body])

    dry = local_stack.cli("dlq", "redrive", "--all", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert f"would redrive {failed.message_id[:8]} (sent as -)" in dry.stdout
    assert f"skipped {rejected.message_id[:8]}: rejected as invalid: colour: is not a known field" in dry.stdout
    assert "(dry run: nothing moved)" in dry.stdout
    assert {failed.message_id, rejected.message_id} <= {m.message_id for m in local_stack.dlq_messages()}

    moved = local_stack.cli("dlq", "redrive", "--all")

    assert moved.returncode == 0, moved.stderr
    assert f"redriven {failed.message_id[:8]}" in moved.stdout and "skipped as invalid" in moved.stdout
    left = {m.message_id for m in local_stack.dlq_messages()}
    assert failed.message_id not in left and rejected.message_id in left
    local_stack.closed_item(f"alipayplus#default#rr:success--{unique} 再/试")  # polled after the redrive

    refused = local_stack.cli("dlq", "redrive", "--message-id", rejected.message_id[:8])
    included = local_stack.cli("dlq", "redrive", "--message-id", rejected.message_id[:8], "--include-rejected")

    assert refused.returncode == 1 and "--include-rejected" in refused.stdout
    assert included.returncode == 0 and f"redriven {rejected.message_id[:8]}" in included.stdout
