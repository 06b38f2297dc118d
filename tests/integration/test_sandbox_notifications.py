"""The sandbox pushing refund notifications to a real merchant receiver on 127.0.0.1 that verifies every push
with the provider public key (tests/integration/notify_receiver.py)."""

from __future__ import annotations

import itertools
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from refund_core.domain import parse_profile
from refund_core.providers import RefundQuery, provider_for
from refund_poller.sandbox import Sandbox
from refund_poller.sandbox.dialects import ANTOM_RETRY_INTERVALS
from refund_poller.sandbox.notifications import NotifyTarget
from tests.integration.notify_receiver import ACK, PROFILE_OF, Receiver, verify_push
from tests.integration.tls_support import self_signed

ANTOM_ATTEMPTS = 1 + len(ANTOM_RETRY_INTERVALS)  # the first push and eight retries


# ---- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of this module's own: its notification targets and speed-up stay out of other tests."""
    with Sandbox(port=0, profiles_dir=tmp_path_factory.mktemp("notify-profiles")) as running:
        yield running


@pytest.fixture
def receiver(sandbox: Sandbox) -> Iterator[Receiver]:
    running = Receiver(sandbox)
    yield running
    sandbox.reset()  # cancels retries still scheduled, before the receiver goes away
    running.close()


@pytest.fixture
def merchant() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


def poll(sandbox: Sandbox, provider: str, refund_id: str, times: int = 1) -> None:
    """Inquire as the merchant's poller would (its caller id is how the sandbox knows whose refund it is)."""
    profile = parse_profile(sandbox.profiles[PROFILE_OF[provider]].read_text(), allow_plain_http=True)
    adapter = provider_for(profile, timeout=(1.0, 2.0))
    for _ in range(times):
        adapter.inquire(RefundQuery(refund_id=refund_id))


def eventually(probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (answer := probe()):
        assert time.monotonic() < deadline, f"gave up after {timeout} s"
        time.sleep(0.05)
    return answer


def settle(seconds: float = 0.5) -> None:
    """Give the sender time to do what it must not do (a retry after an acknowledgement, a dropped push)."""
    time.sleep(seconds)


# ---- each dialect: signed, verifiable, the right body ----------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "script", "status"),
    [
        ("antom", "processing1-success", "SUCCESS"),
        ("antom", "processing1-fail", "FAIL"),
        ("alipayplus", "processing1-success", "SUCCESS"),
        ("alipayplus", "processing1-fail", "FAIL"),
        ("alphapay", "processing1-success", "SUCCESS"),
    ],
)
def test_a_refund_turning_final_is_pushed_once_signed_with_the_provider_key(
    sandbox: Sandbox, receiver: Receiver, merchant: str, provider: str, script: str, status: str
) -> None:
    sandbox.set_notify_target(provider, NotifyTarget(url=receiver.url(provider, merchant), merchant=merchant))
    refund_id = f"{script}--{uuid.uuid4().hex[:8]}"

    poll(sandbox, provider, refund_id)  # PROCESSING: nothing to push yet
    settle(0.3)
    assert receiver.of(merchant) == []
    poll(sandbox, provider, refund_id, times=2)  # final, then final again: still one notification

    [arrival] = eventually(lambda: receiver.of(merchant))
    settle()
    assert receiver.of(merchant) == [arrival]
    assert arrival.verified
    assert arrival.payload["refundId"] == refund_id
    assert arrival.payload["refundStatus"] == status
    assert arrival.payload["result"] == ACK["result"]
    assert arrival.payload.get("notifyType") == (None if provider == "alphapay" else "REFUND_RESULT")
    assert ("refundTime" in arrival.payload) == (status == "SUCCESS")
    [push] = sandbox.pushes(merchant=merchant)
    assert (push["attempt"], push["outcome"], push["replyStatus"]) == (1, "acknowledged", 200)


def test_alphapay_never_pushes_a_failed_refund(sandbox: Sandbox, receiver: Receiver, merchant: str) -> None:
    sandbox.set_notify_target("alphapay", NotifyTarget(url=receiver.url("alphapay", merchant), merchant=merchant))
    refund_id = f"fail--{uuid.uuid4().hex[:8]}"

    poll(sandbox, "alphapay", refund_id)

    settle()
    assert sandbox.refund("alphapay", refund_id)["finalStatus"] == "FAIL"  # type: ignore[index]
    assert receiver.of(merchant) == [] and sandbox.pushes(merchant=merchant) == []


def test_a_push_signed_by_the_provider_does_not_verify_with_another_key(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    """The receiver's check is a real one: the wallet's key does not verify an Antom push."""
    sandbox.set_notify_target("antom", NotifyTarget(url=receiver.url("antom", merchant), merchant=merchant))
    poll(sandbox, "antom", f"success--{uuid.uuid4().hex[:8]}")
    [arrival] = eventually(lambda: receiver.of(merchant))

    assert arrival.verified
    assert not verify_push(receiver.keys["alipayplus"], "antom", arrival.path, arrival.headers, arrival.body)
    assert not verify_push(receiver.keys["antom"], "antom", arrival.path, arrival.headers, arrival.body + b" ")


def test_a_refund_that_turns_final_by_the_clock_is_pushed_without_another_poll(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    sandbox.set_notify_target("antom", NotifyTarget(url=receiver.url("antom", merchant), merchant=merchant))
    refund_id = f"processing1s-success--{uuid.uuid4().hex[:8]}"

    poll(sandbox, "antom", refund_id)
    [arrival] = eventually(lambda: receiver.of(merchant), timeout=5)

    assert arrival.verified and arrival.payload["refundStatus"] == "SUCCESS"
    assert sandbox.refund("antom", refund_id)["polls"] == 1  # type: ignore[index]


def test_notify_to_points_every_profile_at_a_stack_endpoint(sandbox: Sandbox, receiver: Receiver) -> None:
    """As the local stack wires it: the live-path Antom profile is merchant "live", the others "default"."""
    sandbox.notify_to(
        receiver.base_url, {"antom": "default", "antom-live": "live", "alipayplus": "default", "alphapay": "default"}
    )
    refund_id = f"success--{uuid.uuid4().hex[:8]}"

    poll(sandbox, "antom", refund_id)
    live = parse_profile(sandbox.profiles["antom-live"].read_text(), allow_plain_http=True)
    provider_for(live, timeout=(1.0, 2.0)).inquire(RefundQuery(refund_id=f"success--live-{uuid.uuid4().hex[:8]}"))
    arrivals = eventually(lambda: len(receiver.arrivals) == 2 and receiver.arrivals)

    by_path = {arrival.path: arrival for arrival in arrivals}
    assert set(by_path) == {"/notify/antom/default", "/notify/antom/live"}
    assert by_path["/notify/antom/default"].headers["Client-Id"] == "SANDBOX_5YRP00000001"
    assert by_path["/notify/antom/live"].headers["Client-Id"] == "5YRP00000001"
    assert all(arrival.verified for arrival in arrivals)


# ---- retries ---------------------------------------------------------------------------------------------
def test_antom_retries_on_its_schedule_compressed_until_acknowledged(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    speedup = 5_000.0  # 0 s, 24 ms, 120 ms, 120 ms, 720 ms …
    sandbox.set_notify_speedup(speedup)
    sandbox.set_notify_target("antom", NotifyTarget(url=receiver.url("antom", merchant), merchant=merchant))
    receiver.refuse = 3  # the receiver's store is down for three pushes

    poll(sandbox, "antom", f"success--{uuid.uuid4().hex[:8]}")
    arrivals = eventually(lambda: len(receiver.of(merchant)) >= 4 and receiver.of(merchant))
    settle(ANTOM_RETRY_INTERVALS[4] / speedup + 0.5)  # past the next retry, were there one

    arrivals = receiver.of(merchant)
    assert len(arrivals) == 4 and all(arrival.verified for arrival in arrivals)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(arrivals)]
    for gap, interval in zip(gaps, ANTOM_RETRY_INTERVALS, strict=False):
        assert gap >= interval / speedup - 0.01
    assert gaps[2] > gaps[0]  # 10 min after 0 s: the schedule, not a fixed interval
    assert len({arrival.headers["Request-Time"] for arrival in arrivals}) >= 2  # each attempt signed anew
    pushes = sandbox.pushes(merchant=merchant)
    assert [p["attempt"] for p in pushes] == [1, 2, 3, 4]
    assert [p["outcome"] for p in pushes] == ["rejected"] * 3 + ["acknowledged"]


def test_antom_gives_up_after_eight_retries(sandbox: Sandbox, receiver: Receiver, merchant: str) -> None:
    sandbox.set_notify_speedup(1_000_000)  # 24 hours in 0.09 s
    sandbox.set_notify_target("alipayplus", NotifyTarget(url=receiver.url("alipayplus", merchant), merchant=merchant))
    receiver.refuse = 1_000

    poll(sandbox, "alipayplus", f"success--{uuid.uuid4().hex[:8]}")
    eventually(lambda: len(receiver.of(merchant)) >= ANTOM_ATTEMPTS)
    settle()

    assert len(receiver.of(merchant)) == ANTOM_ATTEMPTS
    assert [p["attempt"] for p in sandbox.pushes(merchant=merchant)] == list(range(1, ANTOM_ATTEMPTS + 1))


def test_alphapay_pushes_once_and_never_retries(sandbox: Sandbox, receiver: Receiver, merchant: str) -> None:
    sandbox.set_notify_speedup(1_000_000)
    sandbox.set_notify_target("alphapay", NotifyTarget(url=receiver.url("alphapay", merchant), merchant=merchant))
    receiver.refuse = 1_000

    poll(sandbox, "alphapay", f"success--{uuid.uuid4().hex[:8]}")
    [arrival] = eventually(lambda: receiver.of(merchant))
    settle()

    assert receiver.of(merchant) == [arrival] and arrival.verified
    assert len(arrival.headers["Nonce"]) == 32
    [push] = sandbox.pushes(merchant=merchant)
    assert (push["outcome"], push["replyStatus"]) == ("rejected", 500)


# ---- faults ----------------------------------------------------------------------------------------------
def faulty(receiver: Receiver, provider: str, merchant: str, fault: str, **settings: Any) -> NotifyTarget:
    return NotifyTarget(url=receiver.url(provider, merchant), merchant=merchant, faults=(fault,), **settings)


def test_a_dropped_notification_never_arrives(sandbox: Sandbox, receiver: Receiver, merchant: str) -> None:
    sandbox.set_notify_target("antom", faulty(receiver, "antom", merchant, "dropped"))

    poll(sandbox, "antom", f"success--{uuid.uuid4().hex[:8]}")
    [push] = eventually(lambda: sandbox.pushes(merchant=merchant))
    settle()

    assert receiver.of(merchant) == []
    assert (push["outcome"], push["fault"]) == ("dropped", "dropped")


def test_a_duplicated_notification_arrives_twice_byte_for_byte(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    sandbox.set_notify_target("alphapay", faulty(receiver, "alphapay", merchant, "duplicated"))

    poll(sandbox, "alphapay", f"success--{uuid.uuid4().hex[:8]}")
    first, second = eventually(lambda: len(receiver.of(merchant)) == 2 and receiver.of(merchant))
    settle()

    assert len(receiver.of(merchant)) == 2
    assert first.verified and second.verified
    assert (first.body, first.headers["Signature"]) == (second.body, second.headers["Signature"])


def test_a_delayed_notification_arrives_late(sandbox: Sandbox, receiver: Receiver, merchant: str) -> None:
    sandbox.set_notify_target("antom", faulty(receiver, "antom", merchant, "delayed", delay_ms=800))
    refund_id = f"success--{uuid.uuid4().hex[:8]}"

    poll(sandbox, "antom", refund_id)
    [arrival] = eventually(lambda: receiver.of(merchant))

    final_at = sandbox.refund("antom", refund_id)["finalAt"]  # type: ignore[index]
    assert arrival.verified and arrival.at - final_at >= 0.8


def test_out_of_order_notifications_arrive_reversed(sandbox: Sandbox, receiver: Receiver, merchant: str) -> None:
    sandbox.set_notify_target("antom", faulty(receiver, "antom", merchant, "outoforder", hold_ms=5_000))
    earlier, later = (f"success--{name}-{uuid.uuid4().hex[:8]}" for name in ("earlier", "later"))

    poll(sandbox, "antom", earlier)
    poll(sandbox, "antom", later)
    arrivals = eventually(lambda: len(receiver.of(merchant)) == 2 and receiver.of(merchant))

    assert [arrival.payload["refundId"] for arrival in arrivals] == [later, earlier]
    assert all(arrival.verified for arrival in arrivals)


def test_a_forged_notification_fails_verification_and_the_genuine_one_follows(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    sandbox.set_notify_target("antom", faulty(receiver, "antom", merchant, "forged"))
    refund_id = f"success--{uuid.uuid4().hex[:8]}"

    poll(sandbox, "antom", refund_id)
    forged, genuine = eventually(lambda: len(receiver.of(merchant)) == 2 and receiver.of(merchant))

    assert not forged.verified and forged.payload["refundStatus"] == "FAIL"  # the status an attacker wants
    assert genuine.verified and genuine.payload["refundStatus"] == "SUCCESS"
    pushes = sandbox.pushes(merchant=merchant)
    assert [(p["forgery"], p["outcome"]) for p in pushes] == [(True, "rejected"), (False, "acknowledged")]


def test_a_notification_signed_with_the_wrong_key_never_verifies_and_is_retried(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    sandbox.set_notify_speedup(1_000_000)
    sandbox.set_notify_target("antom", faulty(receiver, "antom", merchant, "wrongkey"))

    poll(sandbox, "antom", f"fail--{uuid.uuid4().hex[:8]}")
    eventually(lambda: len(receiver.of(merchant)) >= ANTOM_ATTEMPTS)
    settle()

    arrivals = receiver.of(merchant)
    assert len(arrivals) == ANTOM_ATTEMPTS and not any(arrival.verified for arrival in arrivals)


def test_a_merchant_fault_rate_spoils_that_share_repeatably(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    target = faulty(receiver, "antom", merchant, "dropped", rate=0.5, seed=7)
    sandbox.set_notify_target("antom", target)
    refund_ids = [f"success--{n}-{uuid.uuid4().hex[:8]}" for n in range(20)]

    for refund_id in refund_ids:
        poll(sandbox, "antom", refund_id)
    eventually(lambda: len(sandbox.pushes(merchant=merchant)) == len(refund_ids))

    dropped = [p["refundId"] for p in sandbox.pushes(merchant=merchant) if p["outcome"] == "dropped"]
    assert 0 < len(dropped) < len(refund_ids)
    assert len(receiver.of(merchant)) == len(refund_ids) - len(dropped)


def test_a_fault_set_on_one_refund_spoils_that_refund_only(sandbox: Sandbox, receiver: Receiver, merchant: str) -> None:
    sandbox.set_notify_target("antom", NotifyTarget(url=receiver.url("antom", merchant), merchant=merchant))
    plain, doubled = (f"r-{name}-{uuid.uuid4().hex[:8]}" for name in ("plain", "doubled"))
    sandbox.set_script_with_notify("antom", doubled, "success", faulty(receiver, "antom", merchant, "duplicated"))

    poll(sandbox, "antom", plain)
    poll(sandbox, "antom", doubled)
    eventually(lambda: len(receiver.of(merchant)) == 3)

    ids = sorted(arrival.payload["refundId"] for arrival in receiver.of(merchant))
    assert ids == sorted([plain, doubled, doubled])


# ---- the admin endpoints ------------------------------------------------------------------------------------
def test_the_admin_push_sends_one_notification_now_for_any_ids(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    request_id = "退款 /a.b:c <script>x</script>"
    reply = requests.post(
        f"{sandbox.base_url}/_sandbox/notify/push",
        json={
            "provider": "alipayplus",
            "merchant": merchant,
            "refundRequestId": request_id,
            "status": "FAIL",
            "notifyUrl": receiver.url("alipayplus", merchant),
        },
        timeout=15,
    )

    assert reply.status_code == 200, reply.text
    first = reply.json()["first"]
    assert (first["outcome"], first["replyStatus"], first["refundRequestId"]) == ("acknowledged", 200, request_id)
    [arrival] = receiver.of(merchant)
    assert arrival.verified and arrival.payload["refundRequestId"] == request_id
    assert arrival.payload["refundStatus"] == "FAIL"
    listed = requests.get(f"{sandbox.base_url}/_sandbox/pushes", params={"merchant": merchant}, timeout=5).json()
    assert [push["notification"] for push in listed["pushes"]] == [first["notification"]]


def test_the_admin_push_uses_the_merchant_target_when_no_url_is_given(
    sandbox: Sandbox, receiver: Receiver, merchant: str
) -> None:
    admin = f"{sandbox.base_url}/_sandbox"
    put = requests.put(
        f"{admin}/notify/merchants/alphapay/{merchant}",
        json={"notifyUrl": receiver.url("alphapay", merchant)},
        timeout=5,
    )
    assert put.status_code == 200, put.text

    reply = requests.post(
        f"{admin}/notify/push",
        json={"provider": "alphapay", "merchant": merchant, "refundId": "R1", "status": "SUCCESS"},
        timeout=15,
    )

    assert reply.status_code == 200 and reply.json()["first"]["outcome"] == "acknowledged"
    [arrival] = receiver.of(merchant)
    assert arrival.verified and arrival.headers["Merchant-Code"] == "RPM0001"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"provider": "alphapay", "refundId": "R1", "status": "FAIL"}, "status: alphapay pushes SUCCESS only"),
        ({"provider": "antom", "refundId": "R1", "status": "DONE"}, "status: must be SUCCESS or FAIL"),
        ({"provider": "paypal", "refundId": "R1", "status": "SUCCESS"}, "provider: must be one of"),
        (
            {"provider": "antom", "status": "SUCCESS", "notifyUrl": "http://127.0.0.1:9/n"},
            "refundId or refundRequestId",
        ),
        ({"provider": "antom", "refundId": "x" * 65, "status": "SUCCESS"}, "refundId: must be at most 64"),
        ({"provider": "antom", "refundId": "R1", "status": "SUCCESS"}, "notifyUrl: is required"),
        (
            {"provider": "antom", "refundId": "R1", "status": "SUCCESS", "notifyUrl": "http://example.com/n"},
            "notifyUrl: plain http is allowed to a loopback host only",
        ),
        (
            {"provider": "antom", "refundId": "R1", "status": "SUCCESS", "notifyUrl": "ftp://127.0.0.1/n"},
            "notifyUrl: must be an absolute http:// or https:// URL",
        ),
    ],
)
def test_a_bad_push_request_is_refused_naming_the_field(
    sandbox: Sandbox, receiver: Receiver, body: dict[str, Any], named: str
) -> None:
    reply = requests.post(f"{sandbox.base_url}/_sandbox/notify/push", json=body, timeout=5)

    assert reply.status_code == 400
    assert named in reply.json()["error"]
    assert sandbox.pushes() == []


def test_a_merchant_target_and_speedup_are_validated(sandbox: Sandbox, receiver: Receiver) -> None:
    admin = f"{sandbox.base_url}/_sandbox"
    bad_fault = requests.put(
        f"{admin}/notify/merchants/antom/m1",
        json={"notifyUrl": receiver.url("antom", "m1"), "faults": ["late"]},
        timeout=5,
    )
    bad_merchant = requests.put(
        f"{admin}/notify/merchants/antom/bad%20name", json={"notifyUrl": receiver.url("antom", "m1")}, timeout=5
    )
    bad_speedup = requests.put(f"{admin}/notify", json={"speedup": 0}, timeout=5)

    assert bad_fault.status_code == bad_merchant.status_code == bad_speedup.status_code == 400
    assert "faults: must be a list drawn from dropped" in bad_fault.json()["error"]
    assert "merchant: must match" in bad_merchant.json()["error"]
    assert "speedup: must be a number" in bad_speedup.json()["error"]
    assert requests.put(f"{admin}/notify", json={"speedup": 100}, timeout=5).json()["speedup"] == 100


# ---- transport: TLS verified, a clean stop ------------------------------------------------------------------
def _self_signed_context(directory: Path) -> ssl.SSLContext:
    cert_file, key_file = self_signed(directory, "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_https_pushes_verify_the_receiver_certificate(sandbox: Sandbox, merchant: str, tmp_path: Path) -> None:
    untrusted = Receiver(sandbox, _self_signed_context(tmp_path))
    try:
        notification = sandbox.push(
            "alphapay", NotifyTarget(url=untrusted.url("alphapay", merchant), merchant=merchant), "SUCCESS", "R1", "Q1"
        )
        [push] = eventually(lambda: sandbox.pushes(notification=notification))
    finally:
        sandbox.reset()
        untrusted.close()

    assert push["outcome"] == "unreachable" and "CERTIFICATE_VERIFY_FAILED" in push["error"]
    assert untrusted.arrivals == []


def test_stopping_the_sandbox_ends_its_sender_and_cancels_pending_retries(tmp_path: Path, merchant: str) -> None:
    others = {thread.ident for thread in threading.enumerate()}
    sandbox = Sandbox(port=0, profiles_dir=tmp_path).start()
    receiver = Receiver(sandbox)
    receiver.refuse = 1_000
    try:
        sandbox.set_notify_target("antom", NotifyTarget(url=receiver.url("antom", merchant), merchant=merchant))
        poll(sandbox, "antom", f"success--{uuid.uuid4().hex[:8]}")
        eventually(lambda: len(receiver.of(merchant)) >= 2)  # 0 s retry done; the next one is 2 minutes away
        started = time.monotonic()
        sandbox.stop()
        stopped_in = time.monotonic() - started
    finally:
        receiver.close()

    assert stopped_in < 5
    senders = [thread for thread in threading.enumerate() if thread.name.startswith("sandbox-notify")]
    assert [thread for thread in senders if thread.ident not in others] == []
    assert len(receiver.of(merchant)) == 2


def test_a_receiver_that_is_down_is_recorded_as_unreachable(sandbox: Sandbox, merchant: str) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    try:
        notification = sandbox.push(
            "antom",
            NotifyTarget(url=f"http://127.0.0.1:{port}/notify/antom/{merchant}", merchant=merchant),
            "SUCCESS",
            "R",
            "Q",
        )
        push, *_retries = eventually(lambda: sandbox.pushes(notification=notification))
    finally:
        sandbox.reset()

    assert push["outcome"] == "unreachable" and push["replyStatus"] is None
