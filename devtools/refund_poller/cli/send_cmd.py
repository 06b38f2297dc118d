"""``refund-poller send``: put inquiry messages on the stack's InquiryQueue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from refund_poller.cli import options
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.errors import fail
from refund_poller.cli.render import print_json
from refund_poller.cli.target import Target, resolve_target

BATCH = 10  # SendMessageBatch takes at most 10 entries


def send(
    provider: Annotated[str | None, typer.Option("--provider", help="antom, alipayplus or alphapay.")] = None,
    refund_id: options.RefundId = None,
    refund_request_id: options.RefundRequestId = None,
    merchant: Annotated[
        str | None, typer.Option("--merchant", help="Merchant profile name (default: default).")
    ] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id", help="Echoed in logs and results.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Poll again even if a final result is stored.")] = False,
    interval: Annotated[int | None, typer.Option("--interval", help="Seconds between polls (override).")] = None,
    window: Annotated[int | None, typer.Option("--window", help="Seconds to keep polling (override).")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="JSON lines: one message per line.")] = None,
    raw: Annotated[str | None, typer.Option("--raw", help="A body sent as is; @FILE reads it from a file.")] = None,
    as_json: options.Json = False,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Send inquiry messages: one from the flags, many from a JSON-lines file, or any body as is.

    Prints the SQS message id of each message sent. The message contract is
    layers/refund_core/refund_core/schemas/inquiry-message.schema.json; the stack rejects invalid messages
    to the DLQ with a reason (see `refund-poller dlq`), so --raw is the way to try a rejection.

    Examples:

        refund-poller send --provider antom --refund-request-id processing2-success--r1

        refund-poller send --provider alphapay --refund-id notfound1-success--r2 --interval 5 --window 30

        refund-poller send --file refunds.jsonl --stack-name refund-poller --region eu-west-1

        refund-poller send --raw '{"provider": "antom"}'
    """
    flags = (provider, refund_id, refund_request_id, merchant, correlation_id, interval, window)
    sources = sum(1 for given in (any(v is not None for v in flags) or force, file, raw) if given)
    if sources != 1:
        fail("give either the message flags (--provider …), --file or --raw", hint="run 'refund-poller send --help'")
    if file is not None:
        bodies = _file_bodies(file)
    elif raw is not None:
        bodies = [_raw_body(raw)]
    else:
        message = _message(provider, refund_id, refund_request_id, merchant, correlation_id, force, interval, window)
        bodies = [json.dumps(message)]
    target = resolve_target(stack_name, profile, region, endpoint_url)
    sent = send_bodies(target, bodies)
    if as_json:
        print_json([{"messageId": message_id} for message_id in sent])
    else:
        for message_id in sent:
            typer.echo(message_id)


def send_bodies(target: Target, bodies: list[str]) -> list[str]:
    """Send bodies in batches of 10; the message ids in order. Any refused entry is an error."""
    sqs, queue_url = target.client("sqs"), target.output("InquiryQueueUrl")
    sent: list[str] = []
    with aws_errors(target.where):
        for start in range(0, len(bodies), BATCH):
            entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start : start + BATCH])]
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            if answer.get("Failed"):
                first = answer["Failed"][0]
                fail(f"SQS refused message {start + int(first['Id']) + 1}: {first.get('Message')}", exit_code=1)
            by_id = {entry["Id"]: entry["MessageId"] for entry in answer.get("Successful", [])}
            sent.extend(by_id[entry["Id"]] for entry in entries)
    return sent


def _message(
    provider: str | None,
    refund_id: str | None,
    refund_request_id: str | None,
    merchant: str | None,
    correlation_id: str | None,
    force: bool,
    interval: int | None,
    window: int | None,
) -> dict[str, Any]:
    if not provider:
        fail("--provider is required with the message flags", hint="antom, alipayplus or alphapay")
    if not refund_id and not refund_request_id:
        fail("give --refund-id and/or --refund-request-id", hint="AlphaPay needs --refund-id")
    message: dict[str, Any] = {"provider": provider, "merchant": merchant, "refundId": refund_id}
    message |= {"refundRequestId": refund_request_id, "correlationId": correlation_id}
    polling = {"intervalSeconds": interval, "maxDurationSeconds": window}
    message["polling"] = {k: v for k, v in polling.items() if v is not None} or None
    message["force"] = True if force else None
    return {k: v for k, v in message.items() if v is not None}


def _file_bodies(path: Path) -> list[str]:
    """The non-blank lines of a JSON-lines file, each checked to be JSON (sent as written)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    bodies = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            fail(f"{path}:{number}: not JSON: {exc}", hint="one JSON message per line; --raw sends any body as is")
        bodies.append(line)
    if not bodies:
        fail(f"{path} holds no messages", exit_code=EXIT_FAILURE)
    return bodies


def _raw_body(raw: str) -> str:
    if not raw.startswith("@"):
        return raw
    try:
        return Path(raw[1:]).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {raw[1:]}: {exc.strerror or exc}", hint="--raw @FILE reads the body from FILE")
