"""Queue messages are checked against the published JSON Schema; every rejection names field and rule."""

from __future__ import annotations

import json

import pytest

from refund_core.domain.inquiry import InquiryMessage
from refund_core.service import RejectedMessageError
from refund_core.validation import SCHEMA, parse_message

INVALID = {
    "not JSON": ("{bad", "body: is not valid JSON"),
    "empty body": ("", "body: is not valid JSON"),
    "a JSON array": ("[1, 2]", "body: must be a JSON object"),
    "a JSON string": ('"antom"', "body: must be a JSON object"),
    "no provider": ('{"refundId": "r"}', "provider: is required"),
    "unknown provider": ('{"provider": "paypal", "refundId": "r"}', "provider: must be one of"),
    "provider of the wrong type": ('{"provider": 1, "refundId": "r"}', "provider: must be"),
    "no ids": ('{"provider": "antom"}', "refundId or refundRequestId: at least one is required"),
    "null id": ('{"provider": "antom", "refundId": null}', "refundId: must be string"),
    "numeric id": ('{"provider": "antom", "refundId": 42}', "refundId: must be string"),
    "empty id": ('{"provider": "antom", "refundId": ""}', "refundId: must be longer"),
    "over-long id": (json.dumps({"provider": "antom", "refundId": "r" * 65}), "refundId: must be shorter"),
    "over-long request id": (json.dumps({"provider": "antom", "refundRequestId": "r" * 65}), "refundRequestId"),
    "newline in id": (json.dumps({"provider": "antom", "refundId": "r\n1"}), "control characters"),
    "NUL in request id": (json.dumps({"provider": "antom", "refundRequestId": "r\u00001"}), "control characters"),
    "C1 control in id": (json.dumps({"provider": "antom", "refundId": "r\u00851"}), "control characters"),
    "alphapay without refundId": ('{"provider": "alphapay", "refundRequestId": "rr"}', "refundId: is required"),
    "unknown field": ('{"provider": "antom", "refundId": "r", "amount": 1}', "amount: is not a known field"),
    "bad merchant": ('{"provider": "antom", "refundId": "r", "merchant": "a b"}', "merchant: must match"),
    "over-long merchant": (json.dumps({"provider": "antom", "refundId": "r", "merchant": "m" * 65}), "merchant"),
    "polling not an object": ('{"provider": "antom", "refundId": "r", "polling": 5}', "polling: must be object"),
    "interval too small": ('{"provider": "antom", "refundId": "r", "polling": {"intervalSeconds": 0}}', "minimum"),
    "window too long": ('{"provider": "antom", "refundId": "r", "polling": {"maxDurationSeconds": 901}}', "maximum"),
    "fractional interval": ('{"provider": "antom", "refundId": "r", "polling": {"intervalSeconds": 1.5}}', "integer"),
    "unknown polling field": ('{"provider": "antom", "refundId": "r", "polling": {"every": 1}}', "every"),
    "force as a string": ('{"provider": "antom", "refundId": "r", "force": "yes"}', "force: must be boolean"),
    "lone surrogate in id": ('{"provider": "antom", "refundId": "\\ud800"}', "refundId: must be valid Unicode"),
    "lone surrogate in a name": ('{"provider": "antom", "refundId": "r", "\\udfff": 1}', "body: must be valid Unicode"),
    "nested too deeply": ("[" * 100_000, "body: is nested too deeply"),
    "over-long correlation id": (
        json.dumps({"provider": "antom", "refundId": "r", "correlationId": "c" * 129}),
        "correlationId",
    ),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_each_invalid_message_is_rejected_with_a_reason_naming_the_field(name: str) -> None:
    body, reason = INVALID[name]
    with pytest.raises(RejectedMessageError) as caught:
        parse_message(body)
    assert reason in str(caught.value)
    assert len(str(caught.value)) <= 300


def test_a_rejection_never_echoes_a_huge_body() -> None:
    body = json.dumps({"provider": "antom", "refundId": "r", "note": "x" * 200_000})
    with pytest.raises(RejectedMessageError) as caught:
        parse_message(body)
    assert len(str(caught.value)) <= 300


def test_a_full_valid_message_parses_into_the_inquiry() -> None:
    body = {
        "provider": "alipayplus",
        "merchant": "acme-wallets",
        "refundId": "2025111911400000000123",
        "refundRequestId": "R-2025-000124",
        "polling": {"intervalSeconds": 10, "maxDurationSeconds": 120},
        "correlationId": "order-98765",
        "force": True,
    }
    message = parse_message(json.dumps(body))
    assert message == InquiryMessage(
        provider="alipayplus",
        merchant="acme-wallets",
        refund_id="2025111911400000000123",
        refund_request_id="R-2025-000124",
        interval_seconds=10,
        max_duration_seconds=120,
        correlation_id="order-98765",
        force=True,
    )


@pytest.mark.parametrize("example", SCHEMA["examples"])
def test_the_schemas_own_examples_are_valid(example: dict[str, object]) -> None:
    parse_message(json.dumps(example))


def test_whole_numbers_written_as_floats_become_ints_for_the_wait_state() -> None:
    message = parse_message('{"provider": "antom", "refundId": "r", "polling": {"intervalSeconds": 2.0}}')
    assert (message.interval_seconds, type(message.interval_seconds)) == (2, int)


def test_unicode_ids_without_control_characters_are_accepted() -> None:
    assert parse_message('{"provider": "antom", "refundRequestId": "退款-0001"}').refund_request_id == "退款-0001"
