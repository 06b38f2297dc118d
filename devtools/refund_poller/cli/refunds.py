"""Finding a refund's stored item by either id, as the starter keys it (docs/internals.md, Results table)."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from refund_core.store import public_view
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.dlq_messages import peek, short
from refund_poller.cli.errors import fail
from refund_poller.cli.target import Target

PROVIDERS = ("antom", "alipayplus", "alphapay")


def check_lookup(provider: str, refund_id: str | None, refund_request_id: str | None) -> None:
    if provider not in PROVIDERS:
        fail(f"unknown provider {provider!r}", hint=f"use one of: {', '.join(PROVIDERS)}")
    if not refund_id and not refund_request_id:
        fail("give --refund-id or --refund-request-id", hint="either id finds the refund")


def find_item(
    target: Target, provider: str, merchant: str, refund_id: str | None, refund_request_id: str | None
) -> dict[str, Any] | None:
    """The stored item (public view) of a refund, or None when the stack has never seen it."""
    found = find_keyed_item(target, provider, merchant, refund_id, refund_request_id)
    return found[1] if found else None


def find_keyed_item(
    target: Target, provider: str, merchant: str, refund_id: str | None, refund_request_id: str | None
) -> tuple[str, dict[str, Any]] | None:
    """The item's key (which names its executions) and its public view, or None."""
    store = target.store()
    with aws_errors(target.where):
        key = store.find_key(provider, merchant, refund_id=refund_id, refund_request_id=refund_request_id)
        item = store.get(key) if key else None
        if key and item is not None:
            return key, public_view(item)
    return None


def require_item(
    target: Target, provider: str, merchant: str, refund_id: str | None, refund_request_id: str | None
) -> dict[str, Any]:
    check_lookup(provider, refund_id, refund_request_id)
    item = find_item(target, provider, merchant, refund_id, refund_request_id)
    if item is None:
        missing(target, provider, merchant, refund_id, refund_request_id)
    return item


def missing(
    target: Target, provider: str, merchant: str, refund_id: str | None, refund_request_id: str | None
) -> NoReturn:
    """Fail saying why the stack has no item: its message is in the DLQ, the queue still holds messages (queued,
    not picked up yet), or nothing is known of it."""
    ids = " / ".join(i for i in (refund_id, refund_request_id) if i)
    none = f"no stored refund {ids} for {provider}/{merchant} on {target.where}"
    sqs = target.client("sqs")
    with aws_errors(target.where):
        for message in peek(sqs, target.output("InquiryDLQUrl"), None):
            if _about(message.body, provider, merchant, refund_id, refund_request_id):
                fail(
                    f"{none}: its message is in the DLQ ({message.reason})",
                    hint=f"`refund-poller dlq` lists it as {short(message.message_id)}",
                    exit_code=EXIT_FAILURE,
                )
        attributes = sqs.get_queue_attributes(
            QueueUrl=target.output("InquiryQueueUrl"),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    waiting = int(attributes.get("ApproximateNumberOfMessages", 0))
    handled = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
    if waiting or handled:
        fail(
            f"{none} yet: probably queued, not picked up yet (the inquiry queue holds {waiting} waiting and"
            f" {handled} being handled)",
            hint="ask again in a few seconds, or follow it: `refund-poller trace --follow` with the same ids",
            exit_code=EXIT_FAILURE,
        )
    fail(
        f"{none}: unknown (the inquiry queue is empty and the DLQ holds no message for it)",
        hint="check the ids and --merchant (the first id it was sent with finds it), and that it was sent here",
        exit_code=EXIT_FAILURE,
    )


def _about(body: str, provider: str, merchant: str, refund_id: str | None, refund_request_id: str | None) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    if not isinstance(message, dict) or message.get("provider") != provider:
        return False
    if str(message.get("merchant") or "default") != merchant:
        return False
    return bool(
        (refund_id and message.get("refundId") == refund_id)
        or (refund_request_id and message.get("refundRequestId") == refund_request_id)
    )
