"""Merchant profile validation: every rule names its field and never echoes key material."""

from __future__ import annotations

import json

import pytest

from refund_core.domain.profile import ANTOM_SANDBOX_PATH, ProfileError, parse_profile
from refund_core.providers import provider_for
from tests.unit.keys import PKCS1_PEM, PKCS8_B64, PKCS8_PEM, PUBLIC_B64, PUBLIC_PEM, profile_data


def test_a_sandbox_client_id_selects_antoms_sandbox_path() -> None:
    profile = parse_profile(profile_data("antom"))
    assert profile.inquiry_path == ANTOM_SANDBOX_PATH
    assert profile.request_time_format == "epoch-millis"
    assert profile.key_version == "1"


def test_a_live_client_id_uses_antoms_live_path() -> None:
    profile = parse_profile(profile_data("antom", clientId="5X00000000000000"))
    assert profile.inquiry_path == "/ams/api/v1/payments/inquiryRefund"


@pytest.mark.parametrize(
    ("provider", "path", "time_format"),
    [
        ("alipayplus", "/api/v1/payments/inquiryRefund", "iso8601"),
        ("alphapay", "/api/v2.0/payments/inquiryRefund", "iso8601"),
    ],
)
def test_each_provider_has_its_documented_defaults(provider: str, path: str, time_format: str) -> None:
    profile = parse_profile(profile_data(provider))
    assert (profile.inquiry_path, profile.request_time_format) == (path, time_format)


def test_a_profile_parses_from_json_text_with_optional_fields() -> None:
    text = json.dumps(
        profile_data(
            "alipayplus",
            inquiryPath="/acl/api/v1/payments/inquiryRefund",
            keyVersion=2,
            requestTimeFormat="epoch-millis",
        )
    )
    profile = parse_profile(text)
    assert profile.inquiry_url == "https://open-sea-global.alipay.com/acl/api/v1/payments/inquiryRefund"
    assert (profile.key_version, profile.request_time_format) == ("2", "epoch-millis")


@pytest.mark.parametrize(
    ("private_key", "public_key"),
    [(PKCS8_B64, PUBLIC_B64), (PKCS8_PEM, PUBLIC_PEM), (PKCS1_PEM, PUBLIC_B64)],
    ids=["base64-der", "pem-pkcs8", "pem-pkcs1"],
)
def test_keys_load_in_every_accepted_form(private_key: str, public_key: str) -> None:
    profile = parse_profile(profile_data(privateKey=private_key, providerPublicKey=public_key))
    provider_for(profile)  # loads both keys


def test_a_pkcs1_der_private_key_is_accepted() -> None:
    body = "".join(line for line in PKCS1_PEM.splitlines() if not line.startswith("-----"))
    provider_for(parse_profile(profile_data(privateKey=body)))


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"provider": None}, "provider", "required"),
        ({"provider": "paypal"}, "provider", "one of"),
        ({"clientId": None}, "clientId", "required"),
        ({"clientId": "has space"}, "clientId", "printable ASCII"),
        ({"clientId": 42}, "clientId", "string"),
        ({"clientId": "x" * 129}, "clientId", "at most 128"),
        ({"privateKey": None}, "privateKey", "required"),
        ({"privateKey": "not base64 !!"}, "privateKey", "Base64 DER or PEM"),
        ({"privateKey": "QUJD"}, "privateKey", "too short"),
        ({"privateKey": "-----BEGIN PRIVATE KEY-----\nMIIB"}, "privateKey", "END line"),
        ({"providerPublicKey": None}, "providerPublicKey", "required"),
        ({"providerPublicKey": "%%%"}, "providerPublicKey", "Base64 DER or PEM"),
        ({"baseUrl": None}, "baseUrl", "required"),
        ({"baseUrl": "ftp://example.com"}, "baseUrl", "https://host"),
        ({"baseUrl": "http://example.com"}, "baseUrl", "loopback"),
        ({"baseUrl": "http://10.0.0.8:8080"}, "baseUrl", "loopback"),
        ({"baseUrl": "https://example.com/api"}, "baseUrl", "inquiryPath"),
        ({"baseUrl": "https://example.com?x=1"}, "baseUrl", "inquiryPath"),
        ({"baseUrl": "https://user:pw@example.com"}, "baseUrl", "inquiryPath"),
        ({"baseUrl": "https://example.com:99999"}, "baseUrl", "port"),
        ({"inquiryPath": "api/v1"}, "inquiryPath", "start"),
        ({"inquiryPath": "/api v1"}, "inquiryPath", "start"),
        ({"keyVersion": "v1"}, "keyVersion", "whole number"),
        ({"keyVersion": True}, "keyVersion", "whole number"),
        ({"requestTimeFormat": "rfc2822"}, "requestTimeFormat", "one of"),
        ({"merchantAccountId": "x" * 33}, "merchantAccountId", "at most 32"),
        ({"signatureContent": "{path}"}, "signatureContent", "only used with"),
        ({"privatekey": PKCS8_B64}, "privatekey", "not a known field"),
    ],
)
def test_each_malformed_field_is_refused_by_name(overrides: dict[str, object], field: str, rule: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(profile_data("antom", **overrides))
    assert caught.value.field == field
    assert rule in str(caught.value)
    assert PKCS8_B64[:40] not in str(caught.value)


@pytest.mark.parametrize(
    ("provider", "overrides", "field"),
    [
        ("alphapay", {"merchantCode": None}, "merchantCode"),
        ("alphapay", {"merchantAccountId": "acc"}, "merchantAccountId"),
        ("alphapay", {"requestTimeFormat": "epoch-millis"}, "requestTimeFormat"),
        ("alipayplus", {"signatureContent": "{path}.{clientId}"}, "signatureContent"),
        ("alipayplus", {"signatureContent": "{body}.{secret}"}, "signatureContent"),
    ],
)
def test_provider_specific_fields_are_checked(provider: str, overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(profile_data(provider, **overrides))
    assert caught.value.field == field


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "[::1]"])
def test_plain_http_is_allowed_for_loopback_hosts(host: str) -> None:
    assert parse_profile(profile_data(baseUrl=f"http://{host}:8080")).base_url == f"http://{host}:8080"


def test_a_key_that_is_not_rsa_material_is_refused_without_echoing_it() -> None:
    junk = "A" * 400
    with pytest.raises(ProfileError) as caught:
        provider_for(parse_profile(profile_data(privateKey=junk)))
    assert caught.value.field == "privateKey"
    assert junk[:20] not in str(caught.value)


def test_a_public_key_in_the_private_key_field_is_refused() -> None:
    with pytest.raises(ProfileError) as caught:
        provider_for(parse_profile(profile_data(privateKey=PUBLIC_B64)))
    assert caught.value.field == "privateKey"


def test_invalid_json_is_refused_without_echoing_the_text() -> None:
    text = '{"privateKey": "' + PKCS8_B64 + '",'
    with pytest.raises(ProfileError) as caught:
        parse_profile(text)
    assert PKCS8_B64[:40] not in str(caught.value)
    with pytest.raises(ProfileError, match="JSON object"):
        parse_profile("[1, 2]")


def test_the_repr_of_a_profile_holds_no_key_material() -> None:
    assert PKCS8_B64[:40] not in repr(parse_profile(profile_data()))
