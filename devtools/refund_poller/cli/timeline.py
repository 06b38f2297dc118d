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
    pattern = '{ $.execution_arn = "' + execution_arn + '" }'
    events: dict[int, dict[str, Any]] = {}
    token: dict[str, str] = {}
    while True:
        page = logs.filter_log_events(logGroupName=log_group, filterPattern=pattern, **token)
        for log_event in page.get("events", []):
            event = _history_event(log_event.get("message", ""), execution_arn)
            if event is not None:
                events[event["id"]] = event
        if not page.get("nextToken"):
            return [events[key] for key in sorted(events)]
        token = {"nextToken": page["nextToken"]}


def _history_event(message: str, execution_arn: str) -> dict[str, Any] | None:
    record = _json(message)
    # The filter pattern selects on AWS; the check keeps other executions' records out wherever it does not.
    if record.get("execution_arn") != execution_arn or not str(record.get("id", "")).isdigit():
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
    """The readable steps of one execution; the last poll also gets the stored result code and reason."""
    steps: list[Step] = []
    for event in events:
        step = _step(event, item)
        if step is not None:
            steps.append(step)
    return _with_last_result(steps, item)


def _step(event: dict[str, Any], item: dict[str, Any]) -> Step | None:
    kind, when = event["type"], _time(event["timestamp"])
    if kind == "ExecutionStarted":
        state = _json(event["executionStartedEventDetails"].get("input"))
        first = str(item.get("firstPollAt") or when)
        return _poll_step(first, state, "first inquiry, by StartInquiry")
    if kind == "TaskSucceeded":
        output = _json(event["taskSucceededEventDetails"].get("output"))
        return _poll_step(when, output.get("Payload", output), "")
    details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
    if kind in _TASK_FAILURES:
        cause = f"{details.get('error', kind)}: {details.get('cause', '')}"
        return Step(when, None, "-", "retry or give up", _short(cause))
    if kind in _END_EVENTS:
        error = details.get("error")
        return Step(when, None, "-", kind.removeprefix("Execution").lower(), str(error or ""))
    return None


def _poll_step(when: str, state: dict[str, Any], detail: str) -> Step:
    decision = state.get("decision", {})
    verdict = str(decision.get("next", "?"))
    if verdict == "wait":
        verdict = f"wait {decision.get('waitSeconds', '?')} s"
    observation = state.get("observation") or {}
    answer = observation.get("status", decision.get("status", "?"))
    said = [
        f"result {observation['resultCode']}" if observation.get("resultCode") else "",
        observation.get("reason", ""),
    ]
    if observation and not observation.get("verified"):
        said.append("unverified")
    detail = "; ".join(str(part) for part in (detail, *said) if part)
    return Step(when, int(state.get("polls", 0)) or None, str(answer), verdict, detail)


def _with_last_result(steps: list[Step], item: dict[str, Any]) -> list[Step]:
    polls = [n for n, step in enumerate(steps) if step.poll is not None]
    if not polls:
        return steps
    last = polls[-1]
    observation = item.get("lastObservation") or {}
    code = observation.get("resultCode") or (item.get("result") or {}).get("code")
    words = [f"result {code}" if code else "", str(item.get("reason") or observation.get("reason") or "")]
    detail = "; ".join(w for w in (steps[last].detail, *words) if w)
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
