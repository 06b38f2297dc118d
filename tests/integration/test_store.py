"""The results table on a real moto server: conditional writes, no regression, no lost update, claims."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from refund_core.domain.inquiry import InquiryMessage
from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.store import DynamoDbRefundStore, Window, public_view
from tests.integration.core_support import create_results_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOW = 1_800_000_000.0


@pytest.fixture
def store(dynamodb: DynamoDBClient) -> DynamoDbRefundStore:
    return DynamoDbRefundStore(dynamodb, create_results_table(dynamodb))


def seen(status: Status, **fields: str) -> Observation:
    return Observation(
        provider="antom",
        status=status,
        verified=True,
        refund_id=fields.get("refund_id", "r-1"),
        refund_request_id="rr-1",
        amount_value=fields.get("amount"),
        amount_currency="USD" if "amount" in fields else None,
        result=ProviderResult("SUCCESS", "S", "success"),
    )


MESSAGE = InquiryMessage(provider="antom", refund_request_id="rr-1", refund_id="r-1")


def claimed(store: DynamoDbRefundStore, message: InquiryMessage = MESSAGE, message_id: str = "m1") -> Window:
    key = store.resolve(message, now=NOW).key
    claim = store.claim(message, key, message_id=message_id, now=NOW, window_end=NOW + 60)
    assert claim.proceed, claim.reason
    return claim.window


def test_a_final_status_is_not_overwritten_by_a_later_weaker_observation(store: DynamoDbRefundStore) -> None:
    window = claimed(store)
    store.record(MESSAGE.key, window, seen(Status.SUCCESS, amount="100"), now=NOW)
    store.record(MESSAGE.key, window, seen(Status.PROCESSING), now=NOW + 5)
    store.record(MESSAGE.key, window, seen(Status.NOT_FOUND), now=NOW + 10)
    item = store.get(MESSAGE.key)
    assert item is not None
    assert (item["status"], item["final"], item["polls"]) == ("SUCCESS", True, 3)
    assert item["amount"] == {"value": "100", "currency": "USD"}
    assert item["lastObservation"]["status"] == "NOT_FOUND"


def test_a_failed_poll_leaves_the_stored_status_as_it_was(store: DynamoDbRefundStore) -> None:
    window = claimed(store)
    store.record(MESSAGE.key, window, seen(Status.PROCESSING), now=NOW)
    store.record(
        MESSAGE.key, window, Observation(provider="antom", status=Status.UNKNOWN, reason="HTTP 503"), now=NOW + 5
    )
    item = store.get(MESSAGE.key)
    assert item is not None
    assert (item["status"], item["polls"], item["lastObservation"]["reason"]) == ("PROCESSING", 2, "HTTP 503")


def test_concurrent_writers_lose_no_update_and_the_final_status_wins(store: DynamoDbRefundStore) -> None:
    window = claimed(store)
    observations = [seen(Status.PROCESSING)] * 24 + [seen(Status.SUCCESS)] + [seen(Status.PROCESSING)] * 15
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda obs: store.record(MESSAGE.key, window, obs, now=NOW), observations))
    item = store.get(MESSAGE.key)
    assert item is not None
    assert (item["polls"], item["status"], item["final"]) == (40, "SUCCESS", True)


def close_and_publish(store: DynamoDbRefundStore, window: Window, status: Status, now: float) -> dict[str, Any]:
    """Close a window and mark its result event published (as the service does after PutEvents)."""
    written = store.close(MESSAGE.key, window, status, "window closed", now=now)
    assert written.outcome == "written", written
    assert store.clear_event(MESSAGE.key, written.item["eventId"])
    return written.item


def test_closing_an_unresolved_window_does_not_touch_a_final_item(store: DynamoDbRefundStore) -> None:
    window = claimed(store)
    store.record(MESSAGE.key, window, seen(Status.FAIL), now=NOW)
    outcome = public_view(store.close(MESSAGE.key, window, Status.UNRESOLVED, "window closed", now=NOW + 60).item)
    assert (outcome["status"], outcome["pollingState"]) == ("FAIL", "IDLE")
    assert "pk" not in outcome and "claimMessageId" not in outcome


def test_an_old_window_cannot_close_a_newer_one(store: DynamoDbRefundStore) -> None:
    first = claimed(store)
    close_and_publish(store, first, Status.UNRESOLVED, NOW + 60)
    second = claimed(store, message_id="m2")
    late = store.close(MESSAGE.key, first, Status.UNRESOLVED, "late close from the old loop", now=NOW + 61)
    item = store.get(MESSAGE.key)
    assert item is not None and late.outcome == "superseded"
    assert (second.generation, item["generation"], item["pollingState"]) == (first.generation + 1, 2, "POLLING")


def test_claims_follow_the_idempotency_rules(store: DynamoDbRefundStore) -> None:
    key = MESSAGE.key
    assert claimed(store).generation == 1

    def verdict(message_id: str, message: InquiryMessage = MESSAGE) -> tuple[bool, int]:
        claim = store.claim(message, key, message_id=message_id, now=NOW + 1, window_end=NOW + 61)
        return claim.proceed, claim.generation

    assert verdict("m1") == (True, 2)  # redelivery before the loop started: resume in a new window
    assert verdict("m2") == (False, 0)  # a poll is running
    window = Window(2, store.get(key)["windowId"])  # type: ignore[index]
    assert store.set_execution(key, window, "arn:aws:states:us-east-1:123456789012:execution:sm:x")
    assert verdict("m1") == (False, 0)  # redelivery after the loop started
    store.record(key, window, seen(Status.SUCCESS), now=NOW + 2)
    close_and_publish(store, window, Status.SUCCESS, NOW + 2)
    assert verdict("m3") == (False, 0)  # final
    forced = InquiryMessage(provider="antom", refund_request_id="rr-1", refund_id="r-1", force=True)
    assert verdict("m4", forced) == (True, 3)


def test_a_refund_id_finds_the_item_keyed_by_the_request_id(store: DynamoDbRefundStore) -> None:
    claimed(store)
    assert store.key_for_refund_id("antom", "default", "r-1") == MESSAGE.key
    assert store.key_for_refund_id("antom", "default", "r-unknown") is None


def count_updates(client: DynamoDBClient) -> list[str]:
    """Every UpdateItem the client sends from now on (botocore's event hook, before the request leaves)."""
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.UpdateItem", lambda **_: calls.append("UpdateItem"))
    return calls


def test_the_last_observation_and_the_close_are_one_write(store: DynamoDbRefundStore, dynamodb: DynamoDBClient) -> None:
    window = claimed(store)
    writes = count_updates(dynamodb)
    written = store.record_and_close(
        MESSAGE.key, window, seen(Status.SUCCESS, amount="7"), Status.SUCCESS, None, now=NOW
    )
    outcome = public_view(written.item)
    assert len(writes) == 1
    assert (outcome["status"], outcome["final"], outcome["pollingState"], outcome["polls"]) == (
        "SUCCESS",
        True,
        "IDLE",
        1,
    )
    assert outcome["amount"] == {"value": "7", "currency": "USD"}
    assert outcome["resolvedAt"] == outcome["lastPollAt"]
    assert outcome["eventPending"] is True and outcome["eventId"]  # the outbox flag is part of the same write
    assert "pk" not in outcome


def test_an_unresolved_close_with_a_weaker_observation_keeps_the_final_status(store: DynamoDbRefundStore) -> None:
    window = claimed(store)
    store.record(MESSAGE.key, window, seen(Status.FAIL), now=NOW)
    written = store.record_and_close(
        MESSAGE.key, window, seen(Status.PROCESSING), Status.UNRESOLVED, "window closed", now=NOW + 60
    )
    outcome = written.item
    assert (outcome["status"], outcome["final"], outcome["pollingState"], outcome["polls"]) == ("FAIL", True, "IDLE", 2)
    assert outcome["lastObservation"]["status"] == "PROCESSING"


def test_an_old_window_writes_nothing_once_a_newer_window_owns_the_item(store: DynamoDbRefundStore) -> None:
    first = claimed(store)
    close_and_publish(store, first, Status.UNRESOLVED, NOW + 60)
    second = claimed(store, message_id="m2")
    late = store.record_and_close(MESSAGE.key, first, seen(Status.SUCCESS), Status.SUCCESS, None, now=NOW + 61)
    assert late.outcome == "superseded"
    item = store.get(MESSAGE.key)
    assert item is not None
    assert (item["status"], item["generation"], item["pollingState"]) == ("UNRESOLVED", second.generation, "POLLING")


def test_a_remark_is_stored_as_remark_never_as_the_fail_reason(store: DynamoDbRefundStore) -> None:
    # AlphaPay's refund.description is the merchant's own remark (seed 002:62-64), not why the refund failed.
    window = claimed(store)
    failed = Observation(
        provider="alphapay",
        status=Status.FAIL,
        verified=True,
        refund_id="r-1",
        refund_request_id="rr-1",
        description="customer changed their mind",
        result=ProviderResult("SUCCESS", "S", "success"),
    )
    store.record(MESSAGE.key, window, failed, now=NOW)
    item = store.get(MESSAGE.key)
    assert item is not None
    assert (item["status"], item["remark"], item.get("failReason")) == ("FAIL", "customer changed their mind", None)
