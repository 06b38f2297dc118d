"""The long tail's plan (refund_core/domain/tail.py) and its message fields: pure, no network."""

from __future__ import annotations

import pytest

from refund_core.domain.inquiry import item_key
from refund_core.domain.tail import SCHEDULE_NAME, TailPolicy, plan_next, policies_from_json, schedule_name
from refund_core.service import RejectedMessageError
from refund_core.validation import parse_message

SINCE = 1_800_000_000.0


def test_the_default_schedule_widens_then_repeats_daily_and_ends_at_the_maximum_age() -> None:
    policy = TailPolicy()
    planned, at, attempt = [], SINCE + 60, 1
    while (step := plan_next(policy, SINCE, attempt, at)) is not None:
        planned.append(step.at - at)
        at, attempt = step.at, attempt + 1
    assert planned[:9] == [120, 600, 1800, 3600, 7200, 21600, 43200, 86400, 86400]
    assert at == SINCE + 7 * 86400  # the last attempt is pulled in to the maximum age itself
    assert plan_next(policy, SINCE, attempt, at) is None


def test_no_tail_when_the_maximum_age_is_zero() -> None:
    assert plan_next(TailPolicy(max_age_seconds=0), SINCE, 1, SINCE + 60) is None


def test_a_message_overrides_within_bounds() -> None:
    policy = TailPolicy().overridden([5, 3600, 999_999], 99_999_999)
    assert policy.schedule_seconds == (60, 3600, 86400) and policy.max_age_seconds == 30 * 86400
    message = parse_message(
        '{"provider": "antom", "refundRequestId": "r", "tail": {"scheduleSeconds": [300], "maxAgeSeconds": 0}}'
    )
    assert message.tail_schedule_seconds == (300,) and message.tail_max_age_seconds == 0


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        ('{"maxAgeSeconds": 2592001}', "tail.maxAgeSeconds: must be smaller than or equal to 2592000 (rule: maximum)"),
        ('{"scheduleSeconds": [59]}', "tail.scheduleSeconds[0]: must be bigger than or equal to 60 (rule: minimum)"),
        ('{"scheduleSeconds": []}', "tail.scheduleSeconds: must contain at least 1 items (rule: minItems)"),
        ('{"maxAgeSeconds": "7d"}', "tail.maxAgeSeconds: must be integer (rule: type)"),
    ],
)
def test_bad_tail_overrides_are_rejected_naming_the_field_and_rule(tail: str, reason: str) -> None:
    with pytest.raises(RejectedMessageError) as caught:
        parse_message(f'{{"provider": "antom", "refundRequestId": "r", "tail": {tail}}}')
    assert str(caught.value) == reason


def test_a_tail_attempt_message_names_its_window_and_attempt() -> None:
    body = '{"provider": "antom", "refundId": "R", "tailAttempt": {"windowId": "9f3c2a71d04be685", "attempt": 3}}'
    message = parse_message(body)
    assert message.is_tail_attempt and message.tail_window_id == "9f3c2a71d04be685" and message.tail_attempt == 3
    with pytest.raises(RejectedMessageError, match=r"tailAttempt.windowId: must match pattern"):
        parse_message(body.replace("9f3c2a71d04be685", "<script>"))


@pytest.mark.parametrize("refund_id", ["R 1/2.3:4", "退款-한국어-\U0001d518", "<script>alert(1)</script>", "x" * 64])
def test_schedule_names_fit_the_scheduler_rules_whatever_the_refund_id(refund_id: str) -> None:
    merchant = "m" * 64
    name = schedule_name(item_key("alipayplus", merchant, refund_request_id=refund_id), "9f3c2a71d04be685", 99999)
    assert SCHEDULE_NAME.fullmatch(name) and len(name) <= 64
    other = schedule_name(item_key("alipayplus", merchant, refund_id=refund_id), "9f3c2a71d04be685", 99999)
    assert other != name


def test_the_stack_policy_is_checked_at_cold_start() -> None:
    assert policies_from_json(None) == {}
    parsed = policies_from_json('{"antom": {"scheduleSeconds": [120, 600], "maxAgeSeconds": 3600}}')
    assert parsed["antom"] == TailPolicy((120, 600), 3600)
    with pytest.raises(ValueError, match="scheduleSeconds: 30 is outside"):
        policies_from_json('{"antom": {"scheduleSeconds": [30], "maxAgeSeconds": 3600}}')
