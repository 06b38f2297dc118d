"""The three adapters against the sandbox over real HTTP: every row of the decision table (providers.md §5).

Each test runs once per provider (the ``adapter`` fixture is parametrised). The refund id carries the
sandbox script, so the first line of a test says what the provider will answer. The last row of the
table (deadline reached) belongs to the polling loop, not to one inquiry, and is tested there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from refund_core.domain import Status
from refund_core.providers import Provider, RefundQuery
from refund_poller.sandbox import Sandbox

NewId = Callable[[str], str]
AdapterFactory = Callable[..., Provider]

CURRENCY = {"antom": "USD", "alipayplus": "PHP", "alphapay": "CAD"}
NOT_FOUND_CODE = {"antom": "ORDER_NOT_EXIST", "alipayplus": "REFUND_NOT_EXIST", "alphapay": "REFUND_NOT_EXIST"}
UNKNOWN_CALLER_CODE = {"antom": "CLIENT_INVALID", "alipayplus": "INVALID_CLIENT", "alphapay": "INVALID_MERCHANT"}
# Antom's inquiryRefund documents no fail reason; the wallet sends refundFailReason. AlphaPay sends none: its
# refund.description is the merchant's own remark (seed 002:62-64), kept as the description (issue 10, item 6).
FAIL_REASON = {
    "antom": None,
    "alipayplus": "sandbox: the script says fail",
    "alphapay": None,
}


# ---- S answers -----------------------------------------------------------------------------------
def test_a_successful_refund_is_final_with_amount_currency_and_refund_time(
    adapter: Provider, provider_name: str, new_refund_id: NewId
) -> None:
    refund_id = new_refund_id("success")

    seen = adapter.inquire(RefundQuery(refund_id=refund_id))

    assert (seen.status, seen.final, seen.verified) == (Status.SUCCESS, True, True)
    assert seen.refund_id == refund_id and seen.refund_request_id
    assert seen.amount_value is not None and seen.amount_value.isdigit()
    assert seen.amount_currency == CURRENCY[provider_name]
    assert seen.refund_time is not None and datetime.fromisoformat(seen.refund_time).tzinfo is not None
    assert (seen.result.code, seen.result.status) == ("SUCCESS", "S")


def test_a_failed_refund_is_final_with_its_fail_reason(
    adapter: Provider, provider_name: str, new_refund_id: NewId
) -> None:
    seen = adapter.inquire(RefundQuery(refund_id=new_refund_id("fail")))

    assert (seen.status, seen.final, seen.verified) == (Status.FAIL, True, True)
    assert seen.fail_reason == FAIL_REASON[provider_name]
    assert seen.refund_time is None
    assert seen.amount_currency == CURRENCY[provider_name]


def test_a_processing_refund_is_not_final(adapter: Provider, new_refund_id: NewId) -> None:
    seen = adapter.inquire(RefundQuery(refund_id=new_refund_id("processing")))

    assert (seen.status, seen.final, seen.verified) == (Status.PROCESSING, False, True)
    assert seen.refund_time is None


# ---- F answers -----------------------------------------------------------------------------------
def test_a_refund_the_provider_does_not_know_is_not_found(
    adapter: Provider, provider_name: str, new_refund_id: NewId
) -> None:
    seen = adapter.inquire(RefundQuery(refund_id=new_refund_id("notfound")))

    assert (seen.status, seen.final, seen.verified) == (Status.NOT_FOUND, False, True)
    assert (seen.result.code, seen.result.status) == (NOT_FOUND_CODE[provider_name], "F")


def test_an_access_denied_answer_is_an_error_that_stops_polling(adapter: Provider, new_refund_id: NewId) -> None:
    seen = adapter.inquire(RefundQuery(refund_id=new_refund_id("denied")))

    assert (seen.status, seen.verified) == (Status.ERROR, True)
    assert (seen.result.code, seen.result.status) == ("ACCESS_DENIED", "F")


def test_any_other_f_answer_is_an_error_carrying_the_code(adapter: Provider) -> None:
    seen = adapter.inquire(RefundQuery(refund_id="nosuchtoken--r1"))

    assert (seen.status, seen.result.code, seen.verified) == (Status.ERROR, "PARAM_ILLEGAL", True)
    assert "nosuchtoken" in (seen.result.message or "")


def test_a_caller_the_provider_does_not_know_gets_a_signed_error(
    make_adapter: AdapterFactory, provider_name: str
) -> None:
    id_field = "merchantCode" if provider_name == "alphapay" else "clientId"
    stranger = make_adapter(provider_name, **{id_field: "NOBODY_01"})

    seen = stranger.inquire(RefundQuery(refund_id="success--r1"))

    assert (seen.status, seen.result.code, seen.verified) == (Status.ERROR, UNKNOWN_CALLER_CODE[provider_name], True)


def test_a_request_signed_with_the_wrong_merchant_key_is_refused_unsigned(
    make_adapter: AdapterFactory, provider_name: str
) -> None:
    other_key = make_adapter("alphapay" if provider_name != "alphapay" else "antom").profile.private_key
    impostor = make_adapter(provider_name, privateKey=other_key)

    seen = impostor.inquire(RefundQuery(refund_id="success--r1"))

    assert (seen.status, seen.result.code, seen.result.status) == (Status.ERROR, "INVALID_SIGNATURE", "F")
    assert seen.verified is False  # Antom documents these answers may come unsigned; the sandbox sends none


# ---- U answers and transport trouble ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("script", "reason", "verified"),
    [
        ("unknown", "provider answered U (UNKNOWN_EXCEPTION)", True),
        ("ratelimit", "provider answered U (REQUEST_TRAFFIC_EXCEED_LIMIT)", True),
        ("http429", "HTTP 429 from provider", False),
        ("http500", "HTTP 500 from provider", False),
        ("reset", "transport: ConnectionError", False),
        ("garbage", "unparsable response body: body is not JSON", False),
    ],
)
def test_answers_that_say_nothing_about_the_refund_are_unknown(
    adapter: Provider, new_refund_id: NewId, script: str, reason: str, verified: bool
) -> None:
    seen = adapter.inquire(RefundQuery(refund_id=new_refund_id(script)))

    assert (seen.status, seen.final, seen.verified) == (Status.UNKNOWN, False, verified)
    assert seen.reason == reason
    assert seen.amount_value is None


def test_an_answer_slower_than_the_read_timeout_is_unknown(
    make_adapter: AdapterFactory, provider_name: str, new_refund_id: NewId
) -> None:
    impatient = make_adapter(provider_name, timeout=(1.0, 0.15))

    seen = impatient.inquire(RefundQuery(refund_id=new_refund_id("slow400ms")))

    assert (seen.status, seen.verified) == (Status.UNKNOWN, False)
    assert seen.reason is not None and seen.reason.startswith("transport: no answer within")


@pytest.mark.parametrize("script", ["badsig", "nosig"])
def test_a_success_without_a_valid_signature_is_not_trusted(
    adapter: Provider, new_refund_id: NewId, script: str
) -> None:
    seen = adapter.inquire(RefundQuery(refund_id=new_refund_id(script)))

    assert (seen.status, seen.final, seen.verified) == (Status.UNKNOWN, False, False)
    assert seen.result.status == "S"  # it claimed success …
    assert (seen.amount_value, seen.amount_currency, seen.refund_time) == (None, None, None)  # … and was ignored
    assert seen.reason is not None and seen.reason.startswith("untrusted")


# ---- lifecycles ------------------------------------------------------------------------------
def test_a_refund_processing_for_two_polls_succeeds_on_the_third(adapter: Provider, new_refund_id: NewId) -> None:
    refund_id = new_refund_id("processing2-success")

    statuses = [adapter.inquire(RefundQuery(refund_id=refund_id)).status for _ in range(3)]

    assert statuses == [Status.PROCESSING, Status.PROCESSING, Status.SUCCESS]


def test_a_refund_not_found_at_first_is_found_on_the_next_poll(adapter: Provider, new_refund_id: NewId) -> None:
    refund_id = new_refund_id("notfound1-success")

    statuses = [adapter.inquire(RefundQuery(refund_id=refund_id)).status for _ in range(2)]

    assert statuses == [Status.NOT_FOUND, Status.SUCCESS]


# ---- provider specifics ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("profile_name", "path"),
    [
        ("antom", "/ams/sandbox/api/v1/payments/inquiryRefund"),
        ("antom-live", "/ams/api/v1/payments/inquiryRefund"),
    ],
)
def test_antom_sandbox_client_ids_use_the_sandbox_path_and_others_the_live_path(
    make_adapter: AdapterFactory, sandbox: Sandbox, new_refund_id: NewId, profile_name: str, path: str
) -> None:
    refund_id = new_refund_id("success")

    seen = make_adapter(profile_name).inquire(RefundQuery(refund_id=refund_id))

    assert seen.status is Status.SUCCESS
    assert (sandbox.refund("antom", refund_id) or {})["lastPath"] == path


@pytest.mark.parametrize(
    ("profile_name", "wrong_path"),
    [("antom", "/ams/api/v1/payments/inquiryRefund"), ("antom-live", "/ams/sandbox/api/v1/payments/inquiryRefund")],
)
def test_an_antom_client_on_the_other_path_is_refused(
    make_adapter: AdapterFactory, profile_name: str, wrong_path: str
) -> None:
    misrouted = make_adapter(profile_name, inquiryPath=wrong_path)

    seen = misrouted.inquire(RefundQuery(refund_id="success--r1"))

    assert (seen.status, seen.result.code) == (Status.ERROR, "INVALID_API")


def test_alphapay_sends_a_fresh_32_character_nonce_and_rs256_with_every_request(
    make_adapter: AdapterFactory, sandbox: Sandbox, new_refund_id: NewId
) -> None:
    alphapay, refund_id = make_adapter("alphapay"), new_refund_id("processing")

    observations = [alphapay.inquire(RefundQuery(refund_id=refund_id)) for _ in range(3)]

    assert all(seen.status is Status.PROCESSING for seen in observations)  # the sandbox refuses reused nonces
    sent = [entry for entry in sandbox.requests() if entry.body.decode().find(refund_id) >= 0]
    nonces = [entry.header("Nonce") or "" for entry in sent]
    assert len(nonces) == 3 and len(set(nonces)) == 3 and all(len(nonce) == 32 for nonce in nonces)
    assert all((entry.header("Signature") or "").startswith("algorithm=RS256,") for entry in sent)


def test_antom_and_wallets_sign_with_rsa256(
    make_adapter: AdapterFactory, sandbox: Sandbox, new_refund_id: NewId
) -> None:
    refund_ids = {name: new_refund_id("success") for name in ("antom", "alipayplus")}
    for name, refund_id in refund_ids.items():
        make_adapter(name).inquire(RefundQuery(refund_id=refund_id))

    sent = [entry for entry in sandbox.requests() if any(rid in entry.body.decode() for rid in refund_ids.values())]

    assert len(sent) == 2
    assert all((entry.header("Signature") or "").startswith("algorithm=RSA256,keyVersion=1,") for entry in sent)
