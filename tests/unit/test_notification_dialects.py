"""Each provider's notification dialect: verify over the raw body as signed, then read strictly (no network)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from refund_core.domain.outcome import Status
from refund_core.domain.profile import parse_profile
from refund_core.providers import NotificationRejectedError, ReceivedNotification, provider_for
from refund_core.providers.base import MAX_NOTIFICATION_BYTES, NOTIFICATION_MAX_AGE_SECONDS
from tests.unit import notifications
from tests.unit.keys import PKCS8_PEM, profile_data

PROVIDER_KEY = serialization.load_pem_private_key(PKCS8_PEM.encode(), password=None)
assert isinstance(PROVIDER_KEY, rsa.RSAPrivateKey)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PROVIDERS = ("antom", "alipayplus", "alphapay")
PATH = "/notify/{provider}/shop_1-A"
# Ids from the whole range a merchant may use: CJK, spaces, "/", ".", ":", markup.
IDS = {"refundRequestId": "退款 2026/12.01:<script>x</script>", "refundId": "2026120119074101000000001 退"}


def caller(provider: str) -> str:
    return "M123456" if provider == "alphapay" else "SANDBOX_5X00000000000000"


def adapter(provider: str):  # type: ignore[no-untyped-def]
    return provider_for(parse_profile(profile_data(provider)))


def received(
    provider: str,
    raw: bytes | None = None,
    *,
    key: rsa.RSAPrivateKey = PROVIDER_KEY,
    signed_path: str | None = None,
    called_path: str | None = None,
    caller_id: str | None = None,
    request_time: str | None = None,
    algorithm: str | None = None,
    drop: str | None = None,
) -> ReceivedNotification:
    raw = notifications.body(provider, **IDS) if raw is None else raw
    path = PATH.format(provider=provider)
    headers = notifications.headers(
        provider,
        key,
        signed_path or path,
        caller_id or caller(provider),
        raw,
        request_time=request_time,
        algorithm=algorithm,
    )
    headers = {name.lower(): value for name, value in headers.items() if name != drop}  # as API Gateway passes them
    signature = headers.pop("signature", None)
    return ReceivedNotification(called_path or path, headers, raw, () if signature is None else (signature,))


def rejected(provider: str, notification: ReceivedNotification, **kwargs: float) -> NotificationRejectedError:
    with pytest.raises(NotificationRejectedError) as caught:
        adapter(provider).read_notification(notification, **kwargs)
    return caught.value


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [Status.SUCCESS, Status.FAIL])
def test_a_signed_notification_is_a_verified_final_observation(provider: str, status: Status) -> None:
    observation = adapter(provider).read_notification(
        received(provider, notifications.body(provider, status.value, **IDS))
    )
    assert observation.status is status and observation.verified and observation.final
    assert (observation.refund_id, observation.refund_request_id) == (IDS["refundId"], IDS["refundRequestId"])
    assert observation.amount_value == "100" and observation.reason and observation.reason.startswith("notification")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_non_final_notification_is_read_but_not_final(provider: str) -> None:
    status = "REFUND_IN_PROCESS" if provider == "alphapay" else "PROCESSING"
    observation = adapter(provider).read_notification(received(provider, notifications.body(provider, status, **IDS)))
    assert not observation.final


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unsigned_forged_and_tampered_notifications_are_refused(provider: str) -> None:
    assert rejected(provider, received(provider, drop="Signature")).reason == "unsigned"
    assert rejected(provider, received(provider, key=OTHER_KEY)).http_status == 401
    assert rejected(provider, received(provider, key=OTHER_KEY)).reason == "bad-signature"
    # signed for another path than the one called (the path is part of what the provider signs)
    assert rejected(provider, received(provider, signed_path="/notify/x/y")).reason == "bad-signature"
    good = received(provider)
    tampered = ReceivedNotification(good.path, good.headers, good.body.replace(b"100", b"900"), good.signatures)
    assert rejected(provider, tampered).reason == "bad-signature"
    wrong_algorithm = "RS256" if provider != "alphapay" else "RSA256"
    assert rejected(provider, received(provider, algorithm=wrong_algorithm)).reason == "bad-signature"
    twice = ReceivedNotification(good.path, good.headers, good.body, good.signatures * 2)
    assert rejected(provider, twice).reason == "bad-signature"
    assert rejected(provider, received(provider, drop="Request-Time")).reason == "bad-signature"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_notification_signed_for_another_merchant_is_refused(provider: str) -> None:
    assert rejected(provider, received(provider, caller_id="SOMEONE_ELSE")).reason == "another-merchant"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_but_ambiguous_bodies_are_refused_as_malformed(provider: str) -> None:
    duplicate = b'{"refundStatus":"FAIL",' + notifications.body(provider, **IDS)[1:]
    assert rejected(provider, received(provider, duplicate)).reason == "malformed"
    not_utf8 = notifications.body(provider, **IDS).replace("退".encode(), "退".encode("gb18030"))
    assert rejected(provider, received(provider, not_utf8)).http_status == 400
    no_ids = notifications.body(provider)
    assert rejected(provider, received(provider, no_ids)).reason == "malformed"
    too_long = notifications.body(provider, refundRequestId="x" * 65)
    assert rejected(provider, received(provider, too_long)).reason == "malformed"


@pytest.mark.parametrize("provider", ["antom", "alipayplus"])
def test_only_refund_result_notifications_are_taken(provider: str) -> None:
    payment = notifications.body(provider, **IDS).replace(b"REFUND_RESULT", b"PAYMENT_RESULT")
    assert rejected(provider, received(provider, payment)).reason == "malformed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_oversized_bodies_are_refused_before_anything_else(provider: str) -> None:
    huge = received(provider, b"{" + b" " * MAX_NOTIFICATION_BYTES + b"}", drop="Signature")
    refusal = rejected(provider, huge)
    assert (refusal.reason, refusal.http_status) == ("oversize", 413)


def _time(provider: str, at: datetime) -> str:
    return at.isoformat(timespec="seconds") if provider == "alphapay" else str(int(at.timestamp() * 1000))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retries_within_the_provider_schedule_are_fresh_replays_beyond_it_are_not(provider: str) -> None:
    now = datetime.now(UTC)
    # Antom's last retry comes about 24 h 22 min after the first push, possibly with the first Request-Time.
    last_retry = received(provider, request_time=_time(provider, now - timedelta(hours=24, minutes=30)))
    assert adapter(provider).read_notification(last_retry).final
    replay = received(
        provider, request_time=_time(provider, now - timedelta(seconds=NOTIFICATION_MAX_AGE_SECONDS + 60))
    )
    assert (rejected(provider, replay).reason, rejected(provider, replay).http_status) == ("stale", 401)
    future = received(provider, request_time=_time(provider, now + timedelta(minutes=10)))
    assert rejected(provider, future).reason == "stale"
    assert rejected(provider, received(provider, request_time="yesterday")).reason == "malformed"
    assert adapter(provider).read_notification(last_retry, now=time.time()).verified


def test_the_acknowledgement_is_antoms_fixed_result() -> None:
    import json

    for provider in PROVIDERS:
        assert json.loads(adapter(provider).acknowledgement()) == notifications.ACK


@pytest.mark.parametrize("provider", PROVIDERS)
def test_ids_of_the_longest_allowed_length_in_any_script_are_read_as_sent(provider: str) -> None:
    longest = ("退款 /.:<script>" * 5)[:64]
    observation = adapter(provider).read_notification(
        received(provider, notifications.body(provider, refundRequestId=longest, refundId=longest[::-1]))
    )
    assert (observation.refund_request_id, observation.refund_id) == (longest, longest[::-1])
