"""``refund-poller trace``: a refund's polling execution as a timeline."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from refund_poller.cli import options
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.errors import fail
from refund_poller.cli.refunds import require_item
from refund_poller.cli.render import fields_table, print_json, stdout, styled_status
from refund_poller.cli.target import Target, resolve_target
from refund_poller.cli.timeline import Step, history, history_from_logs, tail_steps, timeline

# How an EXPRESS execution ended, from its last log record (it has no DescribeExecution).
_END_STATUS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


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
    URL of the execution is printed too. An EXPRESS execution has no history in Step Functions: it is read
    from the state machine's CloudWatch Logs group (Logging level ALL with IncludeExecutionData).

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
    express = _is_express(str(arn))
    execution, steps = _express_execution(target, str(arn), item) if express else _execution(target, str(arn), item)
    steps += tail_steps(item)  # the long tail's attempts come after the execution's polls
    console = None if express else target.console_url(str(arn))
    if as_json:
        print_json(_as_json(item, execution, steps, console))
        return
    stdout.print(_table(item, execution, steps))
    stdout.print(f"execution {arn}", markup=False)
    stdout.print(f"history   {execution['historySource']}", markup=False)
    for note in execution.get("notes", []):
        stdout.print(f"note      {note}", markup=False)
    if console:
        stdout.print(f"console   {console}", markup=False)


def _execution(target: Target, arn: str, item: dict[str, Any]) -> tuple[dict[str, Any], list[Step]]:
    stepfunctions = target.client("stepfunctions")
    with aws_errors(target.where):
        execution: dict[str, Any] = stepfunctions.describe_execution(executionArn=arn)
        events = history(stepfunctions, arn)
    return {**execution, "historySource": "Step Functions execution history"}, timeline(events, item)


def _is_express(execution_arn: str) -> bool:
    # arn:<partition>:states:<region>:<account>:express:<state machine>:<name>:<run id>
    parts = execution_arn.split(":")
    return len(parts) > 6 and parts[5] == "express"


def _express_execution(target: Target, arn: str, item: dict[str, Any]) -> tuple[dict[str, Any], list[Step]]:
    """An EXPRESS execution from its log records: Step Functions keeps no history of it (DescribeExecution and
    GetExecutionHistory refuse its ARN)."""
    parts = arn.split(":")
    machine_arn = ":".join([*parts[:5], "stateMachine", parts[6]])
    with aws_errors(target.where):
        machine = target.client("stepfunctions").describe_state_machine(stateMachineArn=machine_arn)
    logging_config = machine.get("loggingConfiguration") or {}
    group = _log_group(logging_config)
    if group is None or logging_config.get("level", "OFF") == "OFF":
        fail(
            f"{arn} is an EXPRESS execution: Step Functions keeps no history of it, and its state machine "
            "sends none to CloudWatch Logs",
            hint="deploy the template's Logging (Level ALL, IncludeExecutionData true) to trace EXPRESS executions",
            exit_code=EXIT_FAILURE,
        )
    with aws_errors(target.where):
        events = history_from_logs(target.client("logs"), group, arn)
    if not events:
        fail(
            f"no log records of {arn} in {group} yet",
            hint="CloudWatch Logs delivers EXPRESS histories best effort, usually within seconds: try again",
            exit_code=EXIT_FAILURE,
        )
    last = str(events[-1]["type"])
    execution = {
        "executionArn": arn,
        "status": _END_STATUS.get(last, "RUNNING"),
        "startDate": events[0]["timestamp"],
        "stopDate": events[-1]["timestamp"] if last in _END_STATUS else None,
        "historySource": f"CloudWatch Logs {group}",
        "notes": _express_notes(logging_config, events),
    }
    return execution, timeline(events, item)


def _log_group(logging_config: dict[str, Any]) -> str | None:
    for destination in logging_config.get("destinations", []):
        group_arn = str((destination.get("cloudWatchLogsLogGroup") or {}).get("logGroupArn", ""))
        if ":log-group:" in group_arn:
            return group_arn.split(":log-group:", 1)[1].split(":", 1)[0]
    return None


def _express_notes(logging_config: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    notes = []
    if logging_config.get("level") != "ALL":
        notes.append(f"log level {logging_config.get('level')}: only some events are logged, polls may be missing")
    if not logging_config.get("includeExecutionData"):
        notes.append("IncludeExecutionData is off: the records hold no state, so answers and decisions are unknown")
    if str(events[0]["type"]) != "ExecutionStarted" or [e["id"] for e in events] != list(range(1, len(events) + 1)):
        notes.append("some log records are missing (CloudWatch Logs delivery is best effort)")
    return notes


def _print_without_execution(item: dict[str, Any], as_json: bool) -> None:
    note = "recorded by StartInquiry at the first inquiry: no polling execution was needed"
    steps = tail_steps(item)
    if steps:
        note = "first inquiry by StartInquiry, then the long tail (no polling execution)"
    if as_json:
        print_json({"execution": None, "note": note, "steps": [step.to_json() for step in steps], "item": item})
        return
    stdout.print(note)
    if steps:
        stdout.print(_table(item, {"status": "none"}, steps))
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
            "historySource": execution.get("historySource"),
            "notes": execution.get("notes", []),
        },
        "steps": [step.to_json() for step in steps],
        "item": item,
    }
