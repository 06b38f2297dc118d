"""``send`` checks each message with the starter's own schema validation before anything reaches the queue."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import LocalStack, eventually


@pytest.mark.parametrize(
    ("flags", "field", "rule", "flag"),
    [
        (["--provider", "alipay", "--refund-id", "x"], "provider", "enum", "--provider"),
        (
            ["--provider", "antom", "--refund-id", "x", "--window", "5000"],
            "polling.maxDurationSeconds",
            "maximum",
            "--window",
        ),
        (
            ["--provider", "antom", "--refund-id", "x", "--interval", "0"],
            "polling.intervalSeconds",
            "minimum",
            "--interval",
        ),
        (["--provider", "alphapay", "--refund-request-id", "x"], "refundId", "required", "--refund-id"),
    ],
)
def test_a_typo_in_send_exits_2_naming_the_field_and_the_rule_and_sends_nothing(
    local_stack: LocalStack, flags: list[str], field: str, rule: str, flag: str
) -> None:
    done = local_stack.cli("send", *flags)

    assert done.returncode == 2, done.stdout
    assert done.stdout == ""  # no message id: nothing was sent
    error, hint = done.stderr.strip().splitlines()
    assert error.startswith(f"error: invalid message: {field}: ") and f"(rule: {rule})" in error
    assert hint.startswith(f"hint: {flag} sets that field") and "--no-validate" in hint


def test_an_invalid_line_of_a_file_is_refused_with_its_line_number_and_no_line_is_sent(
    local_stack: LocalStack, unique: str
) -> None:
    good = json.dumps({"provider": "antom", "refundRequestId": f"success--{unique}"})
    path = local_stack.cwd / f"typo-{unique}.jsonl"
    path.write_text(good + "\n" + json.dumps({"provider": "antom", "refundId": "x", "colour": "red"}) + "\n")

    done = local_stack.cli("send", "--file", str(path))

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: invalid message: line 2: colour: is not a known field")


def test_no_validate_sends_an_invalid_message_which_the_stack_rejects_to_the_dlq(
    local_stack: LocalStack, unique: str
) -> None:
    refund = f"unicode 退款/{unique}:v1.0"
    done = local_stack.cli("send", "--no-validate", "--provider", "alipay", "--refund-request-id", refund)

    assert done.returncode == 0, done.stderr
    message_id, refund_words = done.stdout.strip().split("  ", 1)
    assert refund_words == f"alipay default refundRequestId={refund!r}"
    [rejected] = eventually(lambda: [m for m in local_stack.dlq_messages() if m.source_message_id == message_id])
    assert rejected.reason.startswith("provider: must be one of")


def test_each_sent_message_names_the_refund_it_is_for(local_stack: LocalStack, unique: str) -> None:
    lines = [
        json.dumps({"provider": "antom", "merchant": "default", "refundRequestId": f"success--{unique}"}),
        json.dumps({"provider": "alphapay", "refundId": f"success--{unique}"}),
    ]
    path = local_stack.cwd / f"two-{unique}.jsonl"
    path.write_text("\n".join(lines))

    table = local_stack.cli("send", "--file", str(path))
    listed = local_stack.cli_json("send", "--provider", "alipayplus", "--refund-request-id", f"success--{unique}")

    assert table.returncode == 0, table.stderr
    assert [line.split("  ", 1)[1] for line in table.stdout.splitlines()] == [
        f"antom default refundRequestId='success--{unique}'",
        f"alphapay default refundId='success--{unique}'",
    ]
    [entry] = listed
    assert entry["provider"] == "alipayplus" and entry["merchant"] == "default"
    assert entry["refundRequestId"] == f"success--{unique}" and entry["messageId"]
