"""One refund = one item = at most one loop, and distinct refunds never share an item or an execution name.

Real moto server (table, Step Functions, EventBridge) through the real service and adapters; only the provider's
answers are scripted.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from refund_core.aws.executions import ExecutionNameConflictError
from refund_core.domain.inquiry import InquiryMessage
from refund_core.domain.outcome import Status
from refund_core.store import SUPERSEDED_REASON, Window
from tests.integration.core_support import Core, answer, core  # the fixture

__all__ = ["core"]

LONG_CJK = "退款编号" * 16  # 64 characters

# Ids that the old names mapped to the same characters, and keys that joined to the same text.
LOOK_ALIKE = {
    "space": {"merchant": "default", "refundRequestId": "R 1"},
    "slash": {"merchant": "default", "refundRequestId": "R/1"},
    "dot": {"merchant": "default", "refundRequestId": "R.1"},
    "colon": {"merchant": "default", "refundRequestId": "R:1"},
    "cjk a": {"merchant": "default", "refundRequestId": "退款一号"},
    "cjk b": {"merchant": "default", "refundRequestId": "退款二号"},
    "merchant a-b, id x": {"merchant": "a-b", "refundRequestId": "x"},
    "merchant a, id b-x": {"merchant": "a", "refundRequestId": "b-x"},
    "refundId X": {"merchant": "default", "refundId": "X"},
    "refundRequestId X": {"merchant": "default", "refundRequestId": "X"},
    "64 cjk": {"merchant": "m-" + "q" * 62, "refundRequestId": LONG_CJK},
    "64 cjk, other merchant": {"merchant": "m-" + "q" * 61 + "r", "refundRequestId": LONG_CJK},
}


def test_refunds_whose_ids_look_alike_get_their_own_item_name_and_loop(core: Core) -> None:
    started = {case: core.send({"provider": "antom", **fields}) for case, fields in LOOK_ALIKE.items()}

    assert {result.action for result in started.values()} == {"polling"}
    arns = {case: result.execution_arn for case, result in started.items()}
    assert len(set(arns.values())) == len(LOOK_ALIKE), arns
    items = core.items()
    assert len(items) == len(LOOK_ALIKE)
    for case, result in started.items():
        assert result.poll is not None and result.execution_arn is not None
        key = result.poll.state["inquiry"]["key"]
        # The loop that runs under this refund's item is this refund's own: its input names the same item.
        assert items[key]["executionArn"] == result.execution_arn, case
        assert core.execution_input(result.execution_arn)["inquiry"]["key"] == key, case
        name = result.execution_arn.rsplit(":", 1)[1]
        assert name.startswith("antom-") and len(name) <= 80


def test_a_name_left_by_a_deleted_item_is_not_adopted_by_its_successor(core: Core) -> None:
    body = {"provider": "alipayplus", "merchant": "shop-1", "refundRequestId": "rr/ttl.1"}
    first = core.send(body)
    assert first.action == "polling" and first.execution_arn
    # TTL deletes the item (and, worst case, its aliases); Standard keeps the closed name for 90 days.
    for key in [first.poll.state["inquiry"]["key"], *(ref.alias_key for ref in InquiryMessage.from_body(body).refs)]:  # type: ignore[union-attr]
        core.dynamodb.delete_item(TableName=core.table, Key={"pk": {"S": key}})

    second = core.send(body)

    assert second.action == "polling" and second.execution_arn
    assert second.poll is not None and second.poll.state["generation"] == 1  # the count restarted
    assert second.execution_arn != first.execution_arn
    assert core.execution_input(second.execution_arn)["windowId"] == second.poll.state["windowId"]


def test_an_existing_execution_is_adopted_only_when_its_input_names_the_same_item_and_window(core: Core) -> None:
    state = {"inquiry": {"key": "antom#default#rr:a"}, "generation": 1, "windowId": "0123456789abcdef", "polls": 1}
    name = f"antom-a-{uuid.uuid4().hex[:12]}"
    arn = core.executions.start(name, state)

    assert core.executions.start(name, {**state, "polls": 2}) == arn  # a redelivery of the same window
    for other in ({**state, "inquiry": {"key": "antom#default#rr:b"}}, {**state, "windowId": "fedcba9876543210"}):
        with pytest.raises(ExecutionNameConflictError, match="another refund or window"):
            core.executions.start(name, other)


def test_a_refund_sent_with_its_refund_id_then_with_both_ids_is_one_item_and_one_loop(core: Core) -> None:
    first = core.send({"provider": "antom", "refundId": "2026/r 77"})
    second = core.send({"provider": "antom", "refundId": "2026/r 77", "refundRequestId": "req:77"})
    third = core.send({"provider": "antom", "refundRequestId": "req:77"})

    assert first.action == "polling"
    assert (second.action, third.action) == ("skipped", "skipped")
    assert "already running" in second.reason and "already running" in third.reason
    items = core.items()
    assert list(items) == ["antom#default#r:2026/r 77"]
    assert core.store.find_key("antom", "default", refund_request_id="req:77") == "antom#default#r:2026/r 77"


@pytest.mark.parametrize("order", ["both first", "refund id first"])
def test_concurrent_messages_with_overlapping_ids_claim_one_item_once(core: Core, order: str) -> None:
    both = {"provider": "antom", "merchant": "m-1", "refundId": "R.9", "refundRequestId": "请求 9"}
    refund_id_only = {"provider": "antom", "merchant": "m-1", "refundId": "R.9"}
    request_id_only = {"provider": "antom", "merchant": "m-1", "refundRequestId": "请求 9"}
    bodies: list[dict[str, Any]] = [both, refund_id_only] * 6 if order == "both first" else [refund_id_only, both] * 6
    if order == "both first":
        bodies.append(request_id_only)  # shares the request id with the "both" messages only

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(core.send, bodies))

    assert [r.action for r in results].count("polling") == 1, [(r.action, r.reason) for r in results]
    assert len(core.items()) == 1
    assert len({r.execution_arn for r in results if r.execution_arn}) == 1


def test_an_id_the_provider_reveals_leads_later_messages_to_the_same_item(core: Core) -> None:
    core.provider.queue("rq-5", answer(Status.PROCESSING, refund_id="2026 R/5", refund_request_id="rq-5"))
    first = core.send({"provider": "antom", "refundRequestId": "rq-5"})
    later = core.send({"provider": "antom", "refundId": "2026 R/5"})

    assert first.action == "polling"
    assert (later.action, later.reason) == ("skipped", "a poll for this refund is already running")
    assert list(core.items()) == ["antom#default#rr:rq-5"]


def test_an_answer_about_another_refund_does_not_bind_its_ids_to_this_one(core: Core) -> None:
    # A genuine answer about refund A arrives for an inquiry about B (a misrouting proxy, a replay).
    core.provider.queue("rq-B", answer(Status.PROCESSING, refund_id="2026-A", refund_request_id="rq-A"))
    core.send({"provider": "antom", "refundRequestId": "rq-B"})

    about_a = core.send({"provider": "antom", "refundId": "2026-A"})

    assert about_a.action == "polling"  # A is its own refund, not "already running" under B
    assert sorted(core.items()) == ["antom#default#r:2026-A", "antom#default#rr:rq-B"]


def test_a_superseded_loop_writes_nothing_and_ends(core: Core) -> None:
    body = {"provider": "alphapay", "refundId": "R:1"}
    message = InquiryMessage.from_body(body)
    key = core.store.resolve(message, now=core.clock.now).key
    # A starter claims and polls, then dies before its loop's ARN is stored; its loop may already be running.
    claim = core.store.claim(message, key, message_id="m-1", now=core.clock.now, window_end=core.clock.now + 60)
    old_state = {
        "inquiry": message.as_state(key),
        "policy": {"intervalSeconds": 5, "maxDurationSeconds": 60},
        "deadline": core.clock.now + 60,
        "generation": claim.generation,
        "windowId": claim.window_id,
        "polls": 0,
    }
    resumed = core.send(body, message_id="m-1")  # SQS redelivers the claiming message: a new window
    assert resumed.action == "polling" and resumed.poll is not None
    assert resumed.poll.state["windowId"] != claim.window_id
    polls_before = core.store.get(key)["polls"]  # type: ignore[index]

    core.clock.now += 5
    core.provider.queue("R:1", answer(Status.SUCCESS, refund_id="R:1", provider="alphapay"))
    late = core.service.poll(old_state)

    assert late.superseded and late.decision.next == "done"
    assert late.state["decision"]["reason"] == SUPERSEDED_REASON
    item = core.store.get(key)
    assert item is not None
    assert (item["polls"], item["status"], item["pollingState"]) == (polls_before, "PROCESSING", "POLLING")
    assert core.capture.drain() == []  # and no result event


def test_the_item_names_its_execution_even_when_the_window_closed_before_start_execution_returned(
    core: Core,
) -> None:
    """A short window on a busy account can close (here: a notification) while StartExecution is in flight."""
    start = core.executions.start

    def slow_start(name: str, state: Any) -> str:
        arn = start(name, state)
        key = "antom#shop-1#rr:R slow/起动"
        item = core.store.get(key)
        assert item is not None and item["pollingState"] == "POLLING"
        core.store.close(key, Window.from_state(state), Status.UNRESOLVED, "window closed", now=core.clock())
        return arn

    core.executions.start = slow_start  # type: ignore[method-assign]
    result = core.send({"provider": "antom", "merchant": "shop-1", "refundRequestId": "R slow/起动"})

    item = core.store.get("antom#shop-1#rr:R slow/起动")
    assert item is not None and item["pollingState"] != "POLLING"
    assert result.execution_arn and item.get("executionArn") == result.execution_arn
