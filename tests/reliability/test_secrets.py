"""Secrets and endpoints: the leak scanner finds what it must, plain http:// to anything but loopback is refused, and
nothing a queue message carries can reach the provider URL, TLS verification or redirects (the stack-level scans of
logs, histories, events and DLQ messages run at the end of each stack module of tests/reliability)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from refund_core.domain.profile import ProfileError, parse_profile
from refund_core.providers import RefundQuery, provider_for
from refund_core.validation import SCHEMA
from refund_poller.sandbox import Sandbox
from tests.reliability.support import key_needles, leaks


def test_the_leak_scan_finds_a_key_fragment_pem_armour_and_escaped_forms(sandbox_profiles_dir: Path) -> None:
    needles = key_needles(sandbox_profiles_dir)
    private = json.loads((sandbox_profiles_dir / "antom.json").read_text())["privateKey"]
    assert len(needles) > 100
    assert leaks({"log": f"oops {private[400:440]} oops"}, needles) == {
        "log": [n for n in needles if n in private[400:440]][:3]
    }
    assert "log" in leaks({"log": "-----BEGIN PRIVATE KEY-----"}, needles)
    assert "event" in leaks({"event": json.dumps(json.dumps({"k": private}))}, needles)
    assert (
        leaks({"log": json.loads((sandbox_profiles_dir / "antom.json").read_text())["providerPublicKey"]}, needles)
        == {}
    )


@pytest.mark.parametrize(
    "base_url",
    [
        "http://203.0.113.10:8080",
        "http://169.254.169.254",  # instance metadata
        "http://127.0.0.1.nip.io",  # a name that resolves to loopback is still a remote name
        "http://localhost.attacker.example",
        "http://0.0.0.0:8080",
    ],
)
def test_plain_http_to_a_non_loopback_host_is_refused(sandbox_profiles_dir: Path, base_url: str) -> None:
    data = json.loads((sandbox_profiles_dir / "antom.json").read_text()) | {"baseUrl": base_url}
    with pytest.raises(ProfileError) as caught:
        parse_profile(data, allow_plain_http=True)  # even where development tooling allows plain http
    assert caught.value.field == "baseUrl"
    assert data["privateKey"][:40] not in str(caught.value)


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://x.example"]
)
def test_loopback_http_and_any_https_are_accepted(sandbox_profiles_dir: Path, base_url: str) -> None:
    data = json.loads((sandbox_profiles_dir / "antom.json").read_text()) | {"baseUrl": base_url}
    assert parse_profile(data, allow_plain_http=True).base_url == base_url


def test_a_message_can_name_no_endpoint_tls_or_key_setting() -> None:
    assert SCHEMA["additionalProperties"] is False
    assert set(SCHEMA["properties"]) == {
        "provider",
        "merchant",
        "refundId",
        "refundRequestId",
        "polling",
        "correlationId",
        "force",
        "tail",  # the long tail's schedule overrides (seconds, bounded)
        "tailAttempt",  # which tail attempt a scheduled message is (window id, number)
    }
    assert SCHEMA["properties"]["polling"]["additionalProperties"] is False


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def post(self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        self.calls.append({"url": url, **kwargs})
        return super().post(url, data=data, json=json, **kwargs)


@pytest.mark.parametrize("profile_name", ["antom", "alipayplus", "alphapay"])
def test_every_inquiry_verifies_tls_follows_no_redirect_and_goes_to_the_profile_url(
    sandbox: Sandbox, profile_name: str
) -> None:
    profile = parse_profile(sandbox.profiles[profile_name].read_text(), allow_plain_http=True)
    session = RecordingSession()
    adapter = provider_for(profile, session=session)
    adapter.inquire(RefundQuery(refund_id="success--tls-check", refund_request_id="success--tls-check-rr"))
    assert [call["url"] for call in session.calls] == [profile.inquiry_url]
    assert session.calls[0]["verify"] is True
    assert session.calls[0]["allow_redirects"] is False
