"""What the load driver counts beyond statuses: running loops per refund item (sampled while the load runs),
refunds stranded POLLING with no running loop, closed windows without exactly one result event, and the peak
memory of the function workers. With the long tail on: refunds with two pending tail attempts (sampled from the
tail's EventBridge Scheduler group) and provider inquiries made after a tail-resolved refund's final status.

Loops are found the way an operator would on AWS: a STANDARD state machine's RUNNING executions
(ListExecutions); an EXPRESS one has no ListExecutions or DescribeExecution, so its executions are followed in
the state machine's CloudWatch Logs (an ``ExecutionStarted`` record without a closing record is running).
An execution belongs to the item whose key hash its name carries (``<provider>-<id>-<hash>-g<n>-<window>``,
docs/internals.md "Execution names").
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from refund_core.domain.claim import EVENT_PENDING, POLLING
from refund_core.domain.inquiry import REFUND_ID, REQUEST_ID, RefundRef, key_digest
from refund_core.service import CONFLICT_DETAIL_TYPE
from refund_poller.devstack import DevStack
from tests.reliability.support import StatusWatcher, items

CLOSED_TYPES = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"})
# A loop closes its window at the first poll after the window's end; retries of that poll back off for up to
# ~35 s (ASL) and a provider call may take its whole budget: a POLLING item with no loop this long after its
# window's end is stranded, not late.
STRANDED_AFTER_SECONDS = 75
# A claim without a loop is legitimate until the starter's message comes back: the queue's VisibilityTimeout
# (180 s, template.yaml) plus a margin.
UNSTARTED_AFTER_SECONDS = 240
_MAX_MEMORY = re.compile(r"Max Memory Used: (\d+) MB")


def name_digest(execution_name: str) -> str | None:
    """The item key hash in an execution name, or None for a name of another form."""
    parts = execution_name.rsplit("-", 3)
    return parts[1] if len(parts) == 4 and parts[2].startswith("g") else None


class RunningLoops:
    """The executions running now, by name; for EXPRESS read incrementally from the execution logs."""

    def __init__(self, stack: DevStack) -> None:
        self._stack = stack
        sfn = stack.client("stepfunctions")
        self._machine = str(stack.outputs["StateMachineArn"])
        machine = sfn.describe_state_machine(stateMachineArn=self._machine)
        self.express = machine.get("type") == "EXPRESS"
        self._group = _log_group(machine.get("loggingConfiguration") or {})
        if self.express and self._group is None:
            raise AssertionError("an EXPRESS stack without execution logs cannot be accounted for")
        self._since = 0
        self._seen: set[tuple[str, int]] = set()
        self._started: dict[str, str] = {}  # express ARN -> name
        self._closed: set[str] = set()
        self.records: dict[str, list[dict[str, Any]]] = {}  # express ARN -> its log records, for a failure's story

    @property
    def started(self) -> int:
        """Executions started so far (EXPRESS: as far as the logs have been read)."""
        if self.express:
            return len(self._started)
        return len(_list(self._stack, self._machine, None))

    def names(self) -> list[str]:
        if not self.express:
            return [e["name"] for e in _list(self._stack, self._machine, "RUNNING")]
        self._read_logs()
        return [name for arn, name in self._started.items() if arn not in self._closed]

    def _read_logs(self) -> None:
        logs = self._stack.client("logs")
        token: str | None = None
        newest = self._since
        while True:
            request: dict[str, Any] = {"logGroupName": self._group, "startTime": self._since}
            try:
                page = logs.filter_log_events(**request, **({"nextToken": token} if token else {}))
            except logs.exceptions.ResourceNotFoundException:  # created with the first execution's first record
                return
            for event in page.get("events", []):
                record = _json(event["message"])
                arn, ident = str(record.get("execution_arn", "")), int(record.get("id", 0))
                if (arn, ident) in self._seen:
                    continue
                self._seen.add((arn, ident))
                self.records.setdefault(arn, []).append(record)
                newest = max(newest, int(event["timestamp"]))
                if record.get("type") == "ExecutionStarted":
                    self._started[arn] = arn.split(":")[7]
                elif record.get("type") in CLOSED_TYPES:
                    self._closed.add(arn)
            token = page.get("nextToken")
            if not token:
                break
        self._since = max(0, newest - 1000)  # records of one millisecond may arrive in two reads: dedupe above


def pending_attempts(stack: DevStack) -> dict[str, list[str]]:
    """The tail attempts pending now, by the key hash their schedule's name carries (``rp-<key hash>-<window>-
    <attempt>``, refund_core.domain.tail.schedule_name); empty for a stack without the tail."""
    group = stack.outputs.get("TailScheduleGroupName")
    if not group:
        return {}
    scheduler = stack.client("scheduler")
    found: dict[str, list[str]] = {}
    token: str | None = None
    while True:
        page = scheduler.list_schedules(GroupName=str(group), MaxResults=100, **({"NextToken": token} if token else {}))
        for schedule in page.get("Schedules", []):
            name = str(schedule["Name"])
            found.setdefault(name.split("-")[1], []).append(name)
        token = page.get("NextToken")
        if not token:
            return found


class LoopWatcher(StatusWatcher):
    """A StatusWatcher that also samples the running loops per item (two at once: a duplicate loop), items
    POLLING long after their window ended with no loop running (stranded) and, with the long tail on, the pending
    tail attempts per item (two at once: a refund asked on two schedules)."""

    def __init__(self, stack: DevStack, interval: float = 1.0) -> None:
        super().__init__(stack, interval)
        self.loops = RunningLoops(stack)
        self.digests: dict[str, str] = {}  # key hash -> item key, for every key the load may create
        self.duplicate_loops: dict[str, list[str]] = {}
        self.two_pending_attempts: dict[str, list[str]] = {}
        self.stranded: dict[str, str] = {}
        self.most_running = 0
        self.tail_samples = 0

    def expect(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.digests[key_digest(RefundRef.from_item_key(key))] = key

    def _sample(self) -> None:
        running = self.loops.names()  # before the table: a loop that ends meanwhile closed its item first
        by_key: dict[str, list[str]] = {}
        for name in running:
            key = self.digests.get(name_digest(name) or "", f"unknown:{name}")
            by_key.setdefault(key, []).append(name)
        self.most_running = max(self.most_running, len(running))
        for key, names in by_key.items():
            if len(names) > 1:
                self.duplicate_loops.setdefault(key, sorted(names))
        if self._stack.outputs.get("TailScheduleGroupName"):
            for digest, schedules in pending_attempts(self._stack).items():
                if len(schedules) > 1:
                    self.two_pending_attempts.setdefault(self.digests.get(digest, digest), sorted(schedules))
            self.tail_samples += 1
        now = time.time()
        table = items(self._stack)
        for key, item in table.items():
            if stranded(item, key in by_key, now):
                ended = now - float(item.get("windowEndsAt") or 0)
                self.stranded.setdefault(key, f"POLLING {ended:.0f} s after its window, no loop running")
        self._record_statuses(table)
        self.samples += 1


def stranded(item: Mapping[str, Any], running: bool, now: float) -> bool:
    """POLLING, no loop running for it, and past the time any retry would have come: a loop that ended without
    closing the window (the window ended long ago), or a claim whose starter died before starting one (SQS would
    have redelivered its message, and the redelivery resumed it, by now)."""
    if item.get("pollingState") != POLLING or running:
        return False
    if item.get("tailMessageId"):  # a tail attempt taken: its message comes back after the visibility timeout
        fired = datetime.fromisoformat(str(item.get("lastTailFiredAt")).replace("Z", "+00:00")).timestamp()
        return now - fired > UNSTARTED_AFTER_SECONDS
    if item.get("executionArn"):
        return now - float(item.get("windowEndsAt") or 0) > STRANDED_AFTER_SECONDS
    claimed = datetime.fromisoformat(str(item.get("claimedAt")).replace("Z", "+00:00")).timestamp()
    return now - claimed > UNSTARTED_AFTER_SECONDS


def window_event_problems(
    table: Mapping[str, Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """(closed windows without exactly one "Refund Inquiry Finished" event, conflicts without exactly one
    conflict event), over every closed refund item. Events find their item by any id form it is known by."""
    owner: dict[tuple[str, str, str, str], str] = {}
    for key, item in table.items():
        for kind, value in ((REQUEST_ID, item.get("refundRequestId")), (REFUND_ID, item.get("refundId"))):
            if value:
                owner.setdefault((str(item["provider"]), str(item["merchant"]), kind, str(value)), key)
        ref = RefundRef.from_item_key(key)
        owner[(ref.provider, ref.merchant, ref.kind, ref.value)] = key
    finished: dict[str, Counter[str]] = {}
    conflicts: dict[str, Counter[str]] = {}
    problems: list[str] = []
    for event in events:
        detail = event["detail"]
        holder = next(
            (
                owner[form]
                for form in (
                    (detail.get("provider"), detail.get("merchant"), REQUEST_ID, detail.get("refundRequestId")),
                    (detail.get("provider"), detail.get("merchant"), REFUND_ID, detail.get("refundId")),
                )
                if form in owner
            ),
            None,
        )
        if holder is None:
            problems.append(
                f"an event for no stored item: {detail.get('refundId')!r}/{detail.get('refundRequestId')!r}"
            )
            continue
        book = conflicts if event.get("detail-type") == CONFLICT_DETAIL_TYPE else finished
        book.setdefault(holder, Counter())[str(detail.get("eventId"))] += 1
    conflict_problems: list[str] = []
    for key, item in table.items():
        if item.get("pollingState") == POLLING:
            continue  # not closed: counted as lost or stranded
        seen = finished.get(key, Counter())
        windows = int(item.get("generation", 0))
        copies = sorted(n for n in seen.values() if n != 1)
        if copies and item.get("source") != "notification" and len(seen) == windows:
            # The same event delivered twice under one eventId (a publish whose flag clear was cut short, then
            # repeated by a retry or a redelivery): at-least-once with a stable id, which consumers dedupe (README,
            # "Results and events"). Printed, not a loss; two eventIds for one window, or none, still fail, and so
            # does a notification-closed window announced twice (docs/RELIABILITY.md, "Known limits").
            print(f"same-eventId copies (deduplicated by consumers): {key}: {dict(seen)}")
            copies = []
        if len(seen) != windows or copies or item.get(EVENT_PENDING) or str(item.get("eventId")) not in seen:
            problems.append(f"{key}: {windows} windows closed, events {dict(seen)}, pending {item.get(EVENT_PENDING)}")
        announced = conflicts.get(key, Counter())
        if len(announced) != int(item.get("finalConflictCount", 0)) or any(n != 1 for n in announced.values()):
            conflict_problems.append(f"{key}: {item.get('finalConflictCount', 0)} conflicts, events {dict(announced)}")
    return problems, conflict_problems


def inquiries_after_final(stack: DevStack, provider: str, sandbox_id: str, item: Mapping[str, Any]) -> int:
    """0 or 1: whether the provider was asked about a refund the long tail resolved after the poller had recorded
    its final status (the sandbox's last inquiry arrived after the item's ``finalAt``). Only for refunds final at
    a tail attempt: a fast window's retried poll may ask once more after a crash past its write, by design."""
    history = item.get("tailHistory") or []
    if not item.get("final") or not history or history[-1].get("status") not in ("SUCCESS", "FAIL"):
        return 0
    record = stack.sandbox.refund(provider, sandbox_id) or {}
    final_at = datetime.fromisoformat(str(item["finalAt"]).replace("Z", "+00:00")).timestamp()
    return int(float(record.get("lastPollAt") or 0) > final_at)


def peak_memory_mb(stack: DevStack) -> dict[str, int]:
    """The highest "Max Memory Used" any worker reported per function (the worker's VmHWM, worker_main.py)."""
    peaks = {}
    for function in ("StartInquiryFunction", "InquireFunction"):
        used = [int(mb) for mb in _MAX_MEMORY.findall(stack.cloud.function_logs(function))]
        peaks[function] = max(used, default=0)
    return peaks


def _list(stack: DevStack, machine: str, status: str | None) -> list[dict[str, Any]]:
    sfn = stack.client("stepfunctions")
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        options: dict[str, Any] = {"statusFilter": status} if status else {}
        if token:
            options["nextToken"] = token
        page = sfn.list_executions(stateMachineArn=machine, maxResults=1000, **options)
        found.extend(page["executions"])
        token = page.get("nextToken")
        if not token:
            return found


def _log_group(logging_config: Mapping[str, Any]) -> str | None:
    for destination in logging_config.get("destinations", []):
        group_arn = str((destination.get("cloudWatchLogsLogGroup") or {}).get("logGroupArn", ""))
        if ":log-group:" in group_arn:
            return group_arn.split(":log-group:", 1)[1].split(":", 1)[0]
    return None


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
