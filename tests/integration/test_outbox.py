"""Exactly one result event per closed window, whatever happens to PutEvents or to the process in between.

The events are read from a queue subscribed to the bus on the moto server, as a merchant's consumer reads them;
PutEvents failures come from the real EventBridge client wrapped so that chosen calls fail.
"""

from __future__ import annotations

from typing import Any

import pytest

from refund_core.domain.outcome import Status
from refund_core.service import ResultEventPendingError
from tests.integration.core_support import Core, answer, core  # the fixture

__all__ = ["core"]


class ProcessDied(BaseException):
    """The Lambda runtime killed the process (timeout, out of memory): nothing after this line runs."""


def finished(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["detail-type"] == "Refund Inquiry Finished"]


@pytest.mark.parametrize("mode", ["refused", "timeout"])
def test_a_failed_put_events_is_published_once_when_the_message_is_redelivered(core: Core, mode: str) -> None:
    body = {"provider": "alipayplus", "merchant": "shop-2", "refundRequestId": "退款 1/2"}
    core.provider.queue("退款 1/2", answer(Status.SUCCESS, provider="alipayplus"))
    core.fail_put_events(1, mode)

    with pytest.raises(ResultEventPendingError):  # the starter reports the record: SQS redelivers it
        core.send(body, message_id="m-1")
    key = "alipayplus#shop-2#rr:退款 1/2"
    item = core.store.get(key)
    assert item is not None and (item["status"], item["eventPending"]) == ("SUCCESS", True)
    assert core.capture.drain() == []

    again = core.send(body, message_id="m-1")
    third = core.send(body, message_id="m-1")

    assert (again.action, again.republished, third.republished) == ("skipped", 1, 0)
    events = core.capture.drain()
    assert len(events) == 1
    assert events[0]["detail"]["eventId"] == item["eventId"]
    assert events[0]["detail"]["status"] == "SUCCESS" and "eventPending" not in events[0]["detail"]
    assert core.store.get(key)["eventPending"] is False  # type: ignore[index]


def test_an_event_delivered_whose_answer_was_lost_is_the_one_duplicate_and_carries_the_same_event_id(
    core: Core,
) -> None:
    body = {"provider": "antom", "refundRequestId": "R:lost"}
    core.provider.queue("R:lost", answer(Status.SUCCESS))
    core.fail_put_events(1, "lost-answer")
    with pytest.raises(ResultEventPendingError):
        core.send(body, message_id="m-lost")
    core.send(body, message_id="m-lost")

    events = core.capture.drain()
    assert len(events) == 2 and len({e["detail"]["eventId"] for e in events}) == 1  # consumers dedupe by it


def test_a_process_killed_between_the_close_and_the_publish_publishes_once_on_redelivery(core: Core) -> None:
    body = {"provider": "antom", "refundRequestId": "R.kill"}
    core.provider.queue("R.kill", answer(Status.FAIL))
    publish = core.service.events.publish

    def die(*args: object, **kwargs: object) -> None:
        raise ProcessDied

    core.service.events.publish = die  # type: ignore[method-assign]
    with pytest.raises(ProcessDied):
        core.send(body, message_id="m-kill")
    core.service.events.publish = publish  # type: ignore[method-assign]

    core.send(body, message_id="m-kill")
    core.send(body, message_id="m-kill")

    events = core.capture.drain()
    assert [(e["detail"]["status"], e["detail"]["refundRequestId"]) for e in events] == [("FAIL", "R.kill")]


def test_a_retried_poll_publishes_its_closed_windows_event_once(core: Core) -> None:
    started = core.send({"provider": "antom", "refundRequestId": "R 2"})
    assert started.action == "polling" and started.poll is not None
    core.clock.now += 5
    core.provider.queue("R 2", answer(Status.SUCCESS), answer(Status.FAIL))
    core.fail_put_events(1)

    with pytest.raises(ResultEventPendingError):  # the state machine retries the task
        core.service.poll(started.poll.state)
    retried = core.service.poll(started.poll.state)

    assert (retried.decision.next, retried.decision.status) == ("done", Status.SUCCESS)
    events = core.capture.drain()
    assert len(events) == 1 and events[0]["detail"]["status"] == "SUCCESS" and events[0]["detail"]["eventId"]
    item = core.store.get("antom#default#rr:R 2")
    assert item is not None and (item["polls"], item["status"]) == (2, "SUCCESS")  # the retry wrote nothing


def test_the_next_message_publishes_a_pending_event_before_opening_its_own_window(core: Core) -> None:
    body = {"provider": "alphapay", "merchant": "a-b", "refundId": "R:3"}
    started = core.send(body)
    assert started.poll is not None
    core.clock.now += 61  # the window runs out: the close records UNRESOLVED
    core.fail_put_events(1)
    with pytest.raises(ResultEventPendingError):
        core.service.poll(started.poll.state)
    # The state machine's retries ran out too; much later the merchant asks again.
    core.clock.now += 3600
    core.provider.queue("R:3", answer(Status.SUCCESS, provider="alphapay"))

    later = core.send(body)

    assert (later.action, later.republished) == ("recorded", 1)
    events = finished(core.capture.drain())
    assert [e["detail"]["status"] for e in events] == ["UNRESOLVED", "SUCCESS"]
    assert len({e["detail"]["eventId"] for e in events}) == 2


def test_a_duplicate_arriving_while_the_closer_publishes_leaves_the_event_to_the_closer(core: Core) -> None:
    body = {"provider": "antom", "refundRequestId": "R 3/dup"}
    core.provider.queue("R 3/dup", answer(Status.SUCCESS))
    core.fail_put_events(1)  # stands for "the closer has not cleared the flag yet"
    with pytest.raises(ResultEventPendingError):
        core.send(body, message_id="m-closer")

    duplicate = core.send(body, message_id="m-duplicate")  # another copy of the message, moments later
    assert (duplicate.action, duplicate.republished) == ("skipped", 0)
    assert core.capture.drain() == []

    core.send(body, message_id="m-closer")  # the closer's message comes back: it publishes
    core.clock.now += 120
    core.send(body, message_id="m-late")  # long after: nothing left to publish
    assert len(core.capture.drain()) == 1


def test_the_sweep_publishes_an_event_nothing_touches_again_once_after_the_grace(core: Core) -> None:
    body = {"provider": "alipayplus", "merchant": "shop_9-x", "refundRequestId": "退款 sweep/1.2:三"}
    core.provider.queue("退款 sweep/1.2:三", answer(Status.FAIL, provider="alipayplus"))
    core.fail_put_events(10)  # the closer's publish and every retry of it fail; no message comes back
    for _ in range(3):
        with pytest.raises(ResultEventPendingError):
            core.send(body, message_id="m-sweep")
    core.fail_put_events(0)  # EventBridge works again

    early = core.service.sweep_outbox()  # inside the grace: the event is still the closer's
    assert (early.items, early.published) == (0, 0) and core.capture.drain() == []

    core.clock.now += 61
    swept = core.service.sweep_outbox()
    again = core.service.sweep_outbox()

    assert (swept.items, swept.published, swept.failed) == (1, 1, 0)
    assert (again.items, again.published) == (0, 0)
    events = core.capture.drain()
    key = "alipayplus#shop_9-x#rr:退款 sweep/1.2:三"
    item = core.store.get(key)
    assert item is not None and item["eventPending"] is False
    assert [(e["detail"]["status"], e["detail"]["eventId"]) for e in events] == [("FAIL", item["eventId"])]
    assert "pendingSince" not in item and "pendingSince" not in events[0]["detail"]


def test_a_sweep_whose_publish_fails_again_keeps_the_event_for_the_next_sweep(core: Core) -> None:
    body = {"provider": "antom", "refundRequestId": "R sweep 2"}
    core.provider.queue("R sweep 2", answer(Status.SUCCESS))
    core.fail_put_events(2)
    with pytest.raises(ResultEventPendingError):
        core.send(body, message_id="m-sweep-2")
    core.clock.now += 120

    failed = core.service.sweep_outbox()
    swept = core.service.sweep_outbox()

    assert (failed.published, failed.failed, swept.published, swept.failed) == (0, 1, 1, 0)
    assert [e["detail"]["status"] for e in finished(core.capture.drain())] == ["SUCCESS"]


def _pending_refunds(core: Core, count: int, prefix: str) -> list[str]:
    """``count`` refunds recorded final whose events EventBridge refused, left for the sweep."""
    ids = [f"{prefix} {n}/é" for n in range(count)]
    for rid in ids:
        core.provider.queue(rid, answer(Status.SUCCESS))
        core.fail_put_events(1)
        with pytest.raises(ResultEventPendingError):
            core.send({"provider": "antom", "refundRequestId": rid}, message_id=f"m {rid}")
        core.clock.now += 1  # distinct pendingSince: the index returns them oldest first
    core.fail_put_events(0)
    core.clock.now += 120
    return ids


def test_one_sweep_goes_through_every_page_of_a_backlog(core: Core) -> None:
    ids = _pending_refunds(core, 5, "R backlog")

    swept = core.service.sweep_outbox(page=2)

    assert (swept.items, swept.published, swept.failed) == (5, 5, 0)
    events = finished(core.capture.drain())
    assert sorted(e["detail"]["refundRequestId"] for e in events) == sorted(ids)


def test_events_eventbridge_keeps_refusing_do_not_hold_back_the_ones_behind_them(core: Core) -> None:
    ids = _pending_refunds(core, 5, "R poison")
    core.fail_put_events(2)  # the two oldest fail again: the first page

    swept = core.service.sweep_outbox(page=2)

    assert (swept.items, swept.published, swept.failed) == (5, 3, 2)
    published = {e["detail"]["refundRequestId"] for e in finished(core.capture.drain())}
    assert published == set(ids[2:])
    retried = core.service.sweep_outbox(page=2)  # EventBridge works again: the next sweep clears the rest
    assert (retried.items, retried.published, retried.failed) == (2, 2, 0)
