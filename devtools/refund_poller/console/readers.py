"""What the console reads from a stack: the refund items, a refund's executions with their histories, the DLQ.

Reads only (Scan and GetItem, ListExecutions, DescribeExecution, GetExecutionHistory, DescribeStateMachine,
FilterLogEvents; the DLQ is peeked as ``refund-poller dlq`` does). The execution histories and log records are read
by the CLI's own readers (refund_poller.cli.timeline); what they lack for a page (the states an execution entered,
the provider's whole last answer, a refund's earlier windows) is read here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from refund_core.domain.claim import POLLING
from refund_core.domain.inquiry import RefundRef, execution_name
from refund_core.store import is_refund_item, load_item, public_view
from refund_poller.cli.target import Target
from refund_poller.cli.timeline import Step, history, history_from_logs, timeline

SCAN_LIMIT = 5000  # items read for the list: a support console's view, not an export
EXECUTION_PAGES = 5  # ListExecutions pages (1,000 each) searched for a refund's earlier windows
_TIME_FIELDS = ("resolvedAt", "lastPollAt", "firstPollAt", "claimedAt")


class ReadError(Exception):
    """AWS (or the local stack) refused or could not be reached; the message is shown on the page."""


@contextmanager
def reading(what: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ReadError(f"{what}: {exc.operation_name}: {error.get('Code')}: {error.get('Message', '')}") from exc
    except BotoCoreError as exc:
        raise ReadError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class SharedClients(Target):
    """A stack whose AWS clients are made once and shared by the server's threads (botocore clients are
    thread-safe; making one costs more than most calls the pages make)."""

    clients: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def of(cls, target: Target) -> SharedClients:
        return cls(**{each.name: getattr(target, each.name) for each in fields(Target)})

    def client(self, service: str, read_timeout: float = 60) -> Any:
        with self.lock:
            if service not in self.clients:
                self.clients[service] = super().client(service, read_timeout)
            return self.clients[service]


# A stopped execution's history never changes: kept so that reloading a page does not read it again.
_STOPPED_HISTORIES: dict[str, list[dict[str, Any]]] = {}
_STOPPED_HISTORIES_KEPT = 500


@dataclass(frozen=True)
class Refund:
    """One refund item: its table key and what merchants may see of it (public_view)."""

    key: str
    item: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.item.get("status") or "-")

    @property
    def polling(self) -> bool:
        return self.item.get("pollingState") == POLLING

    @property
    def conflict(self) -> bool:
        return int(self.item.get("finalConflictCount") or 0) > 0

    @property
    def gave_up(self) -> bool:
        return bool(self.item.get("gaveUp"))

    @property
    def updated(self) -> str:
        """The latest of its times (ISO strings sort as times)."""
        return max((str(self.item[name]) for name in _TIME_FIELDS if self.item.get(name)), default="")

    def labels(self) -> set[str]:
        """What the status filter matches: the status, and ``conflict``, ``gave-up``, ``polling``."""
        labels = {self.status}
        for label, present in (("conflict", self.conflict), ("gave-up", self.gave_up), ("polling", self.polling)):
            if present:
                labels.add(label)
        return labels

    def matches(self, search: str) -> bool:
        """Whether ``search`` is part of either id or the correlation id (case-insensitive)."""
        wanted = search.casefold()
        ids = (self.item.get(name) for name in ("refundId", "refundRequestId", "correlationId"))
        return any(wanted in str(value).casefold() for value in ids if value)


@dataclass(frozen=True)
class Filters:
    search: str = ""
    provider: str = ""
    merchant: str = ""
    status: str = ""

    def keep(self, refund: Refund) -> bool:
        item = refund.item
        return (
            (not self.search or refund.matches(self.search))
            and (not self.provider or item.get("provider") == self.provider)
            and (not self.merchant or item.get("merchant") == self.merchant)
            and (not self.status or self.status in refund.labels())
        )


def list_refunds(target: Target, filters: Filters) -> tuple[list[Refund], bool]:
    """The refunds that pass ``filters``, newest first, and whether the scan stopped at SCAN_LIMIT."""
    dynamodb = target.client("dynamodb")
    table = target.output("ResultsTableName")
    found: list[Refund] = []
    scanned = 0
    with reading("reading the results table"):
        pages = dynamodb.get_paginator("scan").paginate(TableName=table, PaginationConfig={"MaxItems": SCAN_LIMIT})
        for page in pages:
            for raw in page.get("Items", []):
                scanned += 1
                item = load_item(raw)
                if not is_refund_item(item):
                    continue
                refund = Refund(str(item["pk"]), public_view(item))
                if filters.keep(refund):
                    found.append(refund)
    found.sort(key=lambda refund: refund.updated, reverse=True)
    return found, scanned >= SCAN_LIMIT


def get_refund(target: Target, key: str) -> Refund | None:
    with reading("reading the refund"):
        item = target.store().get(key)
    if item is None or not is_refund_item({"pk": key}):
        return None
    return Refund(key, public_view(item))


@dataclass
class Execution:
    """One polling window's execution, as a page shows it."""

    arn: str
    express: bool
    status: str = "?"
    started: str = ""
    stopped: str = ""
    history_source: str = ""
    steps: list[Step] = field(default_factory=list)
    path: list[str] = field(default_factory=list)  # the states entered, in order
    last_observation: dict[str, Any] = field(default_factory=dict)  # the provider's last answer (Observation)
    notes: list[str] = field(default_factory=list)
    log_group: str | None = None

    @property
    def name(self) -> str:
        return self.arn.split(":")[7] if self.arn.count(":") >= 7 else self.arn


def executions(target: Target, refund: Refund) -> list[Execution]:
    """The refund's executions, oldest first: every window found (STANDARD), or its latest one (EXPRESS, which
    ListExecutions does not list); each with its history, or a note saying why there is none."""
    arn = refund.item.get("executionArn")
    note = None
    if not arn:
        arn = _unrecorded_execution(target, refund)
        note = "the item names no execution (its window closed before the starter recorded it): found by its name"
    if not arn:
        return []
    latest = str(arn)
    express = _is_express(latest)
    arns = [latest] if express else _window_arns(target, latest)
    found = []
    for each in arns:
        execution = Execution(each, express)
        try:
            _read_history(target, execution, refund.item)
        except ReadError as error:
            execution.notes.append(str(error))
        found.append(execution)
    if note and found:
        found[-1].notes.append(note)
    return found


def _unrecorded_execution(target: Target, refund: Refund) -> str | None:
    """The ARN of a STANDARD window's execution the item does not name: the starter records it after StartExecution
    only while the window is open, and a short window can close first. Its name follows from the item's key,
    generation and window id (refund_core.domain.inquiry.execution_name); None when no such execution exists (a
    refund final at the first inquiry has none)."""
    item = refund.item
    if not item.get("windowId") or (int(item.get("polls") or 0) < 2 and not refund.polling):
        return None
    try:
        name = execution_name(RefundRef.from_item_key(refund.key), int(item["generation"]), str(item["windowId"]))
        arn = target.output("StateMachineArn").replace(":stateMachine:", ":execution:", 1) + ":" + name
        with reading("looking for the window's execution"):
            target.client("stepfunctions").describe_execution(executionArn=arn)
    except (ReadError, ValueError, KeyError):
        return None
    return arn


def _is_express(execution_arn: str) -> bool:
    # arn:<partition>:states:<region>:<account>:express:<state machine>:<name>:<run id>
    parts = execution_arn.split(":")
    return len(parts) > 6 and parts[5] == "express"


def machine_arn(execution_arn: str) -> str:
    parts = execution_arn.split(":")
    return ":".join([*parts[:5], "stateMachine", parts[6]])


def _window_arns(target: Target, latest: str) -> list[str]:
    """Every execution of the same refund: the names share everything up to ``-g<generation>-<window id>``
    (refund_core.domain.inquiry.execution_name); the latest always, even when it is past the pages searched."""
    name = latest.split(":")[7]
    prefix = name.rsplit("-", 2)[0] + "-g"
    stepfunctions = target.client("stepfunctions")
    found: dict[str, datetime] = {}
    try:
        with reading("listing executions"):
            pages = stepfunctions.get_paginator("list_executions").paginate(
                stateMachineArn=machine_arn(latest), PaginationConfig={"MaxItems": EXECUTION_PAGES * 1000}
            )
            for page in pages:
                for execution in page.get("executions", []):
                    if str(execution["name"]).startswith(prefix):
                        found[execution["executionArn"]] = execution["startDate"]
    except ReadError:
        pass  # the latest window alone, then
    arns = sorted(found, key=lambda arn: found[arn])
    return arns if latest in found else [*arns, latest]


def _read_history(target: Target, execution: Execution, item: dict[str, Any]) -> None:
    if execution.express:
        events = _express_events(target, execution)
    else:
        stepfunctions = target.client("stepfunctions")
        with reading("reading the execution"):
            described = stepfunctions.describe_execution(executionArn=execution.arn)
            events = _STOPPED_HISTORIES.get(execution.arn) or history(stepfunctions, execution.arn)
        if described.get("stopDate") and len(_STOPPED_HISTORIES) < _STOPPED_HISTORIES_KEPT:
            _STOPPED_HISTORIES[execution.arn] = events
        execution.status = str(described.get("status"))
        execution.started = _iso(described.get("startDate"))
        execution.stopped = _iso(described.get("stopDate"))
        execution.history_source = "Step Functions execution history"
    execution.steps = timeline(events, item)
    execution.path = entered_states(events)
    execution.last_observation = _last_observation(events)


_END_STATUS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


def _express_events(target: Target, execution: Execution) -> list[dict[str, Any]]:
    """An EXPRESS execution's history from the state machine's CloudWatch Logs records (as ``trace`` reads it)."""
    with reading("reading the state machine's logging"):
        machine = target.client("stepfunctions").describe_state_machine(stateMachineArn=machine_arn(execution.arn))
    group = log_group_name(machine.get("loggingConfiguration") or {})
    execution.log_group = group
    if group is None:
        execution.notes.append("EXPRESS: the state machine sends no history to CloudWatch Logs")
        return []
    with reading("reading the execution's log records"):
        events = history_from_logs(target.client("logs"), group, execution.arn)
    execution.history_source = f"CloudWatch Logs {group}"
    if not events:
        execution.notes.append("no log records yet (CloudWatch Logs delivers them best effort, within seconds)")
        return []
    last = str(events[-1]["type"])
    execution.status = _END_STATUS.get(last, "RUNNING")
    execution.started = _iso(events[0]["timestamp"])
    execution.stopped = _iso(events[-1]["timestamp"]) if last in _END_STATUS else ""
    return events


def log_group_name(logging_config: dict[str, Any]) -> str | None:
    """The log group a state machine logs to, from its loggingConfiguration (None when it logs nowhere)."""
    if logging_config.get("level", "OFF") == "OFF":
        return None
    for destination in logging_config.get("destinations", []):
        group_arn = str((destination.get("cloudWatchLogsLogGroup") or {}).get("logGroupArn", ""))
        if ":log-group:" in group_arn:
            return group_arn.split(":log-group:", 1)[1].split(":", 1)[0]
    return None


def state_machine_log_group(target: Target) -> str | None:
    with reading("reading the state machine"):
        machine = target.client("stepfunctions").describe_state_machine(
            stateMachineArn=target.output("StateMachineArn")
        )
    return log_group_name(machine.get("loggingConfiguration") or {})


def entered_states(events: list[dict[str, Any]]) -> list[str]:
    """The names of the states an execution entered, in order (``…StateEntered`` events; in log records the
    details are filed under the event type's own name, see history_from_logs)."""
    path = []
    for event in events:
        if str(event.get("type", "")).endswith("StateEntered"):
            details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
            if details.get("name"):
                path.append(str(details["name"]))
    return path


def _last_observation(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The observation of the last poll the execution made (the Inquire function's output), with its trust fields."""
    for event in reversed(events):
        if event.get("type") == "TaskSucceeded":
            output = _json(event.get("taskSucceededEventDetails", {}).get("output"))
            observation = output.get("Payload", output).get("observation")
            if isinstance(observation, dict):
                return observation
    return {}


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(str(text or "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value or "")


@dataclass(frozen=True)
class ConsoleLinks:
    """AWS console pages for a deployed stack (none for a local stack)."""

    execution: str | None = None
    item: str | None = None
    log_group: str | None = None


def console_links(target: Target, key: str, execution_arn: str | None, log_group: str | None) -> ConsoleLinks:
    if not target.on_aws:
        return ConsoleLinks()
    home = f"https://{target.region}.console.aws.amazon.com"
    region = quote(target.region, safe="")
    table = quote(target.output("ResultsTableName"), safe="")
    item = f"{home}/dynamodbv2/home?region={region}#edit-item?itemMode=2&route=ROUTE_ITEM_EXPLORER&table={table}"
    item += f"&pk={quote(key, safe='')}&sk="
    execution = None
    if execution_arn:
        execution = (
            f"{home}/states/home?region={region}#/express-executions/details/{quote(execution_arn, safe=':')}"
            if _is_express(execution_arn)
            else target.console_url(execution_arn)
        )
    group = None
    if log_group:
        # The CloudWatch console's fragment encodes the group name twice, with '$' for '%'.
        encoded = quote(quote(log_group, safe=""), safe="").replace("%", "$")
        group = f"{home}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{encoded}"
    return ConsoleLinks(execution, item, group)
