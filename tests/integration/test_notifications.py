"""Provider notifications end to end: signed pushes POSTed over HTTP to the local stack's endpoint (the HTTP API on
loopback, the real Notify function, moto, the real ASL), signed in the test with the sandbox's provider keys."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from refund_core.domain.inquiry import item_key
from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.sandbox.credentials import PROFILE_SPECS
from tests.integration.stack_support import entered, history, send, store, wait_execution
from tests.unit import notifications

# Polls 3 s apart: a notification sent just after a poll lands well before the next one.
POLICY = FAST_POLICY | {
    "AntomIntervalSeconds": "3",
    "AlipayPlusIntervalSeconds": "3",
    "AlphaPayIntervalSeconds": "3",
    **{f"{provider}WindowSeconds": "40" for provider in ("Antom", "AlipayPlus", "AlphaPay")},
}
PROVIDERS = ("antom", "alipayplus", "alphapay")
CALLERS = {spec.provider: spec.caller_id for spec in PROFILE_SPECS if spec.name == spec.provider}
# Free text after the sandbox script: the whole range a merchant's ids may take.
ODD = "退款 a/b.c:<script>"
_seq = iter(range(1_000_000))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("notify"), parameter_overrides=POLICY) as running:
        yield running


def provider_key(stack: DevStack, provider: str) -> rsa.RSAPrivateKey:
    """The sandbox's provider private key (the key the provider signs its pushes with)."""
    return stack.sandbox.provider_key(provider)


def refund(script: str) -> str:
    return f"{script}--{next(_seq)} {ODD}"


def ids(provider: str, refund_id: str) -> dict[str, str]:
    """The ids a message and a notification carry (AlphaPay refunds are known by the provider's refundId)."""
    return {"refundId": refund_id} if provider == "alphapay" else {"refundRequestId": refund_id}


def key_of(provider: str, refund_id: str) -> str:
    return item_key(provider, "default", **{k: v for k, v in _snake(ids(provider, refund_id)).items()})


def _snake(values: dict[str, str]) -> dict[str, str]:
    return {"refund_id" if k == "refundId" else "refund_request_id": v for k, v in values.items()}


def push(
    stack: DevStack,
    provider: str,
    raw: bytes,
    *,
    key: rsa.RSAPrivateKey | None = None,
    merchant: str = "default",
    request_time: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    path = f"/notify/{provider}/{merchant}"
    signed = notifications.headers(
        provider, key or provider_key(stack, provider), path, CALLERS[provider], raw, request_time=request_time
    )
    return requests.post(stack.notify_base_url + path, data=raw, headers=headers or signed, timeout=30)


def wait_for(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def sandbox_polls(stack: DevStack, provider: str, refund_id: str) -> int:
    record = stack.sandbox.refund(provider, refund_id)
    return int(record["polls"]) if record else 0


def events_for(stack: DevStack, refund_id: str, seconds: float = 3) -> list[dict[str, Any]]:
    """Result events about this refund that arrive within ``seconds`` (others are dropped: ids are unique)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for event in stack.result_events(wait_seconds=1):
            if refund_id in (event["detail"].get("refundId"), event["detail"].get("refundRequestId")):
                found.append(event)
    return found


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_notification_finalises_a_polling_refund_and_its_loop_ends_without_calling_the_provider(
    stack: DevStack, provider: str
) -> None:
    refund_id = refund("processing")
    key = key_of(provider, refund_id)
    send(stack, {"provider": provider, **ids(provider, refund_id)})
    results = store(stack)
    item = wait_for(lambda: (found := results.get(key)) and found.get("executionArn") and found)
    before = sandbox_polls(stack, provider, refund_id)
    wait_for(lambda: sandbox_polls(stack, provider, refund_id) > before)  # a poll just happened: the loop runs
    answered = push(stack, provider, notifications.body(provider, "SUCCESS", **ids(provider, refund_id)))
    polls_at_notification = sandbox_polls(stack, provider, refund_id)
    assert answered.status_code == 200 and answered.json() == notifications.ACK

    execution = wait_execution(stack, item["executionArn"], timeout=20)
    assert execution["status"] == "SUCCEEDED"
    stored = results.get(key)
    assert stored is not None
    assert (stored["status"], stored["final"], stored["source"], stored["pollingState"]) == (
        "SUCCESS",
        True,
        "notification",
        "IDLE",
    )
    # The loop's next step ended it without calling the provider, and its history says why.
    assert sandbox_polls(stack, provider, refund_id) == polls_at_notification
    trace = history(stack, item["executionArn"])
    last_output = json.loads(
        next(e for e in reversed(trace) if e["type"] == "TaskStateExited")["stateExitedEventDetails"]["output"]
    )
    assert last_output["decision"]["reason"] == "final by notification"
    assert entered(trace, "Refund succeeded") == 1
    events = events_for(stack, refund_id)
    assert len(events) == 1, events
    assert events[0]["detail"]["source"] == "notification" and events[0]["detail"]["status"] == "SUCCESS"


def test_a_refund_never_polled_is_stored_and_a_later_message_is_answered_from_the_table(stack: DevStack) -> None:
    provider, refund_id = "antom", refund("fail")
    answered = push(stack, provider, notifications.body(provider, "FAIL", refundRequestId=refund_id, refundId="R1"))
    assert answered.status_code == 200 and answered.json() == notifications.ACK
    stored = store(stack).get(key_of(provider, refund_id))
    assert stored is not None and (stored["status"], stored["source"], stored["polls"]) == ("FAIL", "notification", 0)
    assert len(events_for(stack, refund_id)) == 1
    # Found by the provider's id too (the notification bound it).
    assert store(stack).find_key(provider, "default", refund_id="R1") == key_of(provider, refund_id)
    send(stack, {"provider": provider, "refundRequestId": refund_id})
    time.sleep(4)  # the starter's batch window and run
    assert sandbox_polls(stack, provider, refund_id) == 0  # never asked: the table answered
    assert events_for(stack, refund_id, seconds=1) == []
    assert not store(stack).get(key_of(provider, refund_id)).get("executionArn")  # type: ignore[union-attr]


def test_duplicates_and_retries_with_a_new_request_time_are_idempotent(stack: DevStack) -> None:
    provider, refund_id = "alipayplus", refund("success")
    raw = notifications.body(provider, "SUCCESS", refundRequestId=refund_id, refundId="W1")
    path = f"/notify/{provider}/default"
    first = notifications.headers(provider, provider_key(stack, provider), path, CALLERS[provider], raw)
    for _ in range(2):  # the very same request twice
        answered = requests.post(stack.notify_base_url + path, data=raw, headers=first, timeout=30)
        assert answered.status_code == 200 and answered.json() == notifications.ACK
    stored = store(stack).get(key_of(provider, refund_id))
    # A retry: Antom's schedule sends it again later, with a new Request-Time.
    later = str(int((datetime.now(UTC) + timedelta(seconds=2)).timestamp() * 1000))
    assert push(stack, provider, raw, request_time=later).status_code == 200
    again = store(stack).get(key_of(provider, refund_id))
    assert stored is not None and again is not None
    assert (again["status"], again["eventId"], again["finalAt"]) == (
        stored["status"],
        stored["eventId"],
        stored["finalAt"],
    )
    assert len(events_for(stack, refund_id)) == 1


def _stale(provider: str) -> str:
    old = datetime.now(UTC) - timedelta(hours=26)
    return old.isoformat(timespec="seconds") if provider == "alphapay" else str(int(old.timestamp() * 1000))


REFUSALS = [
    "forged",
    "unsigned",
    "wrong-key",
    "stale-replay",
    "oversized",
    "too-large-for-the-gateway",
    "unknown-merchant",
    "unknown-provider",
]


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_notifications_change_nothing(stack: DevStack, case: str) -> None:
    provider = "alphapay" if case == "stale-replay" else "antom"
    refund_id = refund("processing")
    raw = notifications.body(provider, "SUCCESS", **ids(provider, refund_id))
    path = f"/notify/{provider}/default"
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    merchant_key = stack.sandbox.merchant_key(provider)
    expected = {"forged": 401, "unsigned": 401, "wrong-key": 401, "stale-replay": 401, "oversized": 413}
    if case == "forged":
        answered = push(stack, provider, raw, key=forger)
    elif case == "unsigned":
        signed = notifications.headers(provider, provider_key(stack, provider), path, CALLERS[provider], raw)
        answered = push(stack, provider, raw, headers={k: v for k, v in signed.items() if k != "Signature"})
    elif case == "wrong-key":  # the merchant's own key, not the provider's
        answered = push(stack, provider, raw, key=merchant_key)
    elif case == "stale-replay":
        answered = push(stack, provider, raw, request_time=_stale(provider))
    elif case == "oversized":
        answered = push(stack, provider, raw[:-1] + b"," + b'"pad":"' + b"x" * 70_000 + b'"}')
    elif case == "too-large-for-the-gateway":  # API Gateway's 10 MB cap: the function never sees it
        answered = requests.post(stack.notify_base_url + path, data=b"x" * (10 * 1024 * 1024 + 1), timeout=60)
        expected[case] = 413
    elif case == "unknown-merchant":
        answered = push(stack, provider, raw, merchant="nobody")
        expected[case] = 404
    else:
        answered = requests.post(stack.notify_base_url + "/notify/paypal/default", data=raw, timeout=30)
        expected[case] = 404
    assert answered.status_code == expected[case], answered.text
    assert "refund" not in answered.text.lower() and _json(answered) != notifications.ACK
    assert store(stack).find_key(provider, "default", **_snake(ids(provider, refund_id))) is None
    assert store(stack).get(key_of(provider, refund_id)) is None
    assert events_for(stack, refund_id, seconds=1) == []


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def test_a_fail_notification_after_a_stored_success_records_a_conflict_and_keeps_success(stack: DevStack) -> None:
    provider, refund_id = "antom", refund("success")
    key = key_of(provider, refund_id)
    send(stack, {"provider": provider, "refundRequestId": refund_id})
    results = store(stack)
    wait_for(lambda: (found := results.get(key)) and found.get("final"))
    assert len(events_for(stack, refund_id)) == 1  # the poll's own result event
    raw = notifications.body(provider, "FAIL", refundRequestId=refund_id, refundId="C1")
    for _ in range(2):  # the contradiction is acknowledged (it is recorded), and a retry of it adds nothing
        answered = push(stack, provider, raw)
        assert answered.status_code == 200 and answered.json() == notifications.ACK
    stored = results.get(key)
    assert stored is not None and stored["status"] == "SUCCESS" and stored["finalConflictCount"] == 1
    assert stored["finalConflict"]["observed"]["status"] == "FAIL"
    assert stored["finalConflict"]["observed"]["source"] == "notification"
    events = events_for(stack, refund_id)
    assert [event["detail-type"] for event in events] == ["Refund Final Status Conflict"]


def test_the_notification_url_is_on_loopback(stack: DevStack) -> None:
    assert stack.notify_base_url.startswith("http://127.0.0.1:")
    assert quote("/notify/antom/default") == "/notify/antom/default"
