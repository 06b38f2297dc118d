"""A typical refund item stays under 1 KB, so every write of it is one write request unit.

DynamoDB bills a write per started 1 KB of the item, taking the larger of its size before and after the write
(UpdateItem included), and sizes an item as the UTF-8 bytes of its attribute names plus its values
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html). The refund here
carries both ids at their 64-character maximum in CJK (3 bytes each in UTF-8), a merchant name of 64 characters,
a correlation id, and the richest answer a provider gives (amount, refund time, result code and message). The
item's size is measured after every write of its life (claim, polls, close, outbox clear), in both recording
modes, on the real store against moto.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench.common import dynamodb_item_size
from refund_core.domain.inquiry import InquiryMessage
from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.service import InquiryService
from tests.integration.core_support import Core, core  # the fixture

__all__ = ["core"]

WRITE_UNIT_BYTES = 1024


def typical_id(prefix: str, length: int = 64) -> str:
    """An id as merchants send them: mostly ASCII, with two CJK characters, a space, ``/``, ``.`` and ``:`` (4 UTF-8
    bytes more than characters), unique per test run."""
    head = f"{prefix}-退款 2026/12.01:{uuid.uuid4().hex[:8]}-"
    return (head + "0123456789abcdef" * 4)[:length]


def worst_id(prefix: str) -> str:
    """A 64-character id of CJK characters only (3 UTF-8 bytes each: 192 bytes with its unique head)."""
    head = f"{prefix}{uuid.uuid4().hex[:8]}"
    return head + ("退款请求编号" * 11)[: 64 - len(head)]


def rich_answer(status: Status, refund_id: str, refund_request_id: str) -> Observation:
    return Observation(
        provider="antom",
        status=status,
        verified=True,
        refund_id=refund_id,
        refund_request_id=refund_request_id,
        amount_value="123456789",
        amount_currency="USD",
        refund_time="2026-12-01T07:55:00+08:00",
        result=ProviderResult("SUCCESS", "S", "Success"),
        reason=None,  # what the adapters give for a verified, well-formed answer
        latency_ms=123.4,
    )


def largest_item(
    core: Core, *, record_every_poll: bool, refund_id: str, request_id: str, merchant: str, correlation_id: str | None
) -> tuple[int, dict[str, int]]:
    """Send the refund, poll it as the state machine would (11 PROCESSING, then SUCCESS) and size the item before
    every write of it and after the last: what each write is billed on."""
    service = InquiryService(
        core.store,
        core.adapters,
        core.events,
        core.service.policies,
        clock=core.clock,
        record_every_poll=record_every_poll,
    )
    sizes: dict[str, int] = {}

    def size_of(key: str) -> int:
        raw = core.dynamodb.get_item(TableName=core.table, Key={"pk": {"S": key}}, ConsistentRead=True)
        return dynamodb_item_size(raw.get("Item", {}))

    def before_write(params: dict[str, Any], **_: Any) -> None:
        key = params["Key"]["pk"]["S"]
        if key.startswith("antom#"):
            sizes[f"before write {len(sizes) + 1}"] = size_of(key)

    answers = [Status.PROCESSING] * 11 + [Status.SUCCESS]
    core.provider.queue(request_id, *(rich_answer(s, refund_id, request_id) for s in answers))
    body = {
        "provider": "antom",
        "merchant": merchant,
        "refundId": refund_id,
        "refundRequestId": request_id,
        **({"correlationId": correlation_id} if correlation_id else {}),
    }
    core.dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", before_write)
    try:
        message = InquiryMessage.from_body(body)
        started = service.start(message, message_id=str(uuid.uuid4()), executions=core.executions)
        assert started.poll is not None
        state = started.poll.state
        while state["decision"]["next"] == "wait":
            core.clock.now += state["decision"]["waitSeconds"]
            state = service.poll(state).state
    finally:
        core.dynamodb.meta.events.unregister("provide-client-params.dynamodb.UpdateItem", before_write)
    assert state["decision"]["status"] == "SUCCESS" and state["polls"] == 12
    sizes["after the last write"] = size_of(state["inquiry"]["key"])
    return max(sizes.values()), sizes


@pytest.mark.parametrize("record_every_poll", [True, False])
def test_an_id_is_stored_twice_whatever_its_length(core: Core, record_every_poll: bool) -> None:
    # Each id is in the item twice (refundRequestId: the key and its attribute; refundId: its attribute and the
    # refundId index key), and the request id's prefix once more in the execution's name (executionArn); a further
    # full copy of both (the ids bound to the item, once kept in full) made long ids cost half as much again.
    # Compared: ids of 16 and of 64 characters, everything else alike.
    sizes = {}
    ids = {}
    for length in (16, 64):
        ids[length] = refund_id, request_id = typical_id("r", length), typical_id("rr", length)
        sizes[length] = largest_item(
            core,
            record_every_poll=record_every_poll,
            refund_id=refund_id,
            request_id=request_id,
            merchant="default",
            correlation_id=None,
        )
    longer = len(ids[64][1].encode()) - len(ids[16][1].encode())  # bytes each id grew by
    grown = sizes[64][0] - sizes[16][0]
    assert grown <= 5 * longer, f"ids {longer} bytes longer made the item {grown} bytes larger: {sizes}"


def test_the_largest_refund_item_stays_within_two_write_units(core: Core) -> None:
    # Every id and name at its maximum, in CJK: the ids and the merchant alone (the key, the refundId index key,
    # both ids, the merchant) are 931 bytes, so one unit is out of reach in this item's schema; two must hold.
    refund_id, request_id = worst_id("r"), worst_id("rr")
    assert len(refund_id) == len(request_id) == 64
    largest, sizes = largest_item(
        core,
        record_every_poll=False,
        refund_id=refund_id,
        request_id=request_id,
        merchant="m" * 64,
        correlation_id="c" * 64,
    )
    assert largest <= 2 * WRITE_UNIT_BYTES, f"the item grew to {largest} bytes: {sizes}"
