"""RecordEveryPoll=false (the Express cost mode): a poll writes the refund's item only when the status changes,
and the close writes the whole poll count. Writes are counted on the wire with botocore's event hooks on the
DynamoDB client the store really uses (moto server behind it)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from refund_core.domain.inquiry import InquiryMessage
from refund_core.domain.outcome import Status
from refund_core.service import InquiryService
from tests.integration.core_support import Core, answer, core  # the fixture

__all__ = ["core"]


class WriteCounter:
    """Counts DynamoDB write calls (UpdateItem, PutItem) by the key they write, as botocore sends them."""

    def __init__(self, client: Any) -> None:
        self.by_key: Counter[str] = Counter()
        for operation in ("UpdateItem", "PutItem"):
            client.meta.events.register(f"provide-client-params.dynamodb.{operation}", self._count)

    def _count(self, params: dict[str, Any], **_: Any) -> None:
        key = (params.get("Key") or params.get("Item") or {}).get("pk", {}).get("S", "?")
        self.by_key[key] += 1


def poll_to_the_end(core: Core, service: InquiryService, refund: str, *answers: Status) -> dict[str, Any]:
    """Send the refund's message, then poll as the state machine would until the window closes."""
    core.provider.queue(refund, *(answer(status, refund_request_id=refund) for status in answers))
    message = InquiryMessage.from_body({"provider": "antom", "refundRequestId": refund})
    started = service.start(message, message_id=uuid.uuid4().hex, executions=core.executions)
    assert started.poll is not None
    state = started.poll.state
    while state["decision"]["next"] == "wait":
        core.clock.now += state["decision"]["waitSeconds"]
        state = service.poll(state).state
    return state


def cheap(core: Core) -> InquiryService:
    return InquiryService(
        core.store, core.adapters, core.events, core.service.policies, clock=core.clock, record_every_poll=False
    )


def test_polls_that_change_nothing_are_not_written_and_the_close_counts_them(core: Core) -> None:
    writes = WriteCounter(core.dynamodb)
    refund = f"cheap-{uuid.uuid4().hex[:8]}"
    key = f"antom#default#rr:{refund}"
    state = poll_to_the_end(core, cheap(core), refund, *[Status.PROCESSING] * 11, Status.SUCCESS)
    assert state["polls"] == 12 and state["decision"]["status"] == "SUCCESS"
    # The claim; the first poll with the execution's ARN (one write); nothing for polls 2-11; the close; the
    # outbox flag cleared.
    assert writes.by_key[key] == 4
    item = core.items()[key]
    assert (item["status"], item["polls"], item["pollingState"], item["pollsLive"]) == ("SUCCESS", 12, "IDLE", False)
    assert item["lastObservation"]["status"] == "SUCCESS"
    [event] = [e["detail"] for e in core.capture.drain() if e["detail"].get("refundRequestId") == refund]
    assert event["polls"] == 12 and "pollsLive" not in event


def test_every_status_change_is_written_with_the_polls_so_far(core: Core) -> None:
    writes = WriteCounter(core.dynamodb)
    refund = f"cheap-{uuid.uuid4().hex[:8]}"
    key = f"antom#default#rr:{refund}"
    service = cheap(core)
    core.provider.queue(refund, *(answer(s, refund_request_id=refund) for s in [Status.NOT_FOUND] * 2))
    message = InquiryMessage.from_body({"provider": "antom", "refundRequestId": refund})
    started = service.start(message, message_id=uuid.uuid4().hex, executions=core.executions)
    assert started.poll is not None
    state = service.poll({**started.poll.state}).state  # NOT_FOUND again: not written
    assert core.items()[key]["polls"] == 1
    core.provider.queue(refund, answer(Status.PROCESSING, refund_request_id=refund))
    state = service.poll(state).state  # the status changes: written, with the poll before it
    item = core.items()[key]
    assert (item["status"], item["polls"], item["pollsLive"]) == ("PROCESSING", 3, False)
    assert writes.by_key[key] == 3  # claim, first poll with the execution ARN, the change


def test_every_poll_is_written_by_default(core: Core) -> None:
    writes = WriteCounter(core.dynamodb)
    refund = f"live-{uuid.uuid4().hex[:8]}"
    key = f"antom#default#rr:{refund}"
    poll_to_the_end(core, core.service, refund, *[Status.PROCESSING] * 11, Status.SUCCESS)
    assert writes.by_key[key] == 15  # claim, 11 recorded polls, the ARN, the close, the outbox flag
    item = core.items()[key]
    assert item["polls"] == 12 and "pollsLive" not in item


def test_a_loop_poll_recorded_before_the_starters_first_keeps_its_answer_and_every_poll_counts(core: Core) -> None:
    # The starter writes its first answer with the execution's ARN after StartExecution: a loop fast enough to poll
    # and record first (a status change) must not be overwritten by that older answer, nor lose its count.
    refund = f"cheap-{uuid.uuid4().hex[:8]}"
    key = f"antom#default#rr:{refund}"
    service = cheap(core)
    core.provider.queue(
        refund, answer(Status.NOT_FOUND, refund_request_id=refund), answer(Status.PROCESSING, refund_request_id=refund)
    )
    polled: list[dict[str, Any]] = []

    class LoopPollsFirst:
        def start(self, name: str, state: Mapping[str, Any]) -> str:
            arn = core.executions.start(name, state)
            core.clock.now += state["decision"]["waitSeconds"]
            polled.append(service.poll(state).state)  # recorded: PROCESSING differs from NOT_FOUND
            return arn

    message = InquiryMessage.from_body({"provider": "antom", "refundRequestId": refund})
    started = service.start(message, message_id=uuid.uuid4().hex, executions=LoopPollsFirst())
    assert started.action == "polling" and polled
    item = core.items()[key]
    assert (item["status"], item["polls"], item["executionArn"]) == ("PROCESSING", 2, started.execution_arn)
    assert item["lastObservation"]["status"] == "PROCESSING"
