"""Merchant profiles: the credentials and endpoint of one merchant at one provider.

A profile is the value of a Secrets Manager secret (or a local JSON file). Parsing checks
structure only (standard library); the RSA keys themselves are loaded by the provider layer,
which reports unusable or weak keys through the same :class:`ProfileError`. Messages name the
field and the rule and never echo key material.

``baseUrl`` is checked here as far as its text allows: never an address a provider cannot be at
(instance metadata, link-local, unspecified, reserved), and plain ``http://`` only when the caller
says this is a development setting (``allow_plain_http``), and then only to loopback. In a Lambda
function 127.0.0.1:9001 is the Runtime API, so a deployed stack never allows it. A DNS name that
resolves to such an address is the transport's to refuse, at call time.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from refund_core.domain.addresses import unsafe_address_reason
from refund_core.domain.rate import RateBudgetError, check_rate

PROVIDERS = ("antom", "alipayplus", "alphapay")

# Wallets: "POST /v1/payments/inquiryRefund", host and any prefix assigned by each wallet
# (seed 000_29cee8de70e96ca6.txt, first lines); the prefix goes in the profile's pathPrefix.
WALLET_INQUIRY_PATH = "/v1/payments/inquiryRefund"
DEFAULT_INQUIRY_PATHS = {
    "antom": "/ams/api/v1/payments/inquiryRefund",
    "alipayplus": WALLET_INQUIRY_PATH,
    "alphapay": "/api/v2.0/payments/inquiryRefund",
}
ANTOM_SANDBOX_PATH = "/ams/sandbox/api/v1/payments/inquiryRefund"
DEFAULT_REQUEST_TIME_FORMATS = {"antom": "epoch-millis", "alipayplus": "iso8601", "alphapay": "iso8601"}
REQUEST_TIME_FORMATS = ("epoch-millis", "iso8601")

_FIELDS = frozenset(
    {
        "provider",
        "clientId",
        "merchantCode",
        "privateKey",
        "providerPublicKey",
        "baseUrl",
        "inquiryPath",
        "pathPrefix",
        "keyVersion",
        "requestTimeFormat",
        "merchantAccountId",
        "signatureContent",
        "rateLimitPerSecond",
    }
)
# Header values: printable ASCII without spaces or commas (they end up inside signed strings).
_HEADER_TOKEN = re.compile(r"[!-+\--~]{1,128}")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
# A wallet's prefix: whole segments, no dot segments (HTTP clients would normalise them away from the
# path that was signed), no trailing slash.
_PATH_PREFIX = re.compile(r"(/(?!\.{1,2}(?:/|$))[A-Za-z0-9._~-]{1,64}){1,8}")
# Host texts that getaddrinfo reads as IPv4 numbers (inet_aton forms: 2852039166, 0xa9.0xfe.0xa9.0xfe, 0251.0376…).
_NUMERIC_HOST = re.compile(r"[0-9A-Fa-fXx.]+")
_KEY_VERSION = re.compile(r"[0-9]{1,9}")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
# Placeholders a custom wallet signing layout may use (providers.md §3: one wallet is said to differ).
SIGNATURE_CONTENT_PLACEHOLDERS = ("{method}", "{path}", "{clientId}", "{requestTime}", "{body}")


class ProfileError(ValueError):
    """A merchant profile is missing a field or has a malformed one."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"merchant profile field '{field}': {rule}")
        self.field = field
        self.rule = rule


@dataclass(frozen=True, slots=True)
class MerchantProfile:
    """A validated merchant profile (see architecture.md, "Merchant profile")."""

    provider: str
    private_key: str
    provider_public_key: str
    base_url: str
    inquiry_path: str
    key_version: str
    request_time_format: str
    client_id: str | None = None
    merchant_code: str | None = None
    merchant_account_id: str | None = None
    signature_content: str | None = None
    # This merchant's provider rate budget (inquiries per second), overriding the stack's ProviderRateLimit.
    rate_limit_per_second: float | None = None

    @property
    def caller_id(self) -> str:
        """The id the provider knows the merchant by: client id, or AlphaPay's merchant code."""
        value = self.merchant_code if self.provider == "alphapay" else self.client_id
        assert value is not None  # guaranteed by parse_profile
        return value

    @property
    def inquiry_url(self) -> str:
        return self.base_url + self.inquiry_path

    def __repr__(self) -> str:  # keys stay out of reprs, logs and tracebacks
        return f"MerchantProfile(provider={self.provider!r}, caller_id={self.caller_id!r}, base_url={self.base_url!r})"


def parse_profile(raw: str | bytes | Mapping[str, Any], *, allow_plain_http: bool = False) -> MerchantProfile:
    """Parse and validate a merchant profile from JSON text or an already decoded mapping.

    ``allow_plain_http`` is for development tooling only (the local stack, the CLI, tests): it lets a
    ``baseUrl`` use plain ``http://`` to a loopback host. Deployed functions never pass it.

    Raises:
        ProfileError: naming the first field that is missing or malformed.
    """
    data = _decode(raw)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ProfileError(unknown[0], "is not a known field (check the spelling)")
    provider = _choice(data, "provider", PROVIDERS)
    client_id = merchant_code = merchant_account_id = None
    if provider == "alphapay":
        merchant_code = _token(data, "merchantCode", required=True)
    else:
        client_id = _token(data, "clientId", required=True)
    if "merchantAccountId" in data:
        if provider != "antom":
            raise ProfileError("merchantAccountId", "is only used with provider 'antom'")
        merchant_account_id = _string(data, "merchantAccountId", max_len=32)
    return MerchantProfile(
        provider=provider,
        client_id=client_id,
        merchant_code=merchant_code,
        merchant_account_id=merchant_account_id,
        private_key=_key(data, "privateKey"),
        provider_public_key=_key(data, "providerPublicKey"),
        base_url=_base_url(data, allow_plain_http=allow_plain_http),
        inquiry_path=_inquiry_path(data, provider, client_id),
        key_version=_key_version(data),
        request_time_format=_request_time_format(data, provider),
        signature_content=_signature_content(data, provider),
        rate_limit_per_second=_rate_limit(data),
    )


def _decode(raw: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        # Never include the text: it may hold a private key.
        raise ProfileError("(profile)", "is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProfileError("(profile)", "must be a JSON object")
    return data


def _string(data: Mapping[str, Any], field: str, *, max_len: int, required: bool = True) -> str:
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise ProfileError(field, "is required")
        return ""
    if not isinstance(value, str):
        raise ProfileError(field, "must be a string")
    if len(value) > max_len:
        raise ProfileError(field, f"must be at most {max_len} characters")
    return value


def _token(data: Mapping[str, Any], field: str, *, required: bool) -> str:
    value = _string(data, field, max_len=128, required=required)
    if not _HEADER_TOKEN.fullmatch(value):
        raise ProfileError(field, "must be printable ASCII without spaces or commas")
    return value


def _choice(data: Mapping[str, Any], field: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = data.get(field, default)
    if value is None:
        raise ProfileError(field, f"is required (one of {', '.join(allowed)})")
    if value not in allowed:
        raise ProfileError(field, f"must be one of {', '.join(allowed)}")
    return str(value)


def _key(data: Mapping[str, Any], field: str) -> str:
    value = _string(data, field, max_len=16384)
    text = value.strip()
    if text.startswith("-----BEGIN "):
        if "-----END " not in text:
            raise ProfileError(field, "PEM text has no END line")
        return text
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ProfileError(field, "must be Base64 DER or PEM text") from None
    if len(der) < 64:
        raise ProfileError(field, "is too short to be an RSA key")
    return text


def _base_url(data: Mapping[str, Any], *, allow_plain_http: bool) -> str:
    value = _string(data, "baseUrl", max_len=2048).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ProfileError("baseUrl", "must look like https://host[:port]")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ProfileError("baseUrl", "must be scheme://host[:port] only; put the path in inquiryPath")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ProfileError("baseUrl", "has an invalid port") from None
    address = literal_address(parts.hostname)
    # Loopback is the plain-http rule's business below (unsafe_address_reason calls ::1 reserved: it is in ::/8).
    reason = None if address is None or address.is_loopback else unsafe_address_reason(address)
    if reason is not None:
        raise ProfileError("baseUrl", f"must not name an address a provider cannot be at: {parts.hostname} {reason}")
    if parts.scheme == "http":
        if not allow_plain_http:
            raise ProfileError(
                "baseUrl", "must use https:// (plain http:// only to loopback hosts, and only in development tooling)"
            )
        if not is_loopback_host(parts.hostname):
            raise ProfileError("baseUrl", "plain http:// is allowed only for loopback hosts; use https://")
    return value


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells out literally, or None for a name.

    Besides dotted quads and IPv6 literals (with or without brackets), the numeric forms a resolver
    reads as IPv4 (``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``) count as literals: they never
    reach DNS.
    """
    text = host.strip("[]").removesuffix(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def is_loopback_host(host: str) -> bool:
    """True for localhost names and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    address = literal_address(host)
    return address is not None and address.is_loopback


def _inquiry_path(data: Mapping[str, Any], provider: str, client_id: str | None) -> str:
    if "pathPrefix" in data:
        if provider != "alipayplus":
            raise ProfileError("pathPrefix", "is only used with provider 'alipayplus'")
        if "inquiryPath" in data:
            raise ProfileError("pathPrefix", "give either pathPrefix or a whole inquiryPath, not both")
        prefix = _string(data, "pathPrefix", max_len=256)
        if not _PATH_PREFIX.fullmatch(prefix):
            raise ProfileError(
                "pathPrefix", "must be '/' and path segments without a trailing '/', e.g. /gcash or /openapi/wallet"
            )
        return prefix + WALLET_INQUIRY_PATH
    if "inquiryPath" not in data:
        if provider == "antom" and client_id and client_id.startswith("SANDBOX_"):
            return ANTOM_SANDBOX_PATH
        return DEFAULT_INQUIRY_PATHS[provider]
    value = _string(data, "inquiryPath", max_len=512)
    if not _PATH.fullmatch(value):
        raise ProfileError("inquiryPath", "must be an absolute path starting with '/' (no query or spaces)")
    return value


def _key_version(data: Mapping[str, Any]) -> str:
    value = data.get("keyVersion", "1")
    if isinstance(value, bool) or not isinstance(value, int | str) or not _KEY_VERSION.fullmatch(str(value)):
        raise ProfileError("keyVersion", "must be a whole number such as 1")
    return str(value)


def _request_time_format(data: Mapping[str, Any], provider: str) -> str:
    value = _choice(data, "requestTimeFormat", REQUEST_TIME_FORMATS, DEFAULT_REQUEST_TIME_FORMATS[provider])
    if provider == "alphapay" and value != "iso8601":
        raise ProfileError("requestTimeFormat", "AlphaPay documents ISO-8601 request times only: use iso8601")
    return value


def _rate_limit(data: Mapping[str, Any]) -> float | None:
    if data.get("rateLimitPerSecond") is None:
        return None
    try:
        return check_rate(data["rateLimitPerSecond"], "rateLimitPerSecond")
    except RateBudgetError as exc:
        raise ProfileError("rateLimitPerSecond", str(exc).removeprefix("rateLimitPerSecond: ")) from None


def _signature_content(data: Mapping[str, Any], provider: str) -> str | None:
    if "signatureContent" not in data:
        return None
    if provider != "alipayplus":
        raise ProfileError("signatureContent", "is only used with provider 'alipayplus'")
    value = _string(data, "signatureContent", max_len=256)
    if "{body}" not in value:
        raise ProfileError("signatureContent", "must contain the {body} placeholder")
    rest = value
    for placeholder in SIGNATURE_CONTENT_PLACEHOLDERS:
        rest = rest.replace(placeholder, "")
    if "{" in rest or "}" in rest:
        raise ProfileError("signatureContent", f"may only use {', '.join(SIGNATURE_CONTENT_PLACEHOLDERS)}")
    return value
