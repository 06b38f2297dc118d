"""``refund-poller dlq``: the messages the stack set aside, why, and ``dlq redrive`` to try them again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from refund_poller.cli import options
from refund_poller.cli.aws_errors import aws_errors
from refund_poller.cli.dlq_messages import SHORT_ID, DlqMessage, max_receive_count, peek, redrive, short, with_dlq
from refund_poller.cli.errors import fail
from refund_poller.cli.render import print_json, stdout
from refund_poller.cli.target import resolve_target

app = typer.Typer(no_args_is_help=False, add_completion=False)


@app.callback(invoke_without_command=True)
def dlq(
    ctx: typer.Context,
    as_json: options.Json = False,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """List the messages in the DLQ with the reason each was set aside.

    A message the starter rejected as invalid carries its reason; one SQS moved there after the starter
    failed on it repeatedly says "failed N deliveries". Listing leaves the messages in the queue.
    `refund-poller dlq redrive` sends them back to the inquiry queue once the cause is fixed.

    The table fits 80 columns: "id" is the head of the DLQ message id and "sent as" the head of the id
    `refund-poller send` printed for it; either (or a longer prefix) works with `dlq redrive --message-id`.
    --json gives the whole ids.

    Examples:

        refund-poller dlq

        refund-poller dlq --json | jq '.[].reason'

        refund-poller dlq redrive --all --stack-name refund-poller
    """
    if ctx.invoked_subcommand is not None:
        return
    target = resolve_target(stack_name, profile, region, endpoint_url)
    sqs = target.client("sqs")
    with aws_errors(target.where):
        deliveries = max_receive_count(sqs, target.output("InquiryQueueUrl"))
        messages = peek(sqs, target.output("InquiryDLQUrl"), deliveries)
    if as_json:
        print_json([m.to_json() for m in messages])
        return
    if not messages:
        stdout.print("the DLQ is empty")
        return
    stdout.print(_table(messages))


@app.command("redrive")
def redrive_command(
    all_messages: Annotated[
        bool, typer.Option("--all", help="Move every message (but see --include-rejected).")
    ] = False,
    message_id: Annotated[
        str | None,
        typer.Option(
            "--message-id", help="Move this one: its DLQ id or send-time id, whole or the first 8+ characters."
        ),
    ] = None,
    include_rejected: Annotated[
        bool,
        typer.Option(
            "--include-rejected",
            help="Move messages the starter rejected as invalid too (they come back unless fixed).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be moved and skipped; move nothing.")
    ] = False,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Move DLQ messages back to the inquiry queue (sent again as they are, then deleted from the DLQ).

    Messages the starter rejected as invalid are skipped: sent again unchanged they would be rejected
    again at once. --include-rejected moves them too (e.g. after a stack update that accepts them).
    --dry-run only says what would be moved and skipped.

    Examples:

        refund-poller dlq redrive --all --dry-run

        refund-poller dlq redrive --all

        refund-poller dlq redrive --message-id 0f4e9a3c
    """
    if all_messages == (message_id is not None):
        fail("give either --all or --message-id ID", hint="`refund-poller dlq` lists the message ids")
    target = resolve_target(stack_name, profile, region, endpoint_url)
    sqs, dlq_url, queue_url = target.client("sqs"), target.output("InquiryDLQUrl"), target.output("InquiryQueueUrl")
    moved: list[DlqMessage] = []
    skipped: list[DlqMessage] = []

    def move(messages: list[DlqMessage]) -> set[str]:
        named = [m for m in messages if message_id is None or m.matches(message_id)]
        if message_id is not None and len(named) > 1:
            ids = ", ".join(short(m.message_id) for m in named)
            fail(f"--message-id {message_id} matches {len(named)} messages ({ids})", hint="give more of the id")
        skipped.extend(m for m in named if m.rejected_as_invalid and not include_rejected)
        moved.extend(m for m in named if m not in skipped)
        return set() if dry_run else redrive(sqs, dlq_url, queue_url, moved)

    with aws_errors(target.where):
        with_dlq(sqs, dlq_url, None, move)
    if message_id is not None and not moved and not skipped:
        fail(f"no message {message_id} in the DLQ", hint="`refund-poller dlq` lists the message ids", exit_code=1)
    verb = "would redrive" if dry_run else "redriven"
    for message in moved:
        stdout.print(f"{verb} {short(message.message_id)} (sent as {short(message.source_message_id)})", markup=False)
    for message in skipped:
        stdout.print(f"skipped {short(message.message_id)}: rejected as invalid: {message.reason}", markup=False)
    summary = f"{len(moved)} message(s) {'would be ' if dry_run else ''}moved to the inquiry queue"
    if skipped:
        summary += f", {len(skipped)} skipped as invalid (--include-rejected moves them too)"
    stdout.print(summary + (" (dry run: nothing moved)" if dry_run else ""), markup=False)
    if message_id is not None and not moved:
        raise typer.Exit(1)


def _table(messages: list[DlqMessage]) -> Table:
    """Short ids and times that never wrap; the reason folds within its column, the body is cut to one line."""
    table = Table(
        title=f"{len(messages)} message(s) in the DLQ", title_justify="left", box=box.SIMPLE_HEAD, expand=True
    )
    table.add_column("id", width=SHORT_ID, no_wrap=True)
    table.add_column("sent as", width=SHORT_ID, no_wrap=True)
    table.add_column("sent UTC", width=11, no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    table.add_column("body", no_wrap=True, overflow="ellipsis", ratio=1)
    for m in messages:
        sent = m.sent_at.replace("T", " ")[5:16]  # MM-DD HH:MM
        table.add_row(short(m.message_id), short(m.source_message_id), sent, _escape(m.reason), _escape(m.body[:200]))
    return table


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
