"""Signing: fixed-key vectors made with OpenSSL, content layouts, and the Signature header."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from refund_core.domain.profile import ProfileError, parse_profile
from refund_core.providers import RefundQuery, provider_for, signing
from refund_core.providers.alphapay import AlphaPay
from refund_core.providers.antom import Antom
from tests.unit.keys import PKCS1_PEM, PKCS8_B64, PUBLIC_B64, profile_data, vector, weak_key_pair

PRIVATE = signing.load_private_key(PKCS8_B64)
PUBLIC = signing.load_public_key(PUBLIC_B64)


@pytest.mark.parametrize("name", ["antom_request", "antom_response", "alipayplus_request", "alphapay_request"])
def test_our_signature_matches_the_openssl_vector(name: str) -> None:
    content, expected = vector(name)
    assert signing.sign(PRIVATE, content) == expected
    assert signing.verify(PUBLIC, content, expected)


@pytest.mark.parametrize("bits", [512, 1024])
def test_key_loading_refuses_rsa_keys_under_2048_bits_naming_the_field(bits: int) -> None:
    private_key, public_key = weak_key_pair(bits)
    with pytest.raises(ProfileError, match=f"at least 2048 bits \\(this one has {bits}\\)") as private_caught:
        signing.load_private_key(private_key)
    with pytest.raises(ProfileError, match="at least 2048 bits") as public_caught:
        signing.load_public_key(public_key, field="providerPublicKey")
    assert (private_caught.value.field, public_caught.value.field) == ("privateKey", "providerPublicKey")
    assert signing.MIN_RSA_KEY_BITS == 2048


def test_a_pkcs1_key_signs_the_same_bytes() -> None:
    content, expected = vector("antom_request")
    assert signing.sign(signing.load_private_key(PKCS1_PEM), content) == expected


def test_antoms_request_content_and_header_are_built_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = provider_for(parse_profile(profile_data("antom", inquiryPath="/ams/api/v1/payments/inquiryRefund")))
    monkeypatch.setattr(Antom, "request_time", lambda self: "1685599933871")
    request = adapter.build_request(RefundQuery(refund_id="202305011234567890", refund_request_id="rr-0001"))
    content, expected = vector("antom_request")
    assert request.body == content.split(b".", 2)[2]
    assert request.headers["Client-Id"] == "SANDBOX_5X00000000000000"
    assert request.headers["Request-Time"] == "1685599933871"
    assert request.headers["Signature"] == f"algorithm=RSA256,keyVersion=1,signature={quote(expected, safe='')}"


def test_a_wallet_signs_its_own_path_and_iso_time(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = provider_for(parse_profile(profile_data("alipayplus", clientId="2022091500000001")))
    monkeypatch.setattr(type(adapter), "request_time", lambda self: "2019-04-04T12:08:56.253+05:30")
    request = adapter.build_request(RefundQuery(refund_id="20221124111212800100166473700277756"))
    _, expected = vector("alipayplus_request")
    assert signing.parse_signature_header(request.headers["Signature"])["signature"] == expected


def test_a_wallet_with_a_custom_content_layout_signs_that_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    layout = "{method} {path}\n{clientId}.{requestTime}.{body}"  # the default layout, spelt out
    adapter = provider_for(
        parse_profile(profile_data("alipayplus", clientId="2022091500000001", signatureContent=layout))
    )
    monkeypatch.setattr(type(adapter), "request_time", lambda self: "2019-04-04T12:08:56.253+05:30")
    request = adapter.build_request(RefundQuery(refund_id="20221124111212800100166473700277756"))
    _, expected = vector("alipayplus_request")
    assert signing.parse_signature_header(request.headers["Signature"])["signature"] == expected


def test_alphapay_signs_with_rs256_and_the_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = provider_for(parse_profile(profile_data("alphapay")))
    monkeypatch.setattr(AlphaPay, "request_time", lambda self: "2024-01-01T12:00:00-05:00")
    monkeypatch.setattr(
        "refund_core.providers.alphapay.secrets.token_hex", lambda n: "0123456789abcdef0123456789abcdef"
    )
    request = adapter.build_request(RefundQuery(refund_id="R20240101000001"))
    _, expected = vector("alphapay_request")
    assert request.headers["Nonce"] == "0123456789abcdef0123456789abcdef"
    assert request.headers["Merchant-Code"] == "M123456"
    assert request.headers["Signature"] == f"algorithm=RS256,keyVersion=1,signature={quote(expected, safe='')}"


def test_alphapay_uses_a_fresh_32_character_nonce_per_request() -> None:
    adapter = provider_for(parse_profile(profile_data("alphapay")))
    nonces = {adapter.build_request(RefundQuery(refund_id="R1")).headers["Nonce"] for _ in range(50)}
    assert len(nonces) == 50
    assert all(len(nonce) == 32 for nonce in nonces)


def test_the_body_is_compact_json_and_refund_id_comes_first() -> None:
    adapter = provider_for(parse_profile(profile_data("antom", merchantAccountId="acct-1")))
    body = adapter.build_request(RefundQuery(refund_id="a", refund_request_id="b")).body
    assert body == b'{"refundId":"a","refundRequestId":"b","merchantAccountId":"acct-1"}'
    assert json.loads(body)["merchantAccountId"] == "acct-1"


@pytest.mark.parametrize(
    "header",
    [
        "algorithm=RSA256,keyVersion=1,signature={sig}",
        "algorithm=RSA256, keyVersion=1, signature={sig}",
        "signature={sig},algorithm=RSA256",
        "algorithm=RSA256,keyVersion=1,signature={sig_lower}",
    ],
)
def test_the_signature_header_is_parsed_tolerantly(header: str) -> None:
    raw = "ab+c/d==" * 4
    encoded = quote(raw, safe="")
    value = header.format(sig=encoded, sig_lower=encoded.lower().replace("ab", "ab"))
    parsed = signing.parse_signature_header(value)
    assert parsed["signature"].lower() == raw.lower()
    assert "+" in parsed["signature"]  # never turned into a space


def test_lower_case_percent_escapes_decode_like_upper_case() -> None:
    assert signing.parse_signature_header("signature=a%2bb%2fc%3d")["signature"] == "a+b/c="


@pytest.mark.parametrize("header", [None, "", "garbage", "signature", "=x,,", "algorithm=RSA256"])
def test_a_garbage_signature_header_yields_no_signature(header: str | None) -> None:
    assert "signature" not in signing.parse_signature_header(header)


def test_a_tampered_body_does_not_verify() -> None:
    content, expected = vector("antom_response")
    assert not signing.verify(PUBLIC, content.replace(b"SUCCESS", b"SUCCESs"), expected)


def test_a_non_base64_signature_does_not_verify() -> None:
    content, _ = vector("antom_response")
    assert not signing.verify(PUBLIC, content, "***not base64***")
