"""Merchant profile validation: every rule names its field and never echoes key material."""

from __future__ import annotations

import json

import pytest

from refund_core.domain.profile import ANTOM_SANDBOX_PATH, ProfileError, parse_profile
from refund_core.providers import provider_for
from tests.unit.keys import PKCS1_PEM, PKCS8_B64, PKCS8_PEM, PUBLIC_B64, PUBLIC_PEM, profile_data, weak_key_pair


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
        ("alipayplus", "/v1/payments/inquiryRefund", "iso8601"),  # seed 000_29cee8de70e96ca6.txt
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


@pytest.mark.parametrize("prefix", ["/gcash", "/openapi/wallet-2", "/a.b~c_d"])
def test_a_wallet_prefix_goes_before_the_documented_wallet_path(prefix: str) -> None:
    profile = parse_profile(profile_data("alipayplus", pathPrefix=prefix))
    assert profile.inquiry_path == f"{prefix}/v1/payments/inquiryRefund"
    assert profile.inquiry_url == f"https://open-sea-global.alipay.com{prefix}/v1/payments/inquiryRefund"


@pytest.mark.parametrize(
    ("provider", "overrides", "rule"),
    [
        ("alipayplus", {"pathPrefix": "gcash"}, "'/' and path segments"),
        ("alipayplus", {"pathPrefix": "/gcash/"}, "without a trailing '/'"),
        ("alipayplus", {"pathPrefix": "/"}, "'/' and path segments"),
        ("alipayplus", {"pathPrefix": "/a/../b"}, "'/' and path segments"),
        ("alipayplus", {"pathPrefix": "/a b"}, "'/' and path segments"),
        ("alipayplus", {"pathPrefix": "/a?x=1"}, "'/' and path segments"),
        ("alipayplus", {"pathPrefix": 7}, "string"),
        ("alipayplus", {"pathPrefix": "/gcash", "inquiryPath": "/v1/payments/inquiryRefund"}, "not both"),
        ("antom", {"pathPrefix": "/gcash"}, "only used with provider 'alipayplus'"),
        ("alphapay", {"pathPrefix": "/gcash"}, "only used with provider 'alipayplus'"),
    ],
)
def test_a_bad_path_prefix_is_refused_by_name(provider: str, overrides: dict[str, object], rule: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(profile_data(provider, **overrides))
    assert caught.value.field == "pathPrefix"
    assert rule in str(caught.value)


@pytest.mark.parametrize("bits", [512, 1024])
@pytest.mark.parametrize("field", ["privateKey", "providerPublicKey"])
def test_an_rsa_key_under_2048_bits_is_refused_naming_the_field_and_the_rule(field: str, bits: int) -> None:
    private_key, public_key = weak_key_pair(bits)
    weak = private_key if field == "privateKey" else public_key
    with pytest.raises(ProfileError) as caught:
        provider_for(parse_profile(profile_data(**{field: weak})))
    assert caught.value.field == field
    assert str(caught.value) == (
        f"merchant profile field '{field}': must be an RSA key of at least 2048 bits (this one has {bits})"
    )
    assert weak[40:80] not in str(caught.value)


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("https://169.254.169.254", "link-local"),  # EC2 instance metadata (IPv4)
        ("https://169.254.170.2:443", "link-local"),  # ECS task metadata and credentials
        ("https://[fe80::1]", "link-local"),
        ("https://[fe80::1%25eth0]:8443", "link-local"),
        ("https://[fd00:ec2::254]", "instance metadata"),  # EC2 instance metadata (IPv6)
        ("https://[::ffff:169.254.169.254]", "link-local"),  # IPv4-mapped
        ("https://0.0.0.0", "unspecified"),
        ("https://[::]:443", "unspecified"),
        ("https://240.0.0.1", "reserved"),
        ("https://224.0.0.251", "multicast"),
        ("https://2852039166", "link-local"),  # 169.254.169.254 as one number: resolvers read it as that address
        ("https://0xa9.0xfe.0xa9.0xfe", "link-local"),
        ("https://0251.0376.0251.0376", "link-local"),
        ("https://169.254.169.254.", "link-local"),
        ("https://0", "unspecified"),
    ],
)
def test_a_base_url_at_an_address_no_provider_is_at_is_refused(base_url: str, why: str) -> None:
    for allow_plain_http in (False, True):
        with pytest.raises(ProfileError) as caught:
            parse_profile(profile_data(baseUrl=base_url), allow_plain_http=allow_plain_http)
        assert caught.value.field == "baseUrl"
        assert "must not name an address a provider cannot be at" in str(caught.value)
        assert why in str(caught.value)


@pytest.mark.parametrize("base_url", ["https://203.0.113.7", "https://[2001:db8::1]:8443", "https://10.1.2.3"])
def test_ordinary_literal_addresses_are_still_accepted(base_url: str) -> None:
    assert parse_profile(profile_data(baseUrl=base_url)).base_url == base_url


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_plain_http_is_refused_even_to_loopback_unless_the_caller_allows_it(host: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(profile_data(baseUrl=f"http://{host}:9001"))  # 127.0.0.1:9001 is Lambda's Runtime API
    assert caught.value.field == "baseUrl"
    assert "must use https://" in str(caught.value)
    assert "development tooling" in str(caught.value)


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
def test_plain_http_is_allowed_for_loopback_hosts_where_development_tooling_allows_it(host: str) -> None:
    profile = parse_profile(profile_data(baseUrl=f"http://{host}:8080"), allow_plain_http=True)
    assert profile.base_url == f"http://{host}:8080"


@pytest.mark.parametrize("base_url", ["http://example.com", "http://10.0.0.8:8080", "http://2130706433.example"])
def test_plain_http_to_another_host_is_refused_even_where_development_tooling_allows_it(base_url: str) -> None:
    with pytest.raises(ProfileError, match="allowed only for loopback hosts") as caught:
        parse_profile(profile_data(baseUrl=base_url), allow_plain_http=True)
    assert caught.value.field == "baseUrl"


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


def test_a_merchant_rate_budget_is_optional_and_overrides_the_stacks() -> None:
    assert parse_profile(profile_data("antom")).rate_limit_per_second is None
    assert parse_profile({**profile_data("antom"), "rateLimitPerSecond": 2.5}).rate_limit_per_second == 2.5


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (0, "must be from 0.1 to 400 inquiries per second"),
        (401, "must be from 0.1 to 400 inquiries per second"),
        ("20", "must be a number of inquiries per second"),
        (True, "must be a number of inquiries per second"),
    ],
)
def test_a_bad_merchant_rate_budget_is_refused_by_name(value: object, rule: str) -> None:
    with pytest.raises(ProfileError) as error:
        parse_profile({**profile_data("antom"), "rateLimitPerSecond": value})
    assert str(error.value) == f"merchant profile field 'rateLimitPerSecond': {rule}"
