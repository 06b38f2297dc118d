"""ConfirmNotifications=true: a verified notification triggers one inquiry, and the inquiry's answer is stored."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from refund_core.domain.inquiry import item_key
from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import store
from tests.integration.test_notifications import CALLERS, ODD, provider_key, sandbox_polls
from tests.unit import notifications


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # A tight throttle (burst 3, 2 per second), so API Gateway's 429 can be seen under 16 pushes at once; the tests
    # before it push one at a time, well inside it.
    overrides = FAST_POLICY | {
        "ConfirmNotifications": "true",
        "NotificationsBurstLimit": "3",
        "NotificationsRateLimit": "2",
    }
    with DevStack(tmp_path_factory.mktemp("confirm"), parameter_overrides=overrides) as running:
        yield running


def push(stack: DevStack, refund_id: str, status: str) -> requests.Response:
    provider, path = "antom", "/notify/antom/default"
    raw = notifications.body(provider, status, refundRequestId=refund_id, refundId=f"{refund_id} R")
    headers = notifications.headers(provider, provider_key(stack, provider), path, CALLERS[provider], raw)
    return requests.post(stack.notify_base_url + path, data=raw, headers=headers, timeout=30)


def test_a_confirmed_notification_stores_the_inquirys_answer(stack: DevStack) -> None:
    refund_id = f"success--confirmed {ODD}"
    answered = push(stack, refund_id, "SUCCESS")
    assert answered.status_code == 200 and answered.json() == notifications.ACK
    assert sandbox_polls(stack, "antom", refund_id) == 1  # exactly one inquiry
    stored = store(stack).get(item_key("antom", "default", refund_request_id=refund_id))
    assert stored is not None and (stored["status"], stored["source"]) == ("SUCCESS", "notification")


def test_a_notification_the_inquiry_contradicts_is_a_conflict_and_the_answer_is_stored(stack: DevStack) -> None:
    refund_id = f"success--contradicted {ODD}"
    assert push(stack, refund_id, "FAIL").status_code == 200
    assert sandbox_polls(stack, "antom", refund_id) == 1
    stored = store(stack).get(item_key("antom", "default", refund_request_id=refund_id))
    assert stored is not None and stored["status"] == "SUCCESS" and stored["finalConflictCount"] == 1
    assert stored["finalConflict"]["observed"] == {**stored["finalConflict"]["observed"], "status": "FAIL"}
    assert stored["finalConflict"]["observed"]["source"] == "notification"


def test_a_notification_the_inquiry_does_not_confirm_closes_nothing(stack: DevStack) -> None:
    refund_id = f"processing--unconfirmed {ODD}"
    assert push(stack, refund_id, "SUCCESS").status_code == 200
    assert sandbox_polls(stack, "antom", refund_id) == 1
    key = item_key("antom", "default", refund_request_id=refund_id)
    assert store(stack).get(key) is None


def test_the_endpoint_throttles_as_api_gateway_does(stack: DevStack) -> None:
    """Over the route's burst, API Gateway answers 429 itself (the function never runs); the provider retries."""
    url = stack.notify_base_url + "/notify/antom/default"
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: requests.post(url, data=b"{}", timeout=30), range(16)))
    throttled = [answer for answer in answers if answer.status_code == 429]
    assert throttled and all(answer.json() == {"message": "Too Many Requests"} for answer in throttled)
    assert {answer.status_code for answer in answers} <= {401, 429}  # the others reached the function: unsigned
