"""The store and service rules of a verified notification, on a real moto server (the provider's reading of the
notification is given: its dialects are tested in tests/unit/test_notification_dialects.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from refund_core.domain.outcome import Observation, Status
from refund_core.providers import ReceivedNotification
from refund_core.service import ResultEventPendingError
from tests.integration.core_support import Core, answer, eventually, make_core
from tests.unit import notifications

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REFUND = "退款 a/b.c:<script> 1"
NOTE = ReceivedNotification("/notify/antom/default", {}, b"{}", ("signature",))


@pytest.fixture
def service(moto_endpoint: str, dynamodb: DynamoDBClient) -> Iterator[Core]:
    yield make_core(moto_endpoint, dynamodb)


def notified(core: Core, status: Status) -> None:
    """The scripted provider reads the next notification as a verified ``status`` for REFUND."""
    observation = replace(answer(status, refund_request_id=REFUND, refund_id="R-1"), reason="notification")

    def read_notification(notification: ReceivedNotification, *, now: float | None = None) -> Observation:
        return observation

    core.provider.read_notification = read_notification  # type: ignore[attr-defined]
    core.provider.acknowledgement = lambda: b'{"result":{}}'  # type: ignore[attr-defined]


def test_a_window_whose_event_is_still_pending_is_announced_before_the_notification_closes_the_refund(
    service: Core,
) -> None:
    core = service
    started = core.send({"provider": "antom", "refundRequestId": REFUND})
    assert started.action == "polling" and started.execution_arn
    state = core.execution_input(started.execution_arn)
    core.clock.now += 120  # past the window: the next poll closes it UNRESOLVED
    core.fail_put_events(1)
    with pytest.raises(ResultEventPendingError):
        core.service.poll(state)
    notified(core, Status.SUCCESS)

    result = core.service.notify("antom", "default", NOTE)

    assert result.outcome == "written"
    events = eventually(lambda: (found := core.capture.drain()) and len(found) >= 2 and found) or []
    assert [(e["detail"]["status"], e["detail"].get("source")) for e in events] == [
        ("UNRESOLVED", None),
        ("SUCCESS", "notification"),
    ]
    assert len({e["detail"]["eventId"] for e in events}) == 2


def test_the_loop_ends_on_a_window_the_notification_closed_without_asking_the_provider(service: Core) -> None:
    core = service
    started = core.send({"provider": "antom", "refundRequestId": REFUND})
    assert started.execution_arn
    state = core.execution_input(started.execution_arn)
    notified(core, Status.FAIL)
    assert core.service.notify("antom", "default", NOTE).outcome == "closed"
    asked = len(core.provider.queries)

    poll = core.service.poll(state)

    assert len(core.provider.queries) == asked
    assert (poll.decision.next, poll.decision.status, poll.state["decision"]["reason"]) == (
        "done",
        Status.FAIL,
        "final by notification",
    )
    assert poll.state["polls"] == state["polls"] and not poll.provider_called


def test_a_non_final_notification_writes_nothing(service: Core) -> None:
    core = service
    notified(core, Status.PROCESSING)
    assert core.service.notify("antom", "default", NOTE).outcome == "ignored"
    assert core.items() == {}


def test_the_acknowledgement_body_is_returned_as_the_provider_gives_it(service: Core) -> None:
    core = service
    notified(core, Status.SUCCESS)
    assert core.service.notify("antom", "default", NOTE).acknowledgement == b'{"result":{}}'
    assert notifications.ACK["result"]["resultStatus"] == "S"


def test_a_poll_in_flight_when_a_notification_closes_its_window_leaves_the_announcement_to_the_notification(
    service: Core,
) -> None:
    """Found by the notification chaos load: a poll past its read whose write then finds the window closed by a
    notification published the window's event too, while the notification's handler published it: two copies."""
    core = service
    started = core.send({"provider": "antom", "refundRequestId": REFUND})
    assert started.execution_arn
    state = core.execution_input(started.execution_arn)
    key = state["inquiry"]["key"]
    core.provider.queue(REFUND, answer(Status.SUCCESS, refund_request_id=REFUND, refund_id="R-1"))
    notification = replace(answer(Status.SUCCESS, refund_request_id=REFUND, refund_id="R-1"), reason="notification")
    # The notification's handler has written (its publish comes next) while the poll is past its read.
    closed = core.service.store.record_notification(key, notification, now=core.clock())
    assert closed.outcome == "closed"

    poll = core.service.poll_once(core.service.adapters.adapter("antom", "default"), state)
    core.service.publish_pending(key, closed.item)  # the handler goes on: it publishes what it closed

    assert (poll.decision.next, poll.decision.status) == ("done", Status.SUCCESS)
    events = eventually(lambda: core.capture.drain()) or []
    time.sleep(1)
    events += core.capture.drain()
    assert [(e["detail"]["status"], e["detail"].get("source")) for e in events] == [("SUCCESS", "notification")]
