"""``refund-poller status``: a refund's stored outcome."""

from __future__ import annotations

from refund_poller.cli import options
from refund_poller.cli.item_view import json_item, status_table
from refund_poller.cli.refunds import require_item
from refund_poller.cli.render import print_json, stdout
from refund_poller.cli.target import resolve_target

# The stack runs with RecordEveryPoll=false (docs/internals.md, "Express cost mode").
POLLS_NOT_LIVE = (
    "note: polls are not counted live on this stack (RecordEveryPoll=false): polls, lastPollAt and lastObservation "
    "change only when the status changes; the whole count is written when the polling window closes. "
    "`refund-poller trace` shows every poll."
)


def status(
    provider: options.Provider,
    refund_id: options.RefundId = None,
    refund_request_id: options.RefundRequestId = None,
    merchant: options.Merchant = "default",
    as_json: options.Json = False,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Show what the stack has stored about one refund, found by either id.

    The status (SUCCESS, FAIL, PROCESSING, NOT_FOUND, UNKNOWN, UNRESOLVED or ERROR) and what it means first, then
    why the window ended, the last answer explained, both ids, amount, polling, times (ISO 8601 UTC with "12 s ago")
    and the execution ARN (see `refund-poller trace`). `--json` prints the whole stored item, its epoch-second
    fields (windowEndsAt, expiresAt) as ISO strings too. Exit status 1 when the stack has no such refund.

    Examples:

        refund-poller status --provider antom --refund-request-id processing2-success--r1

        refund-poller status --provider alphapay --refund-id SBXR0123 --json | jq .status

        refund-poller status --provider antom --merchant acme --refund-id 2024010112345 --stack-name refund-poller
    """
    target = resolve_target(stack_name, profile, region, endpoint_url)
    item = require_item(target, provider, merchant, refund_id, refund_request_id)
    if as_json:
        print_json(json_item(item))
        return
    stdout.print(status_table(f"{provider}/{merchant} {refund_request_id or refund_id}", item))
    if item.get("pollsLive") is False and item.get("pollingState") == "POLLING":
        stdout.print(POLLS_NOT_LIVE)
