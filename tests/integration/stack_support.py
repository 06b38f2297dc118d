"""Helpers for tests that drive the whole local stack: send messages, wait for outcomes, read traces."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from refund_core.store import DynamoDbRefundStore
from refund_poller.cli.timeline import history as execution_history
from refund_poller.devstack import DevStack


def send(stack: DevStack, *messages: Mapping[str, Any] | str) -> None:
    """Put messages on the inquiry queue (a str is sent as the raw body)."""
    sqs = stack.client("sqs")
    url = str(stack.outputs["InquiryQueueUrl"])
    entries = [
        {"Id": str(n), "MessageBody": m if isinstance(m, str) else json.dumps(m)} for n, m in enumerate(messages)
    ]
    for start in range(0, len(entries), 10):
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries[start : start + 10])
        assert not answer.get("Failed"), answer.get("Failed")


def store(stack: DevStack) -> DynamoDbRefundStore:
    return DynamoDbRefundStore(stack.client("dynamodb"), str(stack.outputs["ResultsTableName"]))


def wait_closed(stack: DevStack, keys: Iterable[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Wait until every item's polling window is closed; returns the items by key."""
    results = store(stack)
    pending, done = set(keys), {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key in sorted(pending):
            item = results.get(key)
            if item and item.get("pollingState") == "IDLE":
                done[key] = item
                pending.discard(key)
        time.sleep(0.2)
    assert not pending, f"still polling after {timeout} s: {sorted(pending)}"
    return done


def wait_execution(stack: DevStack, arn: str, timeout: float = 30) -> dict[str, Any]:
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        execution: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING" or time.monotonic() > deadline:
            return execution
        time.sleep(0.2)


def history(stack: DevStack, arn: str) -> list[dict[str, Any]]:
    return execution_history(stack.client("stepfunctions"), arn)


def drain_dlq(stack: DevStack, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
    """Receive (and delete) DLQ messages until ``expected`` arrived or ``timeout`` passed."""
    sqs = stack.client("sqs")
    url = str(stack.outputs["InquiryDLQUrl"])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )
        for message in answer.get("Messages", []):
            found.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def executions(stack: DevStack) -> list[dict[str, Any]]:
    """Every execution of the stack's state machine (all pages)."""
    sfn = stack.client("stepfunctions")
    arn = str(stack.outputs["StateMachineArn"])
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = sfn.list_executions(stateMachineArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))
        found.extend(page["executions"])
        token = page.get("nextToken")
        if not token:
            return found


def entered(events: list[dict[str, Any]], state_name: str | None = None) -> int:
    """How many states (or how many times one state) were entered: Standard bills each one."""
    count = 0
    for event in events:
        details = event.get("stateEnteredEventDetails")
        if event["type"].endswith("StateEntered") and (state_name is None or (details or {}).get("name") == state_name):
            count += 1
    return count


def events_by_key(stack: DevStack, expected: int, timeout: float = 10) -> dict[str, list[dict[str, Any]]]:
    """Drain result events until ``expected`` arrived; grouped under both refund ids."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        found.extend(stack.result_events(wait_seconds=1))
    grouped: dict[str, list[dict[str, Any]]] = {}
    for event in found:
        detail = event["detail"]
        for refund_key in {detail.get("refundId"), detail.get("refundRequestId")} - {None}:
            grouped.setdefault(str(refund_key), []).append(detail)
    return grouped
