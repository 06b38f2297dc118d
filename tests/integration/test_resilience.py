"""Transient failures on the local stack: crashed Inquire invocations are retried by the workflow,
a workflow whose retries run out records an error, and throttled AWS calls become batch item failures."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.fault_proxy import FaultProxy
from tests.integration.stack_support import events_by_key, history, send, store, wait_closed, wait_execution


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("resilience"), parameter_overrides=FAST_POLICY) as running:
        yield running


def sqs_event(*bodies: dict[str, Any]) -> dict[str, Any]:
    """An SQS event as the event source mapping builds it (same keys as events/sqs_*.json)."""
    template = json.loads(Path("events/sqs_antom_batch.json").read_text(encoding="utf-8"))["Records"][0]
    records = [{**template, "messageId": str(uuid.uuid4()), "body": json.dumps(body)} for body in bodies]
    return {"Records": records}


def test_crashed_inquire_invocations_are_retried_and_the_refund_completes(stack: DevStack) -> None:
    stack.cloud.inject_failures("InquireFunction", rate=0.4, seed=7)
    try:
        key = "antom#default#rr:processing3-success--retry-1"
        # Retries back off for seconds: a window longer than the fast policy's leaves room for them.
        message = {"provider": "antom", "refundRequestId": "processing3-success--retry-1"}
        send(stack, message | {"polling": {"maxDurationSeconds": 40}})
        item = wait_closed(stack, [key], timeout=60)[key]
    finally:
        stack.cloud.inject_failures("InquireFunction", rate=0.0)
    assert (item["status"], item["polls"]) == ("SUCCESS", 4)
    assert wait_execution(stack, item["executionArn"])["status"] == "SUCCEEDED"
    failed = [e for e in history(stack, item["executionArn"]) if e["type"] == "TaskFailed"]
    assert stack.cloud.injected_failures("InquireFunction") >= 1
    assert len(failed) == stack.cloud.injected_failures("InquireFunction")


def test_when_retries_run_out_the_error_is_recorded_and_the_execution_fails_readably(stack: DevStack) -> None:
    key = "alipayplus#default#rr:processing1-success--retry-2"
    send(stack, {"provider": "alipayplus", "refundRequestId": "processing1-success--retry-2"})
    results = store(stack)
    arn = None
    for _ in range(100):
        arn = (results.get(key) or {}).get("executionArn")
        if arn:
            break
        time.sleep(0.1)
    assert arn
    stack.cloud.inject_failures("InquireFunction", rate=1.0)
    try:
        execution = wait_execution(stack, arn, timeout=60)
    finally:
        stack.cloud.inject_failures("InquireFunction", rate=0.0)
    assert (execution["status"], execution.get("error")) == ("FAILED", "InquiryFailed")
    item = results.get(key)
    assert item is not None
    assert (item["status"], item["pollingState"]) == ("ERROR", "IDLE")
    assert "Runtime.ExitError" in item["reason"]
    announced = events_by_key(stack, expected=1).get("processing1-success--retry-2", [])
    assert [(e["status"], e["provider"], e["pollingState"]) for e in announced][-1:] == [
        ("ERROR", "alipayplus", "IDLE")
    ]


def test_throttled_aws_calls_become_batch_item_failures_and_nothing_else_does(stack: DevStack) -> None:
    proxy = FaultProxy(stack.cloud.endpoint_url, seed=1).start()
    stack.cloud.route_functions_through(proxy.url)
    try:
        proxy.throttle({"AWSStepFunctions.StartExecution": 1.0})
        event = sqs_event(
            {"provider": "antom", "refundRequestId": "processing2-success--throttle-1"},  # needs an execution
            {"provider": "antom", "refundRequestId": "success--throttle-2"},  # final at once: no execution
            {"provider": "antom"},  # invalid: to the DLQ, not a failure
        )
        result = stack.cloud.invoke("StartInquiryFunction", event)
        assert result.function_error is None, result.payload
        failed = [f["itemIdentifier"] for f in result.payload["batchItemFailures"]]
        assert failed == [event["Records"][0]["messageId"]]
        assert proxy.throttled["AWSStepFunctions.StartExecution"] >= 1

        proxy.throttle({})  # SQS redelivers the same message once throttling stops: it resumes in a new window
        retry = stack.cloud.invoke("StartInquiryFunction", {"Records": [event["Records"][0]]})
        assert retry.payload == {"batchItemFailures": []}
    finally:
        stack.cloud.route_functions_through(stack.cloud.endpoint_url)
        proxy.stop()
    key = "antom#default#rr:processing2-success--throttle-1"
    item = wait_closed(stack, [key])[key]
    # The resume opened window 2 (a loop the first attempt might have started belongs to window 1 and ends).
    assert (item["status"], item["generation"]) == ("SUCCESS", 2)
