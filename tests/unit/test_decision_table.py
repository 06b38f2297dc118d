"""The decision table (providers.md §5) applied to answers built in memory, no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from refund_core.domain.outcome import Status
from refund_core.domain.profile import parse_profile
from refund_core.providers import Provider, RefundQuery, SignedRequest, provider_for, signing
from tests.unit.keys import PKCS8_B64, profile_data

PROVIDER_KEY = signing.load_private_key(PKCS8_B64)  # the fixed pair plays both sides here
QUERY = RefundQuery(refund_id="r-1", refund_request_id="rr-1")


def answer(
    adapter: Provider, payload: dict[str, Any], *, sign: bool = True
) -> tuple[SignedRequest, dict[str, str], bytes]:
    request = adapter.build_request(QUERY)
    body = json.dumps(payload).encode()
    headers = {
        "Response-Time": datetime.now(UTC).isoformat(timespec="seconds"),
        "Nonce": "n" * 32,
        "Client-Id": request.headers.get("Client-Id", ""),
    }
    if sign:
        content = adapter.response_content(request, headers, body)
        assert content is not None
        headers["Signature"] = signing.format_signature_header(
            adapter.algorithm, "1", signing.sign(PROVIDER_KEY, content)
        )
    return request, headers, body


def observe(provider: str, payload: dict[str, Any], *, sign: bool = True, status_code: int = 200) -> Any:
    adapter = provider_for(parse_profile(profile_data(provider)))
    request, headers, body = answer(adapter, payload, sign=sign)
    return adapter.interpret(QUERY, request, status_code, headers, body, 1.0)


def result(code: str, status: str) -> dict[str, str]:
    return {"resultCode": code, "resultStatus": status, "resultMessage": code.lower()}


SUCCESS_ANSWERS = {
    "antom": {
        "result": result("SUCCESS", "S"),
        "refundStatus": "SUCCESS",
        "refundAmount": {"value": "100", "currency": "USD"},
    },
    "alipayplus": {
        "result": result("SUCCESS", "S"),
        "refundStatus": "SUCCESS",
        "refundAmount": {"value": "100", "currency": "USD"},
    },
    "alphapay": {
        "result": result("SUCCESS", "S"),
        "refundStatus": "SUCCESS",
        "refund": {"refundAmount": {"value": "100", "currency": "USD"}},
    },
}


@pytest.mark.parametrize("provider", sorted(SUCCESS_ANSWERS))
def test_a_signed_success_is_final_with_its_amount(provider: str) -> None:
    observation = observe(provider, SUCCESS_ANSWERS[provider])
    assert (observation.status, observation.final, observation.verified) == (Status.SUCCESS, True, True)
    assert (observation.amount_value, observation.amount_currency) == ("100", "USD")


@pytest.mark.parametrize("provider", sorted(SUCCESS_ANSWERS))
def test_an_unsigned_success_is_untrusted_and_its_data_unused(provider: str) -> None:
    observation = observe(provider, SUCCESS_ANSWERS[provider], sign=False)
    assert (observation.status, observation.verified, observation.amount_value) == (Status.UNKNOWN, False, None)
    assert observation.reason is not None and "untrusted" in observation.reason


def test_a_success_signed_over_other_bytes_is_untrusted() -> None:
    adapter = provider_for(parse_profile(profile_data("antom")))
    request, headers, body = answer(adapter, SUCCESS_ANSWERS["antom"])
    forged = body.replace(b'"100"', b'"999"')
    observation = adapter.interpret(QUERY, request, 200, headers, forged, 1.0)
    assert (observation.status, observation.verified, observation.amount_value) == (Status.UNKNOWN, False, None)


@pytest.mark.parametrize(
    ("provider", "raw", "status"),
    [
        ("antom", "FAIL", Status.FAIL),
        ("antom", "PROCESSING", Status.PROCESSING),
        ("alipayplus", "FAIL", Status.FAIL),
        ("alphapay", "FAILED", Status.FAIL),
        ("alphapay", "REFUND_IN_PROCESS", Status.PROCESSING),
        ("antom", "REVERSED", Status.UNKNOWN),
    ],
)
def test_refund_statuses_map_to_the_shared_vocabulary(provider: str, raw: str, status: Status) -> None:
    observation = observe(
        provider, {"result": result("SUCCESS", "S"), "refundStatus": raw, "refundFailReason": "no money"}
    )
    assert observation.status is status
    if status is Status.UNKNOWN:
        assert observation.reason is not None and raw in observation.reason


def test_alphapay_keeps_the_refund_remark_as_its_description_never_as_the_fail_reason() -> None:
    # seed 002:62-64: refund.description is "Remark of the refund", the merchant's own text (issue 10, item 6).
    payload = {"result": result("SUCCESS", "S"), "refundStatus": "FAILED", "refund": {"description": "card closed"}}
    observation = observe("alphapay", payload)
    assert (observation.status, observation.fail_reason, observation.description) == (Status.FAIL, None, "card closed")
    assert observation.to_dict()["description"] == "card closed"


@pytest.mark.parametrize(
    ("provider", "code"),
    [("antom", "ORDER_NOT_EXIST"), ("alipayplus", "REFUND_NOT_EXIST"), ("alphapay", "REFUND_NOT_EXIST")],
)
def test_a_signed_not_found_is_not_found_and_an_unsigned_one_keeps_polling(provider: str, code: str) -> None:
    assert observe(provider, {"result": result(code, "F")}).status is Status.NOT_FOUND
    assert observe(provider, {"result": result(code, "F")}, sign=False).status is Status.UNKNOWN


def test_signed_f_codes_are_errors_and_unsigned_only_when_they_reject_our_credentials() -> None:
    signed = observe("antom", {"result": result("PARAM_ILLEGAL", "F")})
    unsigned = observe("antom", {"result": result("INVALID_SIGNATURE", "F")}, sign=False)
    unsigned_other = observe("antom", {"result": result("PARAM_ILLEGAL", "F")}, sign=False)
    assert (signed.status, signed.result.code, signed.verified) == (Status.ERROR, "PARAM_ILLEGAL", True)
    assert (unsigned.status, unsigned.result.code, unsigned.verified) == (Status.ERROR, "INVALID_SIGNATURE", False)
    assert (unsigned_other.status, unsigned_other.distrust) == (Status.UNKNOWN, "unsigned")


@pytest.mark.parametrize(
    ("payload", "status_code", "reason"),
    [
        ({"result": result("UNKNOWN_EXCEPTION", "U")}, 200, "answered U"),
        ({"result": result("SUCCESS", "X")}, 200, "unrecognised resultStatus"),
        ({"result": "S"}, 200, "unparsable"),
        ({"result": result("SUCCESS", "S"), "refundStatus": "SUCCESS"}, 502, "HTTP 502"),
    ],
)
def test_answers_that_tell_nothing_are_unknown(payload: dict[str, Any], status_code: int, reason: str) -> None:
    observation = observe("alipayplus", payload, status_code=status_code)
    assert observation.status is Status.UNKNOWN
    assert observation.reason is not None and reason in observation.reason


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "at least one"),
        ({"refund_id": "x" * 65}, "at most 64"),
        ({"refund_request_id": "a\nb"}, "control characters"),
    ],
)
def test_refund_ids_are_checked_before_anything_is_sent(query: dict[str, str], message: str) -> None:
    from refund_core.providers import QueryError

    with pytest.raises(QueryError, match=message):
        RefundQuery(**query)


def test_alphapay_requires_the_refund_id() -> None:
    from refund_core.providers import QueryError

    adapter = provider_for(parse_profile(profile_data("alphapay")))
    with pytest.raises(QueryError, match="refundId"):
        adapter.build_request(RefundQuery(refund_request_id="rr-1"))
