"""Reading the DLQ without consuming it, and moving its messages back to the inquiry queue."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

HIDE_SECONDS = 30  # long enough to read the whole queue once; released at once afterwards
SHORT_ID = 8  # like git's short hashes: the head of a message id, enough among the few messages of a DLQ
STARTER = "StartInquiry"  # the rejectedBy attribute of a message the starter found invalid


@dataclass(frozen=True)
class DlqMessage:
    message_id: str
    sent_at: str
    reason: str
    body: str
    source_message_id: str | None
    receipt_handle: str
    rejected_by: str | None = None
    """Who set the message aside as invalid (the starter), None when SQS moved it after failed deliveries."""

    @property
    def rejected_as_invalid(self) -> bool:
        """Rejected by the starter's validation: sent again unchanged, it would only be rejected again."""
        return self.rejected_by == STARTER

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` is this message's id or its send-time id, whole or a prefix of at least SHORT_ID."""
        ids = [self.message_id, self.source_message_id or ""]
        return any(i == wanted or (len(wanted) >= SHORT_ID and i.startswith(wanted)) for i in ids)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["receipt_handle"]
        return {_camel(k): v for k, v in data.items()}


def max_receive_count(sqs: Any, queue_url: str) -> int | None:
    """maxReceiveCount of the inquiry queue's redrive policy (how often SQS delivers before giving up)."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    policy = json.loads(attributes.get("RedrivePolicy") or "{}")
    count = policy.get("maxReceiveCount")
    return int(count) if count is not None else None


def with_dlq(sqs: Any, dlq_url: str, deliveries: int | None, act: Callable[[list[DlqMessage]], set[str]]) -> None:
    """Receive every message (hidden meanwhile), let ``act`` consume some (returns their receipt handles),
    and make the others visible again."""
    messages = _receive_all(sqs, dlq_url, deliveries)
    consumed: set[str] = set()
    try:
        consumed = act(messages)
    finally:
        keep = [m for m in messages if m.receipt_handle not in consumed]
        for start in range(0, len(keep), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                for n, m in enumerate(keep[start : start + 10])
            ]
            sqs.change_message_visibility_batch(QueueUrl=dlq_url, Entries=entries)


def peek(sqs: Any, dlq_url: str, deliveries: int | None) -> list[DlqMessage]:
    """Every message in the DLQ, left there."""
    seen: list[DlqMessage] = []

    def keep_all(messages: list[DlqMessage]) -> set[str]:
        seen.extend(messages)
        return set()

    with_dlq(sqs, dlq_url, deliveries, keep_all)
    return seen


def redrive(sqs: Any, dlq_url: str, queue_url: str, messages: list[DlqMessage]) -> set[str]:
    """Send each body to the inquiry queue, then delete it from the DLQ; the receipt handles moved."""
    moved: set[str] = set()
    for message in messages:
        sqs.send_message(QueueUrl=queue_url, MessageBody=message.body)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message.receipt_handle)
        moved.add(message.receipt_handle)
    return moved


def _receive_all(sqs: Any, dlq_url: str, deliveries: int | None) -> list[DlqMessage]:
    found: dict[str, DlqMessage] = {}
    while True:
        answer = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=HIDE_SECONDS,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        batch = answer.get("Messages", [])
        new = [_message(raw, deliveries) for raw in batch if raw["MessageId"] not in found]
        if not new:
            return list(found.values())
        found.update((m.message_id, m) for m in new)


def _message(raw: dict[str, Any], deliveries: int | None) -> DlqMessage:
    attributes = raw.get("MessageAttributes", {})
    reason = attributes.get("rejectionReason", {}).get("StringValue")
    rejected_by = attributes.get("rejectedBy", {}).get("StringValue") if reason is not None else None
    if reason is None:  # moved here by SQS after the starter kept failing on it
        reason = f"failed {deliveries} deliveries" if deliveries else "failed repeated deliveries"
    sent = int(raw.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
    return DlqMessage(
        message_id=raw["MessageId"],
        sent_at=datetime.fromtimestamp(sent, UTC).isoformat(timespec="seconds"),
        reason=reason,
        body=raw["Body"],
        source_message_id=attributes.get("sourceMessageId", {}).get("StringValue"),
        receipt_handle=raw["ReceiptHandle"],
        rejected_by=rejected_by,
    )


def short(message_id: str | None) -> str:
    return (message_id or "-")[:SHORT_ID]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
