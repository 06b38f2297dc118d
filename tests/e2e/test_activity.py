"""The running stack says what it does: `local up` prints a line per message, poll, close, event and DLQ entry;
`logs` prints the functions' logs; `events` the result events; `status` tells a queued refund from an unknown one.

All through the real CLI against ``local up --fast`` running in another process.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from typing import Any

from tests.e2e.conftest import CLI, ENV, LocalStack, eventually, interruptible


def _send(stack: LocalStack, *args: str) -> str:
    done = stack.cli("send", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def test_local_up_prints_a_line_per_message_poll_close_event_and_dlq_entry(
    local_stack: LocalStack, unique: str
) -> None:
    refund = f"processing2-success--act-{unique}"
    _send(local_stack, "--provider", "antom", "--refund-request-id", refund)
    rejected = _send(local_stack, "--no-validate", "--raw", json.dumps({"provider": "antom", "refundId": 7}))
    local_stack.closed_item(f"antom#default#rr:{refund}")

    def lines_about(what: str) -> list[str]:
        return [line for line in local_stack.printed().splitlines() if what in line]

    about = eventually(lambda: len(lines_about(refund)) >= 4 and lines_about(refund), timeout=30)
    kinds = [line.split()[1] for line in about]
    assert kinds[0] == "message" and "polling (first inquiry for this refund)" in about[0]
    assert "poll" in kinds and "close" in kinds and "event" in kinds
    assert any("window closed SUCCESS" in line for line in about)
    assert any(re.search(r": SUCCESS \(finished, eventId [0-9a-f]{8}\)$", line) for line in about)
    [dlq] = eventually(lambda: lines_about(f"DLQ       message {rejected[:8]} rejected"), timeout=30)
    assert "refundId" in dlq  # the reason names the field


def test_logs_prints_the_functions_logs_one_readable_line_per_record(local_stack: LocalStack, unique: str) -> None:
    refund = f"processing1-success--logs-{unique}"
    _send(local_stack, "--provider", "alipayplus", "--refund-request-id", refund)
    local_stack.closed_item(f"alipayplus#default#rr:{refund}")

    readable = eventually(lambda: refund in (done := local_stack.cli("logs")).stdout and done, timeout=20)
    raw = local_stack.cli("logs", "--function", "InquireFunction", "--raw")
    wrong = local_stack.cli("logs", "--function", "Inquire")

    assert readable.returncode == 0
    assert any(" poll [alipayplus " + refund in line for line in readable.stdout.splitlines())
    assert any("message handled [alipayplus " + refund in line for line in readable.stdout.splitlines())
    polls = [json.loads(line) for line in raw.stdout.splitlines() if line.startswith('{"level"')]
    assert polls and {p["function_name"] for p in polls} == {local_stack.state["outputs"]["InquireFunctionName"]}
    assert (wrong.returncode, wrong.stderr.splitlines()[0]) == (2, "error: unknown function 'Inquire'")


def _events_about(stack: LocalStack, refund: str) -> list[dict[str, Any]]:
    done = stack.cli("events", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    return [e for e in events if refund in (e["detail"].get("refundRequestId"), e["detail"].get("refundId"))]


def test_events_prints_each_result_event_the_stack_published(local_stack: LocalStack, unique: str) -> None:
    refund = f"processing1-fail--events-{unique}"
    _send(local_stack, "--provider", "alphapay", "--refund-id", refund)
    local_stack.closed_item(f"alphapay#default#r:{refund}")

    [event] = eventually(lambda: _events_about(local_stack, refund), timeout=20)
    text = local_stack.cli("events")

    assert (event["source"], event["detail-type"]) == ("refund-poller", "Refund Inquiry Finished")
    assert (event["detail"]["status"], event["detail"]["final"]) == ("FAIL", True)
    [line] = [line for line in text.stdout.splitlines() if refund in line]
    assert line.endswith(f": FAIL (finished, eventId {event['detail']['eventId'][:8]})")
    assert " event     alphapay/default " in line


def test_events_follow_prints_events_as_they_come_until_interrupted(local_stack: LocalStack, unique: str) -> None:
    refund = f"success--follow-events-{unique}"
    follower = subprocess.Popen(
        [*CLI, "events", "--follow"], cwd=local_stack.cwd, stdout=subprocess.PIPE, text=True, env=ENV,
        preexec_fn=interruptible,
    )  # fmt: skip
    try:
        _send(local_stack, "--provider", "antom", "--refund-request-id", refund)
        assert follower.stdout is not None
        for line in follower.stdout:  # blocks until the event's line comes
            if refund in line:
                assert line.rstrip().endswith(")") and ": SUCCESS (finished, eventId " in line
                break
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=30)  # drains what it still prints, so a full pipe cannot hold it up
        code = follower.returncode
    assert code == 130


def test_status_says_queued_while_the_starter_has_not_picked_the_message_up_and_unknown_otherwise(
    local_stack: LocalStack, unique: str
) -> None:
    lambda_client = local_stack.target.client("lambda")
    starter = local_stack.state["outputs"]["StartInquiryFunctionName"]
    refund = f"success--queued-{unique}"
    # First, with nothing queued: a refund never sent is unknown.
    unknown = local_stack.cli("status", "--provider", "antom", "--refund-request-id", f"never-sent-{unique}")
    lambda_client.put_function_concurrency(FunctionName=starter, ReservedConcurrentExecutions=0)  # throttled
    try:
        _send(local_stack, "--provider", "antom", "--refund-request-id", refund)
        queued = local_stack.cli("status", "--provider", "antom", "--refund-request-id", refund)
    finally:
        lambda_client.delete_function_concurrency(FunctionName=starter)  # the message is handled after all

    assert queued.returncode == 1
    assert " yet: probably queued, not picked up yet (the inquiry queue holds" in queued.stderr
    assert unknown.returncode == 1
    assert f"no stored refund never-sent-{unique} for antom/default" in unknown.stderr
    assert ": unknown (" in unknown.stderr and "queued" not in unknown.stderr
