"""``refund-poller trace``: a refund's polling execution as a timeline."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from refund_poller.cli import options
from refund_poller.cli.aws_errors import aws_errors
from refund_poller.cli.refunds import require_item
from refund_poller.cli.render import fields_table, print_json, stdout, styled_status
from refund_poller.cli.target import Target, resolve_target
from refund_poller.cli.timeline import Step, history, timeline


def trace(
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
    """Show how a refund was polled: each poll's time, the provider's answer and the decision taken.

    Reads the execution named in the refund's stored item (its executionArn). A refund that was final at
    the first inquiry has no execution: the stored item is shown instead. On AWS the Step Functions console
    URL of the execution is printed too.

    Examples:

        refund-poller trace --provider antom --refund-request-id processing2-success--r1

        refund-poller trace --provider alphapay --refund-id notfound2-success--r2 --json

        refund-poller trace --provider antom --refund-id 2024010112345 --stack-name refund-poller --region eu-west-1
    """
    target = resolve_target(stack_name, profile, region, endpoint_url)
    item = require_item(target, provider, merchant, refund_id, refund_request_id)
    arn = item.get("executionArn")
    if not arn:
        _print_without_execution(item, as_json)
        return
    execution, steps = _execution(target, str(arn), item)
    console = target.console_url(str(arn))
    if as_json:
        print_json(_as_json(item, execution, steps, console))
        return
    stdout.print(_table(item, execution, steps))
    stdout.print(f"execution {arn}", markup=False)
    if console:
        stdout.print(f"console   {console}", markup=False)


def _execution(target: Target, arn: str, item: dict[str, Any]) -> tuple[dict[str, Any], list[Step]]:
    stepfunctions = target.client("stepfunctions")
    with aws_errors(target.where):
        execution: dict[str, Any] = stepfunctions.describe_execution(executionArn=arn)
        events = history(stepfunctions, arn)
    return execution, timeline(events, item)


def _print_without_execution(item: dict[str, Any], as_json: bool) -> None:
    note = "recorded by StartInquiry at the first inquiry: no polling execution was needed"
    if as_json:
        print_json({"execution": None, "note": note, "item": item})
        return
    stdout.print(note)
    stdout.print(fields_table("stored item", item))


def _table(item: dict[str, Any], execution: dict[str, Any], steps: list[Step]) -> Table:
    ids = " / ".join(str(item[k]) for k in ("refundRequestId", "refundId") if item.get(k))
    title = f"{item.get('provider')}/{item.get('merchant')} {ids}: {item.get('status')}"
    title += f" (execution {execution.get('status')})"
    table = Table(title=title.replace("[", "\\["), title_justify="left")
    for column in ("time (UTC)", "poll", "answer", "decision", "detail"):
        table.add_column(column, overflow="fold")
    for step in steps:
        poll = str(step.poll) if step.poll is not None else ""
        table.add_row(
            step.time[11:23] or step.time,
            poll,
            styled_status(step.status),
            step.decision,
            step.detail.replace("[", "\\["),
        )
    return table


def _as_json(item: dict[str, Any], execution: dict[str, Any], steps: list[Step], console: str | None) -> dict[str, Any]:
    return {
        "execution": {
            "executionArn": execution.get("executionArn"),
            "status": execution.get("status"),
            "startDate": execution.get("startDate"),
            "stopDate": execution.get("stopDate"),
            "consoleUrl": console,
        },
        "steps": [step.to_json() for step in steps],
        "item": item,
    }
