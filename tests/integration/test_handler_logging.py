"""Log keys and metrics of the real handlers on the local stack: a warm Inquire never logs the previous refund's
ids, concurrent StartInquiry records log their own ids, and a batch's metric counts are exact."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from refund_core.aws.profiles import secret_name
from refund_poller.devstack import FAST_POLICY, DevStack

# What a merchant may put in an id besides letters and digits (the schema allows up to 64 characters).
ID_ALPHABET = "abcXYZ0189 /.:-_退款訂單番号éß"
MERCHANT = "shop-east_1"  # merchant names may contain "-"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("handler-logging"), parameter_overrides=FAST_POLICY) as running:
        add_merchant(running, MERCHANT)
        yield running


def add_merchant(stack: DevStack, merchant: str, base_url: str | None = None) -> None:
    """The sandbox's default profiles, also under ``merchant`` (the sandbox knows the caller by its client id);
    ``base_url`` sends that merchant's inquiries to another server."""
    prefix = str(stack.outputs["ProfileSecretPrefix"])
    for provider in ("antom", "alipayplus", "alphapay"):
        profile = json.loads(stack.sandbox.profiles[provider].read_text())
        if base_url is not None:
            profile["baseUrl"] = base_url
        stack.cloud.put_secret(secret_name(prefix, provider, merchant), profile)


def refund_ids(script: str, count: int, seed: int) -> list[str]:
    """``count`` distinct ids that play ``script`` in the sandbox, drawn from the whole range a merchant may send
    (up to 64 characters); a leading index keeps their execution names apart."""
    draw = random.Random(seed)
    ids = []
    for index in range(count):
        head = f"{script}--{index:02d}"
        tail = "".join(draw.choice(ID_ALPHABET) for _ in range(draw.randint(1, 64 - len(head))))
        ids.append(head + tail)
    return ids


def sqs_event(*bodies: Mapping[str, Any] | str) -> dict[str, Any]:
    """An SQS event as the event source mapping builds it (same keys as events/sqs_*.json)."""
    template = json.loads(Path("events/sqs_antom_batch.json").read_text(encoding="utf-8"))["Records"][0]
    return {
        "Records": [
            {**template, "messageId": str(uuid.uuid4()), "body": body if isinstance(body, str) else json.dumps(body)}
            for body in bodies
        ]
    }


def json_lines(logs: str) -> list[dict[str, Any]]:
    """The structured (JSON) lines of an invocation's logs: Powertools' log records and EMF metric records."""
    lines = []
    for line in logs.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def log_records(logs: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(logs) if "_aws" not in line]


def metric_counts(logs: str) -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
    """Sum of each metric's values in the EMF records, by metric name and its dimensions other than service."""
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for record in json_lines(logs):
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            names = {name for dimension_set in directive["Dimensions"] for name in dimension_set} - {"service"}
            dimensions = tuple(sorted((name, str(record[name])) for name in names))
            for metric in directive["Metrics"]:
                values = record[metric["Name"]]
                counts[metric["Name"], dimensions] += sum(values) if isinstance(values, list) else values
    return counts


def inquire_state(inquiry: dict[str, str]) -> dict[str, Any]:
    """The Inquire task's input for a refund's first poll of a window."""
    refund_key = inquiry.get("refundRequestId") or inquiry["refundId"]
    return {
        "inquiry": {**inquiry, "key": f"{inquiry['provider']}#{inquiry['merchant']}#{refund_key}"},
        "policy": {"intervalSeconds": 1, "maxDurationSeconds": 8},
        "deadline": 4102444800.0,
        "generation": 1,
        "polls": 0,
        "notFoundPolls": 0,
    }


def test_a_warm_inquire_never_logs_the_previous_refunds_ids(stack: DevStack) -> None:
    first_id, second_id = refund_ids("processing", 2, seed=11)
    first = {"provider": "antom", "merchant": MERCHANT, "refundRequestId": first_id, "correlationId": "order-A 1/2"}
    second = {"provider": "antom", "merchant": MERCHANT, "refundId": second_id}  # no request id, no correlation id

    before = stack.cloud.invoke("InquireFunction", inquire_state(first))
    after = stack.cloud.invoke("InquireFunction", inquire_state(second))

    assert before.function_error is None and after.function_error is None, (before.payload, after.payload)
    first_lines, second_lines = log_records(before.logs), log_records(after.logs)
    assert [line["refundRequestId"] for line in first_lines] == [first_id] * len(first_lines)
    assert second_lines and all(line["cold_start"] is False for line in second_lines)  # the same warm container
    for line in second_lines:
        assert line["refundId"] == second_id
        assert "refundRequestId" not in line, line
        assert "correlationId" not in line, line


def test_concurrent_records_log_their_own_ids(stack: DevStack) -> None:
    ids = refund_ids("slow300ms-success", 10, seed=12)  # all ten answered at about the same time
    # Three merchants without a profile: valid messages, rejected once the record looks the profile up.
    merchants = [MERCHANT] * 7 + ["no-such-shop"] * 3
    bodies = [
        {"provider": "alipayplus", "merchant": merchant, "refundRequestId": refund, "correlationId": f"c{n}:{refund}"}
        for n, (merchant, refund) in enumerate(zip(merchants, ids, strict=True))
    ]

    result = stack.cloud.invoke("StartInquiryFunction", sqs_event(*bodies))

    assert result.function_error is None and result.payload == {"batchItemFailures": []}, result.payload
    sent = {body["refundRequestId"]: body for body in bodies}
    lines = [line for line in log_records(result.logs) if line["message"] in ("message handled", "message rejected")]
    # Each record's line names the refund it is about, and only that refund, whether it was handled or rejected.
    assert sorted(line.get("refundRequestId", "") for line in lines) == sorted(sent)
    for line in lines:
        body = sent[line["refundRequestId"]]
        assert (line["correlationId"], line["merchant"]) == (body["correlationId"], body["merchant"]), line
        assert line["message"] == ("message handled" if body["merchant"] == MERCHANT else "message rejected")


def test_metric_counts_of_a_concurrent_batch_are_exact(stack: DevStack) -> None:
    successes = refund_ids("success", 3, seed=13)
    forged = refund_ids("badsig1-success", 3, seed=14)  # a SUCCESS signed with a key not the provider's
    processing = refund_ids("processing1-success", 2, seed=15)
    bodies: list[dict[str, Any] | str] = [
        *({"provider": "antom", "merchant": MERCHANT, "refundRequestId": refund} for refund in successes),
        *({"provider": "alipayplus", "refundRequestId": refund} for refund in forged),
        *({"provider": "alphapay", "merchant": MERCHANT, "refundId": refund} for refund in processing),
        {"provider": "antom"},  # no refund id: rejected
        "not json",  # rejected
    ]

    result = stack.cloud.invoke("StartInquiryFunction", sqs_event(*bodies))

    assert result.function_error is None and result.payload == {"batchItemFailures": []}, result.payload
    counts = metric_counts(result.logs)
    assert counts["Polls", ()] == 8
    assert counts["RejectedMessages", ()] == 2
    observations = {dims: n for (name, dims), n in counts.items() if name == "Observations"}
    assert observations == {
        (("provider", "antom"), ("status", "SUCCESS")): 3,
        (("provider", "alipayplus"), ("status", "UNKNOWN")): 3,
        (("provider", "alphapay"), ("status", "PROCESSING")): 2,
    }
    untrusted = {dims: n for (name, dims), n in counts.items() if name == "UntrustedAnswers"}
    # Counted by why the answer was not trusted: the adapter's distrust tag (or "unverified" where it sets none).
    assert sum(untrusted.values()) == 3
    assert set(untrusted) <= {(("reason", "bad-signature"),), (("reason", "unverified"),)}, untrusted
    assert counts["ProviderLatency", ()] > 0
    latencies = [line for line in json_lines(result.logs) if "ProviderLatency" in line]
    assert sum(len(line["ProviderLatency"]) for line in latencies) == 8
