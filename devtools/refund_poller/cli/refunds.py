"""Finding a refund's stored item by either id, as the starter keys it (docs/internals.md, Results table)."""

from __future__ import annotations

from typing import Any

from refund_core.store import public_view
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
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
    store = target.store()
    with aws_errors(target.where):
        key = store.find_key(provider, merchant, refund_id=refund_id, refund_request_id=refund_request_id)
        item = store.get(key) if key else None
        if item is not None:
            return public_view(item)
    return None


def require_item(
    target: Target, provider: str, merchant: str, refund_id: str | None, refund_request_id: str | None
) -> dict[str, Any]:
    check_lookup(provider, refund_id, refund_request_id)
    item = find_item(target, provider, merchant, refund_id, refund_request_id)
    if item is None:
        ids = " / ".join(i for i in (refund_id, refund_request_id) if i)
        fail(
            f"no stored refund {ids} for {provider}/{merchant} on {target.where}",
            hint="check the ids and --merchant; an inquiry rejected as invalid is in `refund-poller dlq`",
            exit_code=EXIT_FAILURE,
        )
    return item
