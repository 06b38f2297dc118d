"""``refund-poller logs`` (the functions' logs) and ``refund-poller events`` (the result events), on the local stack;
``events`` also on a deployed one, from a CloudWatch Logs group that a rule copies the events into."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from refund_poller.cli import options
from refund_poller.cli.activity import EVENTS_LOG_GROUP, LogTail, event_line, log_dir, read_events, record_of
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.errors import fail
from refund_poller.cli.local_state import find_state
from refund_poller.cli.render import stdout
from refund_poller.cli.target import NO_STACK_HINT, resolve_target

FUNCTIONS = ("StartInquiryFunction", "InquireFunction")
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing what comes next (Ctrl-C stops).")]


def logs(
    function: Annotated[
        str | None,
        typer.Option("--function", help="StartInquiryFunction or InquireFunction (default: both).", show_default=False),
    ] = None,
    follow: Follow = False,
    raw: Annotated[bool, typer.Option("--raw", help="The log lines as the functions wrote them (JSON).")] = False,
) -> None:
    """Print the functions' logs of the local stack (`local up` writes them to .refund-poller/local/logs/).

    One line per record: time, level, function, message and the refund it is about; START/END/REPORT lines
    of each invocation as Lambda writes them. `--raw` prints the JSON records as they are. On a deployed stack
    the same logs are in CloudWatch Logs (`sam logs --stack-name NAME --tail`).

    Examples:

        refund-poller logs --follow

        refund-poller logs --function InquireFunction --raw | jq 'select(.message == "poll")'
    """
    if function is not None and function not in FUNCTIONS:
        fail(f"unknown function {function!r}", hint=f"use one of: {', '.join(FUNCTIONS)}")
    found = find_state()
    if found is None or not found.running:
        fail("no local stack is running here (logs are the local stack's)", hint=NO_STACK_HINT, exit_code=EXIT_FAILURE)
    directory = log_dir(found.path)
    tail = LogTail(directory, pattern=f"*-{function}.log" if function else "*.log")
    try:
        while True:
            for name, line in tail.lines():
                stdout.print(line if raw else _readable(name.split("-", 1)[-1], line), markup=False, highlight=False)
            if not follow:
                return
            time.sleep(0.5)
            if not Path(found.path).exists():
                return  # the stack stopped
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _readable(function: str, line: str) -> str:
    record = record_of(line)
    if record is None:
        return f"{function:<20} {line}"
    stamp = str(record.get("timestamp", ""))[11:23].replace(",", ".")
    ids = record.get("refundRequestId") or record.get("refundId")
    about = f" [{record.get('provider')} {ids}]" if ids else ""
    if "_aws" in record:  # an embedded-metric record: the metrics, briefly
        names = [m["Name"] for d in record["_aws"].get("CloudWatchMetrics", []) for m in d.get("Metrics", [])]
        return f"{function:<20} metrics {', '.join(names)}"
    extra = {
        k: v
        for k, v in record.items()
        if k not in _POWERTOOLS_KEYS and k not in ("refundRequestId", "refundId", "provider", "merchant")
    }
    rest = " " + json.dumps(extra, default=str, ensure_ascii=False) if extra else ""
    return f"{stamp} {record.get('level', ''):<5} {function:<20} {record.get('message')}{about}{rest}"


_POWERTOOLS_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "xray_trace_id",
    }
)


def events(
    follow: Follow = False,
    as_json: options.Json = False,
    log_group: Annotated[
        str | None,
        typer.Option(
            "--log-group",
            help="Deployed stack: the CloudWatch Logs group a rule copies the result events into (docs/events.md).",
            show_default=False,
        ),
    ] = None,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Print the result events the stack published (source refund-poller), oldest first.

    On the local stack `local up` adds an EventBridge rule that copies every result event into the log group
    /refund-poller/local/result-events, read here. On a deployed stack, create such a rule with a CloudWatch
    Logs target once (docs/events.md) and pass its group with `--log-group`. `--json` prints each whole event
    (one JSON object per line).

    Examples:

        refund-poller events --follow

        refund-poller events --json | jq -c '.detail | {status, refundRequestId, eventId}'

        refund-poller events --stack-name refund-poller --log-group /aws/events/refund-poller-results
    """
    if stack_name and not log_group:
        fail(
            "a deployed stack's events are read from a CloudWatch Logs group: give --log-group",
            hint="docs/events.md shows the rule and log group to create once",
        )
    target = resolve_target(stack_name, profile, region, endpoint_url)
    client = target.client("logs")
    group = log_group or EVENTS_LOG_GROUP
    start = 0
    try:
        while True:
            with aws_errors(target.where):
                found, start = read_events(client, group, start)
            for event in found:
                if as_json:
                    print(json.dumps(event, ensure_ascii=False))  # plain stdout on purpose: one event per line
                else:
                    stdout.print(event_line(json.dumps(event)) or "", markup=False, highlight=False)
            if not follow:
                return
            time.sleep(1)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
