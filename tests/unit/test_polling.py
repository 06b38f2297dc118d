"""The polling decision, the claim rules and execution names: pure functions, no AWS."""

from __future__ import annotations

import json
import re

import pytest

from refund_core.domain.claim import judge_claim
from refund_core.domain.inquiry import InquiryMessage, RefundRef, execution_name
from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.domain.polling import Policy, decide, policies_from_json

WALLET = Policy(interval_seconds=5, max_duration_seconds=60)
ANTOM = Policy(interval_seconds=5, max_duration_seconds=60, not_found_interval_seconds=15, not_found_max_polls=3)


def seen(status: Status, code: str | None = None) -> Observation:
    return Observation(provider="antom", status=status, result=ProviderResult(code=code, status="S"))


@pytest.mark.parametrize("status", [Status.SUCCESS, Status.FAIL])
def test_a_final_answer_ends_the_loop(status: Status) -> None:
    decision = decide(seen(status), WALLET, now=0, deadline=60, not_found_polls=0)
    assert (decision.next, decision.status) == ("done", status)


def test_an_error_fails_the_loop() -> None:
    assert decide(seen(Status.ERROR), WALLET, now=0, deadline=60, not_found_polls=0).next == "fail"


@pytest.mark.parametrize("status", [Status.PROCESSING, Status.UNKNOWN])
def test_a_pending_answer_waits_one_interval(status: Status) -> None:
    decision = decide(seen(status), WALLET, now=0, deadline=60, not_found_polls=0)
    assert (decision.next, decision.wait_seconds, decision.status) == ("wait", 5, status)


def test_the_window_gives_twelve_polls_every_five_seconds_in_a_minute() -> None:
    polls, now = 1, 0.0
    while decide(seen(Status.PROCESSING), WALLET, now=now, deadline=60, not_found_polls=0).next == "wait":
        polls, now = polls + 1, now + 5
    assert polls == 12
    assert decide(seen(Status.PROCESSING), WALLET, now=now, deadline=60, not_found_polls=0).status is Status.UNRESOLVED


def test_rate_limiting_doubles_the_wait() -> None:
    decision = decide(
        seen(Status.UNKNOWN, "REQUEST_TRAFFIC_EXCEED_LIMIT"), WALLET, now=0, deadline=60, not_found_polls=0
    )
    assert decision.wait_seconds == 10


def test_antom_not_found_is_asked_three_more_times_fifteen_seconds_apart() -> None:
    waits = [decide(seen(Status.NOT_FOUND), ANTOM, now=15 * n, deadline=60, not_found_polls=n + 1) for n in range(4)]
    assert [d.next for d in waits] == ["wait", "wait", "wait", "done"]
    assert waits[0].wait_seconds == 15
    assert waits[3].status is Status.NOT_FOUND


def test_a_wallet_not_found_keeps_polling_and_ends_not_found_at_the_deadline() -> None:
    assert decide(seen(Status.NOT_FOUND), WALLET, now=0, deadline=60, not_found_polls=5).next == "wait"
    closing = decide(seen(Status.NOT_FOUND), WALLET, now=56, deadline=60, not_found_polls=12)
    assert (closing.next, closing.status) == ("done", Status.NOT_FOUND)


def test_message_overrides_are_clamped_to_bounds() -> None:
    assert WALLET.overridden(0, 10_000) == Policy(interval_seconds=1, max_duration_seconds=900)
    assert WALLET.overridden(None, None) == WALLET


def test_the_stack_policy_parses_and_round_trips_through_the_state() -> None:
    policies = policies_from_json(json.dumps({"antom": ANTOM.to_state()}))
    assert policies["antom"] == ANTOM
    assert Policy.from_state(ANTOM.to_state()) == ANTOM


@pytest.mark.parametrize(
    ("item", "force", "verdict"),
    [
        (None, False, "claim"),
        ({"claimMessageId": "m1", "pollingState": "POLLING"}, False, "resume"),
        ({"claimMessageId": "m1", "pollingState": "POLLING", "executionArn": "arn"}, False, "skip"),
        ({"claimMessageId": "m1", "pollingState": "IDLE", "final": True}, True, "skip"),
        ({"claimMessageId": "m0", "pollingState": "IDLE", "final": True, "status": "SUCCESS"}, False, "skip"),
        ({"claimMessageId": "m0", "pollingState": "IDLE", "final": True}, True, "claim"),
        ({"claimMessageId": "m0", "pollingState": "POLLING", "windowEndsAt": 1000}, False, "skip"),
        ({"claimMessageId": "m0", "pollingState": "POLLING", "windowEndsAt": 100}, False, "claim"),
        ({"claimMessageId": "m0", "pollingState": "IDLE", "status": "UNRESOLVED"}, False, "claim"),
    ],
    ids=[
        "never-seen",
        "redelivery-before-start",
        "redelivery-after-start",
        "redelivery-after-final",
        "already-final",
        "final-with-force",
        "poll-running",
        "stale-claim",
        "after-unresolved-window",
    ],
)
def test_the_claim_rules(item: dict[str, object] | None, force: bool, verdict: str) -> None:
    assert judge_claim(item, message_id="m1", force=force, now=1000).verdict == verdict


def test_execution_names_are_readable_and_safe() -> None:
    name = execution_name(RefundRef("antom", "default", "rr", "rr-2026/11.21#7"), 2, "0123456789abcdef")
    assert re.fullmatch(r"antom-rr-2026_11_21_7-[0-9a-f]{12}-g2-0123456789abcdef", name)


def test_long_execution_names_keep_their_head_and_hash_the_tail() -> None:
    long_a = execution_name(RefundRef("alipayplus", "merchant-" + "m" * 55, "rr", "x" * 64), 1, "a" * 16)
    long_b = execution_name(RefundRef("alipayplus", "merchant-" + "m" * 55, "rr", "x" * 63 + "y"), 1, "a" * 16)
    assert len(long_a) <= 80 and re.fullmatch(r"[0-9A-Za-z_-]+", long_a)
    assert long_a.startswith("alipayplus-xxx") and long_a.endswith("-g1-" + "a" * 16)
    assert long_a != long_b


def test_the_item_key_prefers_the_merchants_request_id() -> None:
    assert InquiryMessage(provider="antom", refund_id="r", refund_request_id="rr").key == "antom#default#rr:rr"
    assert InquiryMessage(provider="alphapay", merchant="shop", refund_id="r").key == "alphapay#shop#r:r"
