"""``refund-poller send``: put inquiry messages on the stack's InquiryQueue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from refund_core.service import RejectedMessageError
from refund_core.validation import parse_message
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
    validate: Annotated[
        bool,
        typer.Option(
            "--validate/--no-validate",
            help="Check each message against the message schema before sending; --no-validate sends it anyway "
            "(to try a rejection).",
        ),
    ] = True,
    as_json: options.Json = False,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Send inquiry messages: one from the flags, many from a JSON-lines file, or any body as is.

    Each message is first checked against the message contract,
    layers/refund_core/refund_core/schemas/inquiry-message.schema.json, with the same code the stack's
    starter uses: an invalid one is refused (exit status 2, the field and the rule named) and nothing is
    sent. --no-validate sends it anyway, to see the stack reject it to the DLQ (see `refund-poller dlq`).

    Prints one line per message sent: the SQS message id, then the refund it is for
    (provider, merchant and id); --json prints the same as a list of objects.

    Examples:

        refund-poller send --provider antom --refund-request-id processing2-success--r1

        refund-poller send --provider alphapay --refund-id notfound1-success--r2 --interval 5 --window 30

        refund-poller send --file refunds.jsonl --stack-name refund-poller --region eu-west-1

        refund-poller send --no-validate --raw '{"provider": "antom"}'
    """
    flags = (provider, refund_id, refund_request_id, merchant, correlation_id, interval, window)
    sources = sum(1 for given in (any(v is not None for v in flags) or force, file, raw) if given)
    if sources != 1:
        fail("give either the message flags (--provider …), --file or --raw", hint="run 'refund-poller send --help'")
    if file is not None:
        bodies = _file_bodies(file)
    elif raw is not None:
        bodies = [(1, _raw_body(raw))]
    else:
        message = _message(provider, refund_id, refund_request_id, merchant, correlation_id, force, interval, window)
        bodies = [(1, json.dumps(message))]
    refunds = [_checked(body, number if file is not None else None, validate) for number, body in bodies]
    target = resolve_target(stack_name, profile, region, endpoint_url)
    sent = send_bodies(target, [body for _, body in bodies])
    if as_json:
        print_json([{"messageId": message_id, **refund} for message_id, refund in zip(sent, refunds, strict=True)])
    else:
        for message_id, refund in zip(sent, refunds, strict=True):
            typer.echo(f"{message_id}  {_refund_words(refund)}")


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


# The message fields the flags set: an invalid field is reported with the flag that set it.
_FLAG_OF_FIELD = {
    "provider": "--provider",
    "merchant": "--merchant",
    "refundId": "--refund-id",
    "refundRequestId": "--refund-request-id",
    "correlationId": "--correlation-id",
    "polling.intervalSeconds": "--interval",
    "polling.maxDurationSeconds": "--window",
}
_REFUND_FIELDS = ("provider", "merchant", "refundId", "refundRequestId")


def _checked(body: str, line: int | None, validate: bool) -> dict[str, Any]:
    """The refund a body is for (the fields that name it); an invalid body is refused unless not validating."""
    try:
        message = parse_message(body)
    except RejectedMessageError as exc:
        if validate:
            where = f"line {line}: " if line is not None else ""
            reason = str(exc)
            flag = _FLAG_OF_FIELD.get(reason.split(":", 1)[0])
            hint = f"{flag} sets that field; " if flag and line is None else ""
            fail(
                f"invalid message: {where}{reason}; nothing sent",
                hint=hint
                + "the schema is refund_core/schemas/inquiry-message.schema.json; --no-validate sends it anyway",
            )
        return _named_refund(body)
    refund = {
        "provider": message.provider,
        "merchant": message.merchant,
        "refundId": message.refund_id,
        "refundRequestId": message.refund_request_id,
    }
    return {k: v for k, v in refund.items() if v is not None}


def _named_refund(body: str) -> dict[str, Any]:
    """Whatever refund an invalid body names (strings only): it is sent as is."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in _REFUND_FIELDS if isinstance(data.get(k), str)}


def _refund_words(refund: dict[str, Any]) -> str:
    if not refund:
        return "(not a refund message)"
    ids = [f"{name}={refund[name]!r}" for name in ("refundId", "refundRequestId") if name in refund]
    return " ".join([refund.get("provider", "?"), refund.get("merchant", "default"), *ids])


def _read_text(path: Path, hint: str) -> str:
    """A file's text as UTF-8; unreadable or undecodable files are one error line."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", hint=hint)
    except UnicodeDecodeError as exc:
        fail(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded)", hint=hint + "; save it as UTF-8")


def _file_bodies(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of a JSON-lines file with their line numbers, each checked to be JSON."""
    lines = _read_text(path, "--file takes a JSON-lines file, one message per line").splitlines()
    bodies = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            fail(f"{path}:{number}: not JSON: {exc}", hint="one JSON message per line; --raw sends any body as is")
        bodies.append((number, line))
    if not bodies:
        fail(f"{path} holds no messages", exit_code=EXIT_FAILURE)
    return bodies


def _raw_body(raw: str) -> str:
    if not raw.startswith("@"):
        return raw
    return _read_text(Path(raw[1:]), "--raw @FILE reads the body from FILE")
