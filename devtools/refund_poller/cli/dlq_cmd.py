"""``refund-poller dlq``: the messages the stack set aside, why, and ``dlq redrive`` to try them again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from refund_poller.cli import options
from refund_poller.cli.aws_errors import aws_errors
from refund_poller.cli.dlq_messages import DlqMessage, max_receive_count, peek, redrive, with_dlq
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
    all_messages: Annotated[bool, typer.Option("--all", help="Move every message.")] = False,
    message_id: Annotated[
        str | None, typer.Option("--message-id", help="Move this one (DLQ or original message id).")
    ] = None,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Move DLQ messages back to the inquiry queue (sent again as they are, then deleted from the DLQ).

    Examples:

        refund-poller dlq redrive --all

        refund-poller dlq redrive --message-id 0f4e9a3c-5d1b-4c1e-9a57-3b0d4c8e2f11
    """
    if all_messages == (message_id is not None):
        fail("give either --all or --message-id ID", hint="`refund-poller dlq` lists the message ids")
    target = resolve_target(stack_name, profile, region, endpoint_url)
    sqs, dlq_url, queue_url = target.client("sqs"), target.output("InquiryDLQUrl"), target.output("InquiryQueueUrl")
    moved: list[DlqMessage] = []

    def move(messages: list[DlqMessage]) -> set[str]:
        chosen = [m for m in messages if all_messages or message_id in (m.message_id, m.source_message_id)]
        handles = redrive(sqs, dlq_url, queue_url, chosen)
        moved.extend(chosen)
        return handles

    with aws_errors(target.where):
        with_dlq(sqs, dlq_url, None, move)
    if message_id is not None and not moved:
        fail(f"no message {message_id} in the DLQ", hint="`refund-poller dlq` lists the message ids", exit_code=1)
    for message in moved:
        stdout.print(f"redriven {message.message_id}", markup=False)
    stdout.print(f"{len(moved)} message(s) moved to the inquiry queue")


def _table(messages: list[DlqMessage]) -> Table:
    table = Table(title=f"{len(messages)} message(s) in the DLQ", title_justify="left")
    for column in ("message id", "sent", "reason", "body"):
        table.add_column(column, overflow="fold")
    for m in messages:
        body = m.body if len(m.body) <= 120 else m.body[:119] + "…"
        table.add_row(m.message_id, m.sent_at, m.reason.replace("[", "\\["), body.replace("[", "\\["))
    return table
