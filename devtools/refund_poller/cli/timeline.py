"""An execution's history as the polls it made: when, what the provider answered, what was decided.

The starter's first inquiry is in the execution input; every other poll is one successful ``Ask provider``
task whose output is the whole state (``polls``, ``observation`` and ``decision``, docs/internals.md). Failed attempts
(retried by the state machine) and the end of the execution are rows of their own.

A STANDARD execution's history comes from GetExecutionHistory. An EXPRESS execution has none in Step Functions:
its history is the state machine's CloudWatch Logs records (one JSON record per history event), read back here
into the same events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

_END_EVENTS = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}
_TASK_FAILURES = {"TaskFailed", "TaskTimedOut", "LambdaFunctionFailed", "LambdaFunctionTimedOut"}


@dataclass(frozen=True)
class Step:
    time: str
    poll: int | None  # None: not a poll (a failed attempt, the end)
    status: str
    decision: str
    detail: str = ""
    wait_seconds: int | None = None  # a poll that decided to wait: the next poll is planned this much later
    decided: str | None = None  # a poll's decision status (the window's outcome when it ended the loop)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def history(stepfunctions: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = stepfunctions.get_execution_history(executionArn=execution_arn, maxResults=1000, **token)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        token = {"nextToken": page["nextToken"]}


def history_from_logs(logs: Any, log_group: str, execution_arn: str) -> list[dict[str, Any]]:
    """The execution's history events rebuilt from its log records (``id``, ``type``, ``details``,
    ``event_timestamp``...), in event order. Empty when nothing was delivered (delivery is best effort)."""
    return histories_from_logs(logs, log_group, execution_arn, lambda arn: arn == execution_arn).get(execution_arn, [])


def histories_from_logs(
    logs: Any, log_group: str, arn_prefix: str, wanted: Callable[[str], bool]
) -> dict[str, list[dict[str, Any]]]:
    """Every execution whose ARN starts with ``arn_prefix`` (and that ``wanted`` keeps): its history events.

    The filter pattern selects on AWS (a trailing ``*`` in a JSON string value is a wildcard:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html); the check on each record
    keeps other executions' records out wherever it does not.
    """
    pattern = '{ $.execution_arn = "' + arn_prefix + '*" }'
    found: dict[str, dict[int, dict[str, Any]]] = {}
    token: dict[str, str] = {}
    while True:
        page = logs.filter_log_events(logGroupName=log_group, filterPattern=pattern, **token)
        for log_event in page.get("events", []):
            record = _json(log_event.get("message", ""))
            arn = str(record.get("execution_arn", ""))
            if not arn.startswith(arn_prefix) or not wanted(arn):
                continue
            event = _history_event(record)
            if event is not None:
                found.setdefault(arn, {})[event["id"]] = event
        if not page.get("nextToken"):
            return {arn: [events[key] for key in sorted(events)] for arn, events in found.items()}
        token = {"nextToken": page["nextToken"]}


def _history_event(record: dict[str, Any]) -> dict[str, Any] | None:
    if not str(record.get("id", "")).isdigit():
        return None
    kind = str(record.get("type", ""))
    when = datetime.fromtimestamp(int(record.get("event_timestamp", 0)) / 1000, tz=UTC)
    details = record.get("details") if isinstance(record.get("details"), dict) else {}
    return {
        "id": int(record["id"]),
        "type": kind,
        "timestamp": when,
        kind[:1].lower() + kind[1:] + "EventDetails": details,
    }


def tail_steps(item: dict[str, Any]) -> list[Step]:
    """The long tail's inquiries from the item (``tailHistory``, in order), then the next planned attempt, if any
    (docs/long-tail.md). Polls are numbered after the window's own: the item's ``polls`` counts both."""
    history = list(item.get("tailHistory") or [])
    first = int(item.get("polls", 0)) - len(history) + 1
    steps = [
        Step(
            str(entry.get("at", "")),
            first + index,
            str(entry.get("status", "")),
            f"tail attempt {entry.get('attempt')}",
            f"planned {entry.get('plannedAt', '')} ({entry.get('resultCode') or 'no result code'})",
        )
        for index, entry in enumerate(history)
    ]
    if item.get("nextPollAt") and item.get("pollingState") == "TAIL":
        plan = item.get("tailPlan") or {}
        detail = f"schedule {plan.get('scheduleSeconds')} s, max age {plan.get('maxAgeSeconds')} s"
        steps.append(Step(str(item["nextPollAt"]), None, "PLANNED", f"tail attempt {item.get('tailAttempt')}", detail))
    return steps


def timeline(events: list[dict[str, Any]], item: dict[str, Any]) -> list[Step]:
    """The readable steps of one execution; the last poll also gets the stored result code and reason.

    ``item`` is the stored item when this execution is its current window, else empty (an older window: the
    item's times and result are not this window's).
    """
    steps: list[Step] = []
    terminal = terminal_state(events)
    for event in events:
        step = _step(event, item, terminal)
        if step is not None:
            steps.append(step)
    return _with_last_result(steps, item)


def terminal_state(events: list[dict[str, Any]]) -> str | None:
    """The name of the Succeed or Fail state the execution ended in (the state machine names them after the
    outcome), or None while it runs."""
    for event in reversed(events):
        if event["type"] in ("SucceedStateEntered", "FailStateEntered"):
            details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
            return str(details.get("name") or "") or None
    return None


def started_state(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The execution's input: the starter's state after the first inquiry (deadline, generation, windowId...)."""
    for event in events:
        if event["type"] == "ExecutionStarted":
            return _json(event["executionStartedEventDetails"].get("input"))
    return {}


def _step(event: dict[str, Any], item: dict[str, Any], terminal: str | None) -> Step | None:
    kind, when = event["type"], _time(event["timestamp"])
    if kind == "ExecutionStarted":
        state = _json(event["executionStartedEventDetails"].get("input"))
        # The item's firstPollAt is its first window's; it times this window's first poll only if not older.
        first = str(item.get("firstPollAt") or "")
        first = first if first and first >= str(item.get("claimedAt") or "") else when
        return _poll_step(first, state, "first inquiry, by StartInquiry")
    if kind == "TaskSucceeded":
        output = _json(event["taskSucceededEventDetails"].get("output"))
        return _poll_step(when, output.get("Payload", output), "")
    details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
    if kind in _TASK_FAILURES:
        cause = f"{details.get('error', kind)}: {details.get('cause', '')}"
        return Step(when, None, "-", "retry or give up", _short(cause))
    if kind in _END_EVENTS:
        said = [terminal or "", str(details.get("error") or "")]
        return Step(when, None, "-", kind.removeprefix("Execution").lower(), ": ".join(s for s in said if s))
    return None


def _poll_step(when: str, state: dict[str, Any], detail: str) -> Step:
    decision = state.get("decision", {})
    verdict = str(decision.get("next", "?"))
    wait = int(decision["waitSeconds"]) if verdict == "wait" and decision.get("waitSeconds") is not None else None
    if verdict == "wait":
        verdict = f"wait {decision.get('waitSeconds', '?')} s"
    observation = state.get("observation") or {}
    answer = observation.get("status", decision.get("status", "?"))
    said = [
        observation.get("reason", ""),
        # The inquiry call's own result code: SUCCESS there means the call worked, not the refund.
        f"call result {observation['resultCode']}" if observation.get("resultCode") else "",
    ]
    if observation and not observation.get("verified"):
        said.append("unverified")
    detail = "; ".join(str(part) for part in (detail, *said) if part)
    decided = str(decision["status"]) if decision.get("status") else None
    return Step(when, int(state.get("polls", 0)) or None, str(answer), verdict, detail, wait, decided)


def _with_last_result(steps: list[Step], item: dict[str, Any]) -> list[Step]:
    polls = [n for n, step in enumerate(steps) if step.poll is not None]
    if not polls:
        return steps
    last = polls[-1]
    observation = item.get("lastObservation") or {}
    code = observation.get("resultCode") or (item.get("result") or {}).get("code")
    words = [f"call result {code}" if code else "", str(item.get("reason") or observation.get("reason") or "")]
    said = steps[last].detail.split("; ") if steps[last].detail else []
    detail = "; ".join([*said, *(w for w in words if w and w not in said)])
    return [*steps[:last], Step(**{**steps[last].to_json(), "detail": detail}), *steps[last + 1 :]]


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
