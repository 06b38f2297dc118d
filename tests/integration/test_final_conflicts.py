"""A stored final status never flips: the opposite final answer is recorded as a conflict and announced once."""

from __future__ import annotations

import pytest

from refund_core.domain.outcome import Status
from refund_core.service import ResultEventPendingError
from tests.integration.core_support import Core, answer, core  # the fixture

__all__ = ["core"]


@pytest.mark.parametrize(("first", "then"), [(Status.SUCCESS, Status.FAIL), (Status.FAIL, Status.SUCCESS)])
def test_the_opposite_final_answer_on_a_forced_poll_keeps_the_status_and_records_a_conflict(
    core: Core, first: Status, then: Status
) -> None:
    body = {"provider": "antom", "merchant": "m-9", "refundRequestId": "R/flip 1"}
    core.provider.queue("R/flip 1", answer(first), answer(then, verified=True))
    assert core.send(body).action == "recorded"
    first_events = core.capture.drain()
    core.clock.now += 600

    forced = core.send(body | {"force": True})

    assert forced.action == "recorded" and forced.poll is not None
    assert forced.poll.final_status_conflicts == 1
    item = core.store.get("antom#m-9#rr:R/flip 1")
    assert item is not None
    assert (item["status"], item["final"], item["pollingState"], item["finalConflictCount"]) == (
        first.value,
        True,
        "IDLE",
        1,
    )
    conflict = item["finalConflict"]
    assert (conflict["stored"]["status"], conflict["stored"]["verified"]) == (first.value, True)
    assert (conflict["observed"]["status"], conflict["observed"]["verified"]) == (then.value, True)
    assert conflict["stored"]["at"] and conflict["observed"]["at"] > conflict["stored"]["at"]
    events = core.capture.drain()
    by_type = {e["detail-type"]: e["detail"] for e in events}
    assert len(first_events) == 1 and len(events) == 2
    assert by_type["Refund Inquiry Finished"]["status"] == first.value
    announced = by_type["Refund Final Status Conflict"]
    assert announced["status"] == first.value and announced["finalConflict"]["observed"]["status"] == then.value
    assert announced["eventId"] != by_type["Refund Inquiry Finished"]["eventId"]


def test_a_conflict_event_that_failed_to_publish_is_published_once_on_redelivery(core: Core) -> None:
    body = {"provider": "alipayplus", "refundRequestId": "R.c2"}
    core.provider.queue(
        "R.c2", answer(Status.SUCCESS, provider="alipayplus"), answer(Status.FAIL, provider="alipayplus")
    )
    core.send(body)
    core.capture.drain()
    core.fail_put_events(2)  # both the result and the conflict event are refused

    with pytest.raises(ResultEventPendingError):
        core.send(body | {"force": True}, message_id="m-force")
    assert core.capture.drain() == []
    core.send(body | {"force": True}, message_id="m-force")
    core.send(body | {"force": True}, message_id="m-force")

    types = sorted(e["detail-type"] for e in core.capture.drain())
    assert types == ["Refund Final Status Conflict", "Refund Inquiry Finished"]
    assert core.store.get("alipayplus#default#rr:R.c2")["status"] == "SUCCESS"  # type: ignore[index]


def test_the_same_final_answer_again_is_no_conflict(core: Core) -> None:
    body = {"provider": "antom", "refundRequestId": "R.same"}
    core.provider.queue("R.same", answer(Status.SUCCESS), answer(Status.SUCCESS))
    core.send(body)
    forced = core.send(body | {"force": True})
    assert forced.poll is not None and forced.poll.final_status_conflicts == 0
    assert "finalConflict" not in core.store.get("antom#default#rr:R.same")  # type: ignore[operator]
