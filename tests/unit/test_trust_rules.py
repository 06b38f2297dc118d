"""The trust rules (docs/trust.md) on answers built in memory: what makes an answer prove something, no network.

The hostile provider (tests/integration/test_hostile_provider.py) plays the same attacks over real HTTP; these
tests pin the finer edges of each rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from refund_core.domain.outcome import Observation, Status
from refund_core.domain.polling import Policy, decide
from refund_core.domain.profile import parse_profile
from refund_core.providers import Provider, RefundQuery, provider_for, signing
from tests.unit.keys import PKCS8_B64, profile_data

PROVIDER_KEY = signing.load_private_key(PKCS8_B64)  # the fixed pair plays both sides
ASKED = RefundQuery(refund_id="退款 r/1.a:b", refund_request_id="rr 1")
OK = {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}


def success(**fields: Any) -> dict[str, Any]:
    return {
        "result": OK,
        "refundId": ASKED.refund_id,
        "refundRequestId": ASKED.refund_request_id,
        "refundStatus": "SUCCESS",
        "refundAmount": {"value": "1000", "currency": "USD"},
        "refundTime": "2026-01-02T12:01:01+08:00",
        **fields,
    }


def observe(
    body: dict[str, Any] | bytes,
    *,
    provider: str = "antom",
    query: RefundQuery = ASKED,
    status_code: int = 200,
    answered_at: str | None = None,
    signature: str | None = "valid",
    signatures: list[str] | None = None,
    **options: Any,
) -> Observation:
    """Interpret one answer to ``query``, signed by the provider key over the exact body unless told otherwise."""
    adapter: Provider = provider_for(parse_profile(profile_data(provider)), **options)
    request = adapter.build_request(query)
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {
        "Response-Time": answered_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "Nonce": "n" * 32,
        "Client-Id": request.headers.get("Client-Id", ""),
    }
    if signature == "valid":
        content = adapter.response_content(request, headers, raw)
        assert content is not None
        headers["Signature"] = signing.format_signature_header(
            adapter.algorithm, "1", signing.sign(PROVIDER_KEY, content)
        )
    elif signature is not None:
        headers["Signature"] = signature
    if signatures is None:  # the plain call, as every caller before multi-header checks made it
        return adapter.interpret(query, request, status_code, headers, raw, 1.0)
    return adapter.interpret(query, request, status_code, headers, raw, 1.0, signatures=signatures)


# ---- rule 1: answers bound to the question -----------------------------------------------------------
def test_a_signed_answer_naming_another_refund_is_unknown_but_an_id_not_asked_is_learnt() -> None:
    only_request_id = RefundQuery(refund_request_id="rr 1")

    seen = observe(success(refundRequestId="rr 2"))
    learnt = observe(success(refundId="2026 provider id"), query=only_request_id)

    assert (seen.status, seen.distrust, seen.reason) == (
        Status.UNKNOWN,
        "another-refund",
        "answer about another refund",
    )
    assert (seen.refund_id, seen.refund_request_id, seen.amount_value) == (ASKED.refund_id, "rr 1", None)
    assert (learnt.status, learnt.refund_id, learnt.refund_request_id) == (Status.SUCCESS, "2026 provider id", "rr 1")


def test_an_id_that_is_not_text_does_not_bind_the_answer() -> None:
    seen = observe(success(refundRequestId=1), query=RefundQuery(refund_id=ASKED.refund_id))

    assert (seen.status, seen.distrust) == (Status.UNKNOWN, "another-refund")


# Times are made when the test runs, not when it is collected (a suite runs for many minutes).
ANSWER_TIMES: dict[str, Callable[[], str]] = {
    "6 min ago": lambda: (datetime.now(UTC) - timedelta(minutes=6)).isoformat(),
    "6 min ahead": lambda: (datetime.now(UTC) + timedelta(minutes=6)).isoformat(),
    "epoch millis": lambda: str(int(datetime.now(UTC).timestamp() * 1000)),  # AlphaPay: ISO-8601 only
    "yesterday": lambda: "yesterday",  # signed, but proves no time
    "no offset": lambda: datetime.now(UTC).replace(tzinfo=None).isoformat(),  # which "now"?
}


@pytest.mark.parametrize(
    ("provider", "when"),
    [
        ("antom", "6 min ago"),
        ("alipayplus", "6 min ahead"),
        ("alphapay", "epoch millis"),
        ("antom", "yesterday"),
        ("antom", "no offset"),
    ],
)
def test_a_verified_answer_without_a_readable_fresh_response_time_is_untrusted(provider: str, when: str) -> None:
    answered_at = ANSWER_TIMES[when]()
    body = success()
    if provider == "alphapay":
        body["refund"] = {"refundAmount": body.pop("refundAmount")}

    seen = observe(body, provider=provider, answered_at=answered_at)

    assert (seen.status, seen.verified, seen.distrust) == (Status.UNKNOWN, False, "stale-response")


def test_the_clock_skew_allowed_is_a_constructor_option_defaulting_to_five_minutes() -> None:
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    four_minutes_ago = (datetime.now(UTC) - timedelta(minutes=4)).isoformat()
    epoch_millis_now = str(int(datetime.now(UTC).timestamp() * 1000))  # as Antom's current documents show

    strict_adapter = observe(success(), answered_at=a_minute_ago, max_clock_skew_seconds=30)
    default = [observe(success(), answered_at=moment).status for moment in (four_minutes_ago, epoch_millis_now)]

    assert (strict_adapter.status, strict_adapter.distrust) == (Status.UNKNOWN, "stale-response")
    assert strict_adapter.reason is not None and "allowed 30 s" in strict_adapter.reason
    assert default == [Status.SUCCESS, Status.SUCCESS]


# ---- rule 2: untrusted means unknown ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("algorithm=RSA256,keyVersion=1,signature=AAAA", "does not verify"),
        ("algorithm=RS256,keyVersion=1,signature=AAAA", "algorithm must be RSA256"),
        ("algorithm=RSA256,keyVersion=1", "no signature"),
        (
            "algorithm=RSA256,keyVersion=1,signature=AAAA, algorithm=RSA256,keyVersion=1,signature=BBBB",
            "more than once",
        ),
    ],
)
def test_a_present_but_invalid_signature_makes_even_an_f_answer_unknown(header: str, why: str) -> None:
    seen = observe({"result": {"resultCode": "ACCESS_DENIED", "resultStatus": "F"}}, signature=header)

    assert (seen.status, seen.distrust, seen.verified) == (Status.UNKNOWN, "bad-signature", False)
    assert seen.reason is not None and why in seen.reason


def test_a_response_key_version_must_be_a_number_but_need_not_be_the_profiles() -> None:
    # keyVersion names the provider's key, not the merchant's: the profile's keyVersion is ours (docs/trust.md).
    adapter = provider_for(parse_profile(profile_data("antom")))
    request = adapter.build_request(ASKED)
    raw = json.dumps(success()).encode()
    headers = {"Response-Time": datetime.now(UTC).isoformat(), "Client-Id": request.headers["Client-Id"]}
    content = adapter.response_content(request, headers, raw)
    assert content is not None
    signature = signing.sign(PROVIDER_KEY, content)

    def with_key_version(version: str) -> Observation:
        signed = {**headers, "Signature": signing.format_signature_header("RSA256", version, signature)}
        return adapter.interpret(ASKED, request, 200, signed, raw, 1.0)

    other, malformed = with_key_version("7"), with_key_version("v1")

    assert (other.status, malformed.status, malformed.distrust) == (Status.SUCCESS, Status.UNKNOWN, "bad-signature")


def test_two_signature_headers_are_untrusted_even_when_one_verifies() -> None:
    genuine = observe(success())
    assert genuine.status is Status.SUCCESS
    adapter = provider_for(parse_profile(profile_data("antom")))
    request = adapter.build_request(ASKED)
    raw = json.dumps(success()).encode()
    headers = {"Response-Time": datetime.now(UTC).isoformat(), "Client-Id": request.headers["Client-Id"]}
    content = adapter.response_content(request, headers, raw)
    assert content is not None
    valid = signing.format_signature_header("RSA256", "1", signing.sign(PROVIDER_KEY, content))

    seen = adapter.interpret(ASKED, request, 200, {**headers, "Signature": valid}, raw, 1.0, signatures=[valid, valid])

    assert (seen.status, seen.distrust) == (Status.UNKNOWN, "bad-signature")


# ---- rule 5: strict parsing -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (
            b'{"result":{"resultStatus":"F","resultCode":"ACCESS_DENIED"},"result":' + json.dumps(OK).encode() + b"}",
            "duplicate JSON key 'result'",
        ),
        (b"\xef\xbb\xbf" + json.dumps(success()).encode(), "byte order mark"),
        (json.dumps(success()).encode("utf-16"), "not UTF-8"),
        (json.dumps(success()).encode("utf-16-le"), "not JSON"),  # NULs are UTF-8, but no JSON
        (json.dumps(success(refundAmount={"value": float("nan"), "currency": "USD"})).encode(), "NaN"),
    ],
)
def test_a_body_with_more_than_one_reading_is_malformed_even_when_signed(raw: bytes, why: str) -> None:
    seen = observe(raw)

    assert (seen.status, seen.distrust) == (Status.UNKNOWN, "malformed")
    assert seen.reason is not None and why in seen.reason


@pytest.mark.parametrize(
    ("fields", "dropped", "kept"),
    [
        ({"refundAmount": {"value": "1000", "currency": "usd"}}, "refundAmount.currency", "refund_time"),
        ({"refundAmount": {"value": "-5", "currency": "USD"}}, "refundAmount.value", "refund_time"),
        ({"refundAmount": "1000 USD"}, "refundAmount: must be an object", "refund_time"),
        ({"refundTime": "2026-01-02T12:01:01"}, "refundTime: must be ISO-8601 with a UTC offset", "amount_value"),
        ({"refundTime": 1767326461000}, "refundTime", "amount_value"),
    ],
)
def test_a_success_with_a_malformed_field_drops_that_field_only_and_says_why(
    fields: dict[str, Any], dropped: str, kept: str
) -> None:
    seen = observe(success(**fields))

    assert (seen.status, seen.verified) == (Status.SUCCESS, True)
    assert seen.reason is not None and dropped in seen.reason and "dropped" in seen.reason
    assert getattr(seen, kept) is not None


def test_a_success_without_amount_or_time_is_stored_with_a_reason_not_faked() -> None:
    payload = success()
    del payload["refundAmount"], payload["refundTime"]

    seen = observe(payload)

    assert (seen.status, seen.amount_value, seen.refund_time) == (Status.SUCCESS, None, None)
    assert seen.reason == "refundAmount: missing; refundTime: missing"


def test_a_refund_time_needs_its_offset_and_may_carry_nanoseconds() -> None:
    nanoseconds = observe(success(refundTime="2026-01-02T04:01:01.123456789Z"))
    spaced = observe(success(refundTime="2026-01-02 04:01:01Z"))

    assert (nanoseconds.refund_time, nanoseconds.reason) == ("2026-01-02T04:01:01.123456789Z", None)
    assert (spaced.status, spaced.refund_time) == (Status.SUCCESS, None)


def test_http_429_backs_off_like_request_traffic_exceed_limit() -> None:
    policy = Policy(interval_seconds=5, max_duration_seconds=60)
    limited = observe(success(), status_code=429)
    broken = observe(success(), status_code=503)

    assert (limited.status, limited.http_status, limited.to_dict()["httpStatus"]) == (Status.UNKNOWN, 429, 429)
    assert decide(limited, policy, now=0, deadline=60, not_found_polls=0).wait_seconds == 10
    assert decide(broken, policy, now=0, deadline=60, not_found_polls=0).wait_seconds == 5


# ---- rule 3: the call-time host check ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://169.254.169.254", "link-local"),
        ("https://[fd00:ec2::254]:443", "metadata"),
        ("http://0.0.0.0:8080", "unspecified"),
        ("https://[::ffff:169.254.169.254]", "link-local"),
    ],
)
def test_a_host_resolving_to_an_address_no_provider_has_is_refused(url: str, why: str) -> None:
    from refund_core.providers import transport

    with pytest.raises(transport.UnansweredError) as refused:
        transport.check_host(url)

    assert refused.value.refused and why in refused.value.reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "https://no-such-host.invalid"])
def test_loopback_and_unresolvable_hosts_pass_the_host_check(url: str) -> None:
    from refund_core.providers import transport

    transport.check_host(url)  # loopback is the profile's rule; an unknown name fails later as transport
