"""The long tail on the local stack (docs/long-tail.md): EventBridge Scheduler one-time schedules, fired by the local
firer with time compressed, bring a refund back to the starter for one inquiry per attempt until it is final,
not found, or the tail gives up at its maximum age."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from refund_core.domain.inquiry import item_key
from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.scheduler import SchedulerSettings
from refund_poller.sandbox.notifications import NotifyTarget
from tests.integration.stack_support import send, store
from tests.integration.test_cli_inquire import run_cli

# One inquiry in the fast window (a 1 s window closes at the first answer), then the tail: the default rhythm
# (2 min ... 24 h) up to 7 days, run about 100,000 times faster than real time.
TAIL_POLICY = FAST_POLICY | {f"{provider}WindowSeconds": "1" for provider in ("Antom", "AlipayPlus", "AlphaPay")}
TAIL_POLICY |= {"TailStillProcessingEvent": "true"}
FAST = 100_000.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    settings = SchedulerSettings(time_scale=FAST)
    with DevStack(
        tmp_path_factory.mktemp("tail"), parameter_overrides=TAIL_POLICY, scheduler=settings, tail=True
    ) as running:
        yield running


def wait_item(stack: DevStack, key: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    results = store(stack)
    deadline = time.monotonic() + timeout
    item = None
    while time.monotonic() < deadline:
        item = results.get(key)
        if item and done(item):
            return item
        time.sleep(0.1)
    raise AssertionError(f"{key}: not done after {timeout} s: {item}")


def idle(item: dict[str, Any]) -> bool:
    return item.get("pollingState") == "IDLE"


def provider_polls(stack: DevStack, refund_request_id: str) -> int:
    record = stack.sandbox.refund("antom", refund_request_id) or {}
    return int(record.get("polls", 0))


def events_for(stack: DevStack, key_id: str, wait: float = 3.0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found += [e for e in stack.result_events() if e["detail"].get("refundRequestId") == key_id]
        time.sleep(0.2)
    return found


def schedules(stack: DevStack) -> list[dict[str, Any]]:
    group = str(stack.outputs["TailScheduleGroupName"])
    answer: dict[str, Any] = stack.client("scheduler").list_schedules(GroupName=group)
    return list(answer.get("Schedules", []))


def test_a_refund_final_at_tail_attempt_three(stack: DevStack) -> None:
    rid = "processing3-success--tail3"
    send(stack, {"provider": "antom", "refundRequestId": rid})
    key = item_key("antom", "default", refund_request_id=rid)
    item = wait_item(stack, key, idle)
    assert item["status"] == "SUCCESS" and item["final"] is True
    assert [entry["attempt"] for entry in item["tailHistory"]] == [1, 2, 3]
    assert [entry["status"] for entry in item["tailHistory"]] == ["PROCESSING", "PROCESSING", "SUCCESS"]
    assert "nextPollAt" not in item and not item.get("gaveUp")
    assert item["polls"] == 4 and provider_polls(stack, rid) == 4  # the fast window's one, then three attempts
    events = events_for(stack, rid)
    assert [(e["detail-type"], e["detail"]["status"]) for e in events] == [
        ("Refund Still Processing", "PROCESSING"),  # the window handed over to the tail (TailStillProcessingEvent)
        ("Refund Inquiry Finished", "SUCCESS"),
    ]
    assert events[0]["detail"]["nextPollAt"] and events[0]["detail"]["tailAttempt"] == 1
    assert not [s for s in schedules(stack) if s["Name"].split("-")[2] == item["windowId"]]


def test_a_refund_that_stays_processing_gives_up_at_its_maximum_age(stack: DevStack) -> None:
    rid = "processing60-success--giveup"
    # A message's own schedule within bounds: every hour, for four hours.
    send(
        stack,
        {"provider": "antom", "refundRequestId": rid, "tail": {"scheduleSeconds": [3600], "maxAgeSeconds": 14400}},
    )
    key = item_key("antom", "default", refund_request_id=rid)
    item = wait_item(stack, key, idle)
    assert item["status"] == "UNRESOLVED" and item["gaveUp"] is True and item["final"] is False
    assert [entry["attempt"] for entry in item["tailHistory"]] == [1, 2, 3, 4]  # the fourth at the maximum age
    assert "gave up" in item["reason"] and "nextPollAt" not in item
    assert provider_polls(stack, rid) == 5
    events = [e for e in events_for(stack, rid) if e["detail-type"] == "Refund Inquiry Finished"]
    assert len(events) == 1 and events[0]["detail"]["status"] == "UNRESOLVED" and events[0]["detail"]["gaveUp"]
    metric_lines = [
        line for line in stack.cloud.function_logs("StartInquiryFunction").splitlines() if "TailGaveUp" in line
    ]
    assert any(
        json.loads(line[line.index("{") :]).get("TailGaveUp") == [1.0] or '"TailGaveUp":1' in line.replace(" ", "")
        for line in metric_lines
    )


def test_a_new_message_supersedes_the_pending_attempt(stack: DevStack) -> None:
    rid = "processing60-success--renew"
    key = item_key("antom", "default", refund_request_id=rid)
    stack.cloud.scheduler.time_scale = 1.0  # real time: the attempt (2 minutes away) stays pending
    try:
        send(stack, {"provider": "antom", "refundRequestId": rid})
        first = wait_item(stack, key, lambda i: i.get("pollingState") == "TAIL")
        assert first["tailAttempt"] == 1 and first["nextPollAt"] and first["tailPlan"]["maxAgeSeconds"] == 604800
        send(stack, {"provider": "antom", "refundRequestId": rid})
        second = wait_item(stack, key, lambda i: i.get("pollingState") == "TAIL" and i["windowId"] != first["windowId"])
        digest = first["tailScheduleName"].split("-")[1]
        pending = [s["Name"] for s in schedules(stack) if s["Name"].split("-")[1] == digest]
        assert pending == [second["tailScheduleName"]]  # the first window's schedule was deleted
        assert provider_polls(stack, rid) == 2
        # trace: no execution (a 1 s window), the tail's next planned attempt with its schedule.
        args = ("trace", "--provider", "antom", "--refund-request-id", rid, "--endpoint-url", stack.cloud.endpoint_url)
        answer = run_cli(*args, "--json")
        assert answer.returncode == 0, answer.stderr
        shown = ("time", "poll", "status", "decision", "detail")
        steps = [{k: step[k] for k in shown} for step in json.loads(answer.stdout)["steps"]]
        assert steps == [
            {
                "time": second["nextPollAt"],
                "poll": None,
                "status": "PLANNED",
                "decision": "tail attempt 1",
                "detail": "schedule [120, 600, 1800, 3600, 7200, 21600, 43200, 86400] s, max age 604800 s",
            }
        ]
    finally:
        stack.cloud.scheduler.time_scale = FAST
    done = wait_item(stack, key, idle)
    attempts = [entry["attempt"] for entry in done["tailHistory"]]
    assert attempts == list(range(1, len(attempts) + 1))  # one inquiry per attempt, none from the first window
    assert provider_polls(stack, rid) == 2 + len(attempts)


def test_duplicate_and_late_firings_ask_nothing(stack: DevStack) -> None:
    rid = "processing3-success--dup"
    key = item_key("antom", "default", refund_request_id=rid)
    stack.cloud.scheduler.duplicate_rate = 1.0  # every firing delivered twice (at-least-once)
    try:
        send(stack, {"provider": "antom", "refundRequestId": rid})
        item = wait_item(stack, key, idle)
    finally:
        stack.cloud.scheduler.duplicate_rate = 0.0
    assert [entry["attempt"] for entry in item["tailHistory"]] == [1, 2, 3]
    assert provider_polls(stack, rid) == 4
    # A late firing of attempt 2, long after the refund became final.
    late = {"provider": "antom", "refundRequestId": rid, "tailAttempt": {"windowId": item["windowId"], "attempt": 2}}
    send(stack, late)
    time.sleep(3)
    assert provider_polls(stack, rid) == 4
    after = store(stack).get(key) or {}
    fields = ("status", "polls", "tailHistory", "windowId", "pollingState", "lastPollAt")
    assert {f: after.get(f) for f in fields} == {f: item.get(f) for f in fields}


def test_a_verified_notification_stops_the_pending_attempt(stack: DevStack) -> None:
    rid = "processing60-success--notified"
    key = item_key("antom", "default", refund_request_id=rid)
    stack.cloud.scheduler.time_scale = 1.0
    try:
        send(stack, {"provider": "antom", "refundRequestId": rid})
        waiting = wait_item(stack, key, lambda i: i.get("pollingState") == "TAIL")
        # The provider's signed push, through the stack's notification endpoint (issue 11).
        target = NotifyTarget(url=f"{stack.notify_base_url}/notify/antom/default", merchant="default")
        stack.sandbox.push("antom", target, "SUCCESS", str(waiting["refundId"]), rid)
        notified = wait_item(stack, key, lambda i: i.get("final") is True)
    finally:
        stack.cloud.scheduler.time_scale = FAST
    assert (notified["status"], notified["source"], notified["pollingState"]) == ("SUCCESS", "notification", "IDLE")
    assert "nextPollAt" not in notified
    time.sleep(4)  # the attempt fires (compressed) and finds the refund final
    assert provider_polls(stack, rid) == 1
    after = store(stack).get(key) or {}
    assert "tailHistory" not in after and after["status"] == "SUCCESS"
    assert [e["detail"]["status"] for e in events_for(stack, rid) if e["detail-type"] == "Refund Inquiry Finished"] == [
        "SUCCESS"
    ]


def test_a_deleted_merchant_profile_ends_the_tail_with_an_error(stack: DevStack) -> None:
    rid = "processing60-success--gone"
    merchant = "gone-merchant"
    prefix = str(stack.outputs["ProfileSecretPrefix"])
    secret = f"{prefix}antom/{merchant}"
    stack.cloud.put_secret(secret, stack.sandbox.profiles["antom"].read_text())
    key = item_key("antom", merchant, refund_request_id=rid)
    stack.cloud.scheduler.time_scale = 1.0
    try:
        send(stack, {"provider": "antom", "merchant": merchant, "refundRequestId": rid})
        wait_item(stack, key, lambda i: i.get("pollingState") == "TAIL")
        stack.client("secretsmanager").delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        # New execution environments (a configuration change), as after the profile cache's age on AWS.
        lambda_client = stack.client("lambda")
        name = stack.cloud.function_name("StartInquiryFunction")
        variables = lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        lambda_client.update_function_configuration(
            FunctionName=name, Environment={"Variables": {**variables, "RECYCLED_FOR_TEST": "1"}}
        )
    finally:
        stack.cloud.scheduler.time_scale = FAST
    item = wait_item(stack, key, idle)
    assert item["status"] == "ERROR" and "no merchant profile secret" in item["reason"]
    assert "nextPollAt" not in item and provider_polls(stack, rid) == 1
    events = [e for e in events_for(stack, rid) if e["detail-type"] == "Refund Inquiry Finished"]
    assert [e["detail"]["status"] for e in events] == ["ERROR"]
