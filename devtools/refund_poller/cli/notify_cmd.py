"""``refund-poller notify``: ask the local stack's provider sandbox to push one refund notification now."""

from __future__ import annotations

import http.client
import json
from typing import Annotated, Any

import typer

from refund_core.providers import QueryError, RefundQuery
from refund_poller.cli import options
from refund_poller.cli.aws_errors import EXIT_FAILURE
from refund_poller.cli.errors import fail
from refund_poller.cli.local_state import STATE_FILE, LocalStackState
from refund_poller.cli.render import print_json, stdout
from refund_poller.cli.target import require_local_state
from refund_poller.sandbox.dialects import DIALECTS
from refund_poller.sandbox.notifications import MERCHANT_NAME, NotifyConfigError, check_notify_url
from refund_poller.sandbox.notifier import post

PUSH_TIMEOUT_S = 20.0  # the sandbox answers once the first attempt is done (it waits up to 10 s for it)


def notify(
    provider: options.Provider,
    status: Annotated[str, typer.Option("--status", help="SUCCESS or FAIL (AlphaPay: SUCCESS only).")],
    refund_request_id: options.RefundRequestId = None,
    refund_id: options.RefundId = None,
    merchant: options.Merchant = "default",
    as_json: options.Json = False,
    stack_name: options.StackName = None,
) -> None:
    """Have the provider sandbox push one signed refund notification to the local stack now.

    The sandbox signs it with the provider's key exactly as the provider would (Antom and wallets:
    Client-Id, Request-Time, RSA256; AlphaPay: Merchant-Code, Request-Time, Nonce, RS256) and sends it to
    <notify_base_url>/notify/<provider>/<merchant>. Antom and wallet notifications not acknowledged are
    retried on Antom's schedule (0 s, 2 min, 10 min, 10 min, 1 h, 2 h, 6 h, 15 h); AlphaPay pushes
    SUCCESS only, once. For testing an integration: local stack only (`refund-poller local up`).

    Prints the first attempt and the receiver's reply. Exit status 1 when the receiver did not
    acknowledge it (or the stack or sandbox cannot be reached), 2 for refused arguments.

    Examples:

        refund-poller notify --provider antom --refund-request-id processing2-success--r1 --status SUCCESS

        refund-poller notify --provider alphapay --merchant default --refund-id SBXR0123 --status SUCCESS --json
    """
    body = _push_request(provider, merchant, refund_id, refund_request_id, status)
    if stack_name:
        fail(
            "notify works on the local stack only: a deployed stack gets its notifications from the providers",
            hint="run it next to `refund-poller local up`, without --stack-name",
        )
    state = require_local_state()
    body["notifyUrl"] = f"{_notify_base_url(state)}/notify/{provider}/{merchant}"
    reply = _ask_sandbox(state.sandbox_url, body)
    if as_json:
        print_json(reply)
    first = reply.get("first")
    if first is None:  # held back (delayed) beyond the sandbox's wait: it goes out on its own
        if not as_json:
            stdout.print(f"notification {reply.get('notification')} queued for {body['notifyUrl']}")
        return
    if not as_json:
        stdout.print(_describe(first))
    if first.get("outcome") != "acknowledged":
        fail(
            f"the receiver did not acknowledge the notification ({_reply_of(first)})",
            hint=_retry_hint(provider),
            exit_code=EXIT_FAILURE,
        )


def _push_request(
    provider: str, merchant: str, refund_id: str | None, refund_request_id: str | None, status: str
) -> dict[str, Any]:
    """The admin push request, or a one-line error naming the option and the rule."""
    if provider not in DIALECTS:
        fail(f"--provider: must be one of {', '.join(DIALECTS)}")
    if status not in ("SUCCESS", "FAIL"):
        fail("--status: must be SUCCESS or FAIL")
    if status not in {DIALECTS[provider].statuses[state] for state in DIALECTS[provider].notified_states}:
        fail(f"--status: {provider} pushes SUCCESS only (never FAIL)", hint="poll to learn a failed AlphaPay refund")
    if not MERCHANT_NAME.fullmatch(merchant):
        fail("--merchant: must match [A-Za-z0-9_-]{1,64}")
    try:
        RefundQuery(refund_id=refund_id, refund_request_id=refund_request_id)
    except QueryError as exc:
        fail(f"{exc}", hint="give --refund-request-id and/or --refund-id")
    body: dict[str, Any] = {"provider": provider, "merchant": merchant, "status": status}
    body |= {k: v for k, v in (("refundId", refund_id), ("refundRequestId", refund_request_id)) if v}
    return body


def _notify_base_url(state: LocalStackState) -> str:
    """The local stack's notification endpoint, as `local up` recorded it."""
    if not state.notify_base_url:
        fail(
            f"the local stack in {STATE_FILE} serves no notification endpoint (no notify_base_url in its state file)",
            hint="restart it with `refund-poller local up` from a version that serves /notify/{provider}/{merchant}",
            exit_code=EXIT_FAILURE,
        )
    try:
        return check_notify_url(state.notify_base_url, "notify_base_url").rstrip("/")
    except NotifyConfigError as exc:
        fail(f"{STATE_FILE}: {exc}", hint="restart the local stack", exit_code=EXIT_FAILURE)


def _ask_sandbox(sandbox_url: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"{sandbox_url}/_sandbox/notify/push"
    headers = {"Content-Type": "application/json"}
    try:
        status, reply = post(url, headers, json.dumps(body).encode(), timeout=PUSH_TIMEOUT_S)
        document = json.loads(reply)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        fail(
            f"cannot reach the provider sandbox at {sandbox_url}: {exc}",
            hint="is `refund-poller local up` still running?",
            exit_code=EXIT_FAILURE,
        )
    if status == 400:
        fail(f"the sandbox refused the push: {document.get('error')}")
    if status not in (200, 202) or not isinstance(document, dict):
        fail(f"the sandbox answered HTTP {status}", hint="restart `refund-poller local up`", exit_code=EXIT_FAILURE)
    return document


def _describe(first: dict[str, Any]) -> str:
    refund = first.get("refundRequestId") or first.get("refundId")
    return (
        f"{first['provider']} {first['status']} notification {first['notification']} for {refund} "
        f"→ {first['url']}: {_reply_of(first)}"
    )


def _reply_of(first: dict[str, Any]) -> str:
    if first.get("replyStatus") is None:
        return f"{first.get('outcome')}{': ' + first['error'] if first.get('error') else ''}"
    return f"HTTP {first['replyStatus']} {first.get('outcome')}"


def _retry_hint(provider: str) -> str:
    if DIALECTS[provider].retry_intervals:
        return "the sandbox retries on the provider's schedule until acknowledged; its attempts: GET /_sandbox/pushes"
    return f"{provider} never retries a notification: the refund's status comes from polling"
