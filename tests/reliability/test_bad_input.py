"""Bad input through the whole local stack: every malformed message lands in the DLQ at once with its reason, starts
nothing and crashes nothing, while valid messages in the same batches (injection-looking ids among them) go through
untouched and are stored verbatim."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from refund_core.domain.inquiry import RefundRef, execution_name
from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import drain_dlq, events_by_key, executions, send, wait_closed
from tests.reliability.corpus import (
    INJECTION_IDS,
    MALFORMED,
    MISMATCHED_MERCHANT,
    PLAIN_HTTP_MERCHANT,
    VALID_EDGES,
)
from tests.reliability.support import key_needles, leaks, stack_texts

REMOTE_HTTP = "http://203.0.113.10:8080"  # TEST-NET-3: documentation only, never routed
MULTI_POLL = [f"processing1-success--bad-input-{n}" for n in range(3)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("bad-input"), parameter_overrides=FAST_POLICY) as running:
        prefix = str(running.outputs["ProfileSecretPrefix"])
        antom = json.loads(running.sandbox.profiles["antom"].read_text(encoding="utf-8"))
        running.cloud.put_secret(f"{prefix}alipayplus/{MISMATCHED_MERCHANT}", antom)
        running.cloud.put_secret(f"{prefix}antom/{PLAIN_HTTP_MERCHANT}", antom | {"baseUrl": REMOTE_HTTP})
        yield running


def valid_messages() -> dict[str, dict[str, Any] | str]:
    """Key → valid message: edge cases, injection-looking ids, and a few refunds that need a polling loop."""
    messages: dict[str, dict[str, Any] | str] = {}
    for message in VALID_EDGES.values():
        fields = json.loads(message) if isinstance(message, str) else message
        key_id = f"rr:{fields['refundRequestId']}" if fields.get("refundRequestId") else f"r:{fields['refundId']}"
        messages[f"{fields['provider']}#default#{key_id}"] = message
    for n, refund_request_id in enumerate(INJECTION_IDS):
        provider = ("antom", "alipayplus")[n % 2]
        messages[f"{provider}#default#rr:{refund_request_id}"] = {
            "provider": provider,
            "refundRequestId": refund_request_id,
        }
    for refund_id in MULTI_POLL:
        messages[f"alphapay#default#r:{refund_id}"] = {"provider": "alphapay", "refundId": refund_id}
    return messages


@pytest.fixture(scope="module")
def outcome(stack: DevStack) -> dict[str, Any]:
    """Send the corpus with valid messages mixed into the same batches; collect the DLQ and the stored items."""
    malformed = [body for body, _ in MALFORMED.values()]
    valid = valid_messages()
    mixed: list[dict[str, Any] | str] = []
    valid_iter = iter(valid.values())
    for n, body in enumerate(malformed):
        mixed.append(body)
        if n % 6 == 5:
            mixed.append(next(valid_iter, body))
    mixed.extend(valid_iter)
    for start in range(0, len(mixed), 3):  # small batches: several bodies are close to the 256 KiB limit
        send(stack, *mixed[start : start + 3])
    # Messages that reused a malformed body in place of a valid one were sent twice: expect them twice.
    sent_malformed = Counter(m for m in mixed if isinstance(m, str) and m in set(malformed))
    rejected = drain_dlq(stack, expected=sum(sent_malformed.values()), timeout=90)
    stored = wait_closed(stack, valid, timeout=60)
    return {"sent_malformed": sent_malformed, "rejected": rejected, "stored": stored, "valid": valid}


def test_the_corpus_is_large_enough() -> None:
    assert len(MALFORMED) >= 50
    assert len({body for body, _ in MALFORMED.values()}) == len(MALFORMED)


def test_every_malformed_message_is_in_the_dlq_once_with_its_reason(outcome: dict[str, Any]) -> None:
    rejected: list[dict[str, Any]] = outcome["rejected"]
    assert Counter(m["Body"] for m in rejected) == outcome["sent_malformed"]
    expected = {body: reason for body, reason in MALFORMED.values()}
    for message in rejected:
        attributes = message["MessageAttributes"]
        reason = attributes["rejectionReason"]["StringValue"]
        assert expected[message["Body"]] in reason, (reason, message["Body"][:80])
        assert attributes["rejectedBy"]["StringValue"] == "StartInquiry"
        assert attributes["sourceMessageId"]["StringValue"]
        assert len(reason) <= 400
        # Rejected at once: the starter forwarded it; SQS did not redrive it after retries.
        assert message["Attributes"]["ApproximateReceiveCount"] == "1"


def test_malformed_messages_start_no_execution_and_only_multi_poll_refunds_get_one(
    stack: DevStack, outcome: dict[str, Any]
) -> None:
    names = sorted(e["name"].rsplit("-", 1)[0] for e in executions(stack))  # without the window id
    expected = (execution_name(RefundRef("alphapay", "default", "r", r), 1, "0" * 16) for r in MULTI_POLL)
    assert names == sorted(name.rsplit("-", 1)[0] for name in expected)


def test_the_starter_never_crashed(stack: DevStack, outcome: dict[str, Any]) -> None:
    logs = stack.cloud.function_logs("StartInquiryFunction")
    assert "Traceback" not in logs
    assert "Runtime." not in logs  # Runtime.ExitError, Runtime.Unknown: what a crashed invocation reports
    assert '"level":"ERROR"' not in logs.replace(" ", "")
    assert logs.count("message rejected") >= sum(outcome["sent_malformed"].values())


def test_valid_messages_in_the_same_batches_are_unaffected(stack: DevStack, outcome: dict[str, Any]) -> None:
    stored: dict[str, dict[str, Any]] = outcome["stored"]
    assert {key: item["status"] for key, item in stored.items()} == dict.fromkeys(outcome["valid"], "SUCCESS")
    grouped = events_by_key(stack, expected=len(stored))
    for item in stored.values():
        assert len(grouped[item["refundRequestId"] or item["refundId"]]) == 1


def test_injection_looking_ids_are_stored_verbatim_and_sent_verbatim(stack: DevStack, outcome: dict[str, Any]) -> None:
    stored: dict[str, dict[str, Any]] = outcome["stored"]
    sent_bodies = [json.loads(request.body) for request in stack.sandbox.requests()]
    for n, refund_request_id in enumerate(INJECTION_IDS):
        item = stored[f"{('antom', 'alipayplus')[n % 2]}#default#rr:{refund_request_id}"]
        assert item["refundRequestId"] == refund_request_id
        assert item["polls"] == 1  # answered SUCCESS: the id was not evaluated into another script or value
        assert any(body.get("refundRequestId") == refund_request_id for body in sent_bodies)


def test_requests_reach_only_the_profiles_url_and_never_for_a_rejected_message(
    stack: DevStack, outcome: dict[str, Any]
) -> None:
    sandbox_paths = {
        "/ams/sandbox/api/v1/payments/inquiryRefund",
        "/v1/payments/inquiryRefund",
        "/api/v2.0/payments/inquiryRefund",
    }
    valid_ids = set()
    for message in outcome["valid"].values():
        fields = json.loads(message) if isinstance(message, str) else message
        valid_ids |= {fields.get("refundId"), fields.get("refundRequestId")} - {None}
    requests = stack.sandbox.requests()
    assert requests
    for request in requests:
        assert request.path in sandbox_paths
        body = json.loads(request.body)
        asked = {body.get("refundId"), body.get("refundRequestId")} - {None}
        assert asked & valid_ids, asked  # the other id may be one the sandbox invented
    # The profile with plain http:// to a remote host was refused before any connection was attempted.
    logs = stack.cloud.function_logs("StartInquiryFunction")
    assert "203.0.113.10" not in logs


def test_nothing_the_stack_kept_holds_key_material(stack: DevStack, outcome: dict[str, Any]) -> None:
    extra = {"dlq": outcome["rejected"]}
    texts = stack_texts(stack, extra)
    assert len(texts) > 3
    assert leaks(texts, key_needles(stack.state_dir / "profiles")) == {}
