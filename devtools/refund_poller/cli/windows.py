"""Every polling window of one refund, oldest first: its execution, polls, outcome and, while it runs, the next
planned poll and when it closes.

A refund is polled again when its message is sent again (an UNRESOLVED refund, a forced re-poll): each claim opens a
window with its own execution, ``<provider>-<id>-<key hash>-g<generation>-<window id>``. The key hash names all of
one refund's executions, so they are found by listing the state machine's executions (STANDARD) or by reading its
CloudWatch Logs records (EXPRESS, which keeps no history in Step Functions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from refund_core.domain.inquiry import RefundRef, key_digest
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.errors import fail
from refund_poller.cli.item_view import iso
from refund_poller.cli.target import Target
from refund_poller.cli.timeline import (
    Step,
    histories_from_logs,
    history,
    started_state,
    terminal_state,
    timeline,
)

# The outcome each terminal state of statemachine/refund_inquiry.asl.json stands for.
TERMINAL_OUTCOMES = {
    "Refund succeeded": "SUCCESS",
    "Refund failed": "FAIL",
    "Not found": "NOT_FOUND",
    "Unresolved at window close": "UNRESOLVED",
    "Handed to long tail": "TAIL",
    "Superseded by newer window": "SUPERSEDED",
    "Final status contradicted": "CONFLICT",
    "Provider refused inquiry": "ERROR",
    "Inquiry failed": "ERROR",
    "Unexpected decision": "ERROR",
}
_NAME_TAIL = re.compile(r"-(?P<digest>[0-9a-f]{12})-g(?P<generation>\d+)-(?P<window>[0-9a-z]+)$")
# ListExecutions pages read at most (1,000 executions each) before saying the list was cut.
MAX_PAGES = 20


@dataclass
class WindowTrace:
    execution: dict[str, Any]
    steps: list[Step]
    terminal: str | None
    outcome: str
    generation: int | None = None
    window_id: str | None = None
    deadline: float | None = None  # epoch seconds: the window closes then
    next_poll_at: float | None = None  # epoch seconds, while the window is open
    notes: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.execution.get("status") == "RUNNING"

    def to_json(self, console: str | None) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "windowId": self.window_id,
            "outcome": self.outcome,
            "terminalState": self.terminal,
            "closesAt": iso(self.deadline) if self.deadline else None,
            "nextPollAt": iso(self.next_poll_at) if self.next_poll_at else None,
            "execution": {
                "executionArn": self.execution.get("executionArn"),
                "status": self.execution.get("status"),
                "startDate": _text_time(self.execution.get("startDate")),
                "stopDate": _text_time(self.execution.get("stopDate")),
                "consoleUrl": console,
                "historySource": self.execution.get("historySource"),
                "notes": self.execution.get("notes", []),
            },
            "steps": [step.to_json() for step in self.steps],
        }


def refund_windows(target: Target, key: str, item: dict[str, Any]) -> tuple[list[WindowTrace], list[str]]:
    """The refund's windows that had an execution, oldest first, and notes on what could not be read."""
    digest = key_digest(RefundRef.from_item_key(key))
    current = str(item.get("executionArn") or "")
    machine_arn = _machine_arn(current) if current else target.output("StateMachineArn")
    stepfunctions = target.client("stepfunctions")
    with aws_errors(target.where):
        machine = stepfunctions.describe_state_machine(stateMachineArn=machine_arn)
    if machine.get("type") == "EXPRESS":
        provider = RefundRef.from_item_key(key).provider
        return _express_windows(target, machine, provider, digest, current, item)
    notes: list[str] = []
    arns = _standard_arns(stepfunctions, machine_arn, digest, notes, target)
    if current and current not in arns:
        arns.append(current)
    windows = []
    for arn in arns:
        with aws_errors(target.where):
            execution: dict[str, Any] = stepfunctions.describe_execution(executionArn=arn)
            events = history(stepfunctions, arn)
        execution["historySource"] = "Step Functions execution history"
        windows.append(_window(execution, events, item if arn == current else {}))
    return _ordered(windows), notes


def _standard_arns(stepfunctions: Any, machine_arn: str, digest: str, notes: list[str], target: Target) -> list[str]:
    arns: list[str] = []
    token: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        with aws_errors(target.where):
            page = stepfunctions.list_executions(stateMachineArn=machine_arn, maxResults=1000, **token)
        arns += [e["executionArn"] for e in page["executions"] if _digest_of(e["name"]) == digest]
        if not page.get("nextToken"):
            return arns
        token = {"nextToken": page["nextToken"]}
    notes.append(f"read the newest {MAX_PAGES * 1000} executions only: older windows may be missing")
    return arns


def _express_windows(
    target: Target, machine: dict[str, Any], provider: str, digest: str, current: str, item: dict[str, Any]
) -> tuple[list[WindowTrace], list[str]]:
    logging_config = machine.get("loggingConfiguration") or {}
    group = log_group(logging_config)
    if group is None or logging_config.get("level", "OFF") == "OFF":
        fail(
            f"{current or 'the refund'} is an EXPRESS execution: Step Functions keeps no history of it, and its "
            "state machine sends none to CloudWatch Logs",
            hint="deploy the template's Logging (Level ALL, IncludeExecutionData true) to trace EXPRESS executions",
            exit_code=EXIT_FAILURE,
        )
    parts = str(machine["stateMachineArn"]).split(":")
    prefix = ":".join([*parts[:5], "express", parts[6], f"{provider}-"])
    with aws_errors(target.where):
        found = histories_from_logs(
            target.client("logs"), group, prefix, lambda arn: _digest_of(arn.split(":")[7]) == digest
        )
    windows = []
    for arn, events in found.items():
        last = str(events[-1]["type"])
        execution = {
            "executionArn": arn,
            "status": _EXPRESS_END.get(last, "RUNNING"),
            "startDate": events[0]["timestamp"],
            "stopDate": events[-1]["timestamp"] if last in _EXPRESS_END else None,
            "historySource": f"CloudWatch Logs {group}",
            "notes": express_notes(logging_config, events),
        }
        windows.append(_window(execution, events, item if arn == current else {}))
    if current and current not in found:
        fail(
            f"no log records of {current} in {group} yet",
            hint="CloudWatch Logs delivers EXPRESS histories best effort, usually within seconds: try again",
            exit_code=EXIT_FAILURE,
        )
    return _ordered(windows), []


_EXPRESS_END = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


def log_group(logging_config: dict[str, Any]) -> str | None:
    for destination in logging_config.get("destinations", []):
        group_arn = str((destination.get("cloudWatchLogsLogGroup") or {}).get("logGroupArn", ""))
        if ":log-group:" in group_arn:
            return group_arn.split(":log-group:", 1)[1].split(":", 1)[0]
    return None


def express_notes(logging_config: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    notes = []
    if logging_config.get("level") != "ALL":
        notes.append(f"log level {logging_config.get('level')}: only some events are logged, polls may be missing")
    if not logging_config.get("includeExecutionData"):
        notes.append("IncludeExecutionData is off: the records hold no state, so answers and decisions are unknown")
    if str(events[0]["type"]) != "ExecutionStarted" or [e["id"] for e in events] != list(range(1, len(events) + 1)):
        notes.append("some log records are missing (CloudWatch Logs delivery is best effort)")
    return notes


def _window(execution: dict[str, Any], events: list[dict[str, Any]], item: dict[str, Any]) -> WindowTrace:
    started = started_state(events)
    steps = timeline(events, item)
    terminal = terminal_state(events)
    name = str(execution.get("executionArn", "")).split(":")[7] if execution.get("executionArn") else ""
    tail = _NAME_TAIL.search(name)
    window = WindowTrace(
        execution=execution,
        steps=steps,
        terminal=terminal,
        outcome=_outcome(execution, terminal, steps),
        generation=int(tail["generation"]) if tail else started.get("generation"),
        window_id=tail["window"] if tail else started.get("windowId"),
        deadline=float(started["deadline"]) if started.get("deadline") else None,
    )
    if window.running:
        window.next_poll_at = _next_poll(steps)
    return window


def _outcome(execution: dict[str, Any], terminal: str | None, steps: list[Step]) -> str:
    status = str(execution.get("status"))
    if status == "RUNNING":
        return "RUNNING"
    if terminal in TERMINAL_OUTCOMES:
        return TERMINAL_OUTCOMES[terminal]
    if status in ("TIMED_OUT", "ABORTED", "FAILED"):
        return "ERROR"
    # An execution from before the named terminal states ("Outcome recorded"): its last poll's decision says.
    polls = [step for step in steps if step.poll is not None]
    return (polls[-1].decided or polls[-1].status) if polls else "UNKNOWN"


def _next_poll(steps: list[Step]) -> float | None:
    polls = [step for step in steps if step.poll is not None]
    if not polls or polls[-1].wait_seconds is None:
        return None
    last = datetime.fromisoformat(polls[-1].time.replace("Z", "+00:00"))
    return last.timestamp() + polls[-1].wait_seconds


def _ordered(windows: list[WindowTrace]) -> list[WindowTrace]:
    return sorted(windows, key=lambda w: (w.generation or 0, _text_time(w.execution.get("startDate")) or ""))


def _digest_of(name: str) -> str | None:
    tail = _NAME_TAIL.search(name)
    return tail["digest"] if tail else None


def _machine_arn(execution_arn: str) -> str:
    # arn:<partition>:states:<region>:<account>:execution|express:<state machine>:<name>[:<run id>]
    parts = execution_arn.split(":")
    return ":".join([*parts[:5], "stateMachine", parts[6]])


def _text_time(value: Any) -> str | None:
    if value is None:
        return None
    return iso(value.timestamp()) if isinstance(value, datetime) else str(value)
