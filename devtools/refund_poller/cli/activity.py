"""What a running local stack is doing, one readable line per thing that happened: a message handled or rejected
(to the DLQ), a poll, a window closed, a result event published, a message that reached the DLQ.

The sources are the ones AWS would have: the functions' log records (the local runtime writes each function's
log to ``.refund-poller/local/logs/<function>.log``, as Lambda writes to CloudWatch Logs), the result events
(an EventBridge rule that ``local up`` adds, with a CloudWatch Logs log group as its target) and the DLQ's
message count.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The rule and log group that keep the result events where `refund-poller events` reads them (local stack).
EVENTS_RULE = "refund-poller-cli-result-events"
EVENTS_LOG_GROUP = "/refund-poller/local/result-events"
EVENT_PATTERN = {"source": ["refund-poller"]}


def log_dir(state_file: Path) -> Path:
    """Where ``local up`` (which keeps its files beside its state file) has its functions write their logs."""
    return state_file.parent / "local" / "logs"


def keep_result_events(events: Any, logs: Any, bus_name: str) -> None:
    """Add the rule that copies every result event into ``EVENTS_LOG_GROUP`` (idempotent)."""
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=EVENTS_LOG_GROUP)
    group = logs.describe_log_groups(logGroupNamePrefix=EVENTS_LOG_GROUP)["logGroups"][0]
    events.put_rule(Name=EVENTS_RULE, EventBusName=bus_name, EventPattern=json.dumps(EVENT_PATTERN))
    target_arn = str(group["arn"]).removesuffix(":*")
    events.put_targets(Rule=EVENTS_RULE, EventBusName=bus_name, Targets=[{"Id": "cli-log", "Arn": target_arn}])


@dataclass
class LogTail:
    """New complete lines of the files in a directory, each file read from where the last call stopped."""

    directory: Path
    pattern: str = "*.log"
    from_start: bool = True
    _offsets: dict[Path, int] = field(default_factory=dict)

    def lines(self) -> Iterator[tuple[str, str]]:
        """(function name, line) for every line written since the last call."""
        for path in sorted(self.directory.glob(self.pattern)):
            if path not in self._offsets:
                self._offsets[path] = 0 if self.from_start else path.stat().st_size
            with path.open("rb") as file:
                file.seek(self._offsets[path])
                chunk = file.read()
            complete = chunk.rpartition(b"\n")[0]
            if not complete:
                continue
            self._offsets[path] += len(complete) + 1
            for raw in complete.split(b"\n"):
                yield path.stem, raw.decode("utf-8", errors="replace")


def record_of(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _refund(record: dict[str, Any]) -> str:
    ids = " / ".join(str(record[k]) for k in ("refundRequestId", "refundId") if record.get(k)) or "?"
    return f"{record.get('provider', '?')}/{record.get('merchant', 'default')} {ids}"


def _clock(record: dict[str, Any]) -> str:
    stamp = str(record.get("timestamp", ""))  # Powertools: "2026-12-01 04:29:35,953+0000"
    return stamp[11:19] if len(stamp) >= 19 else time.strftime("%H:%M:%S", time.gmtime())


def activity_line(function: str, line: str) -> str | None:
    """The readable line for one log line of a function, or None when it tells nothing an operator needs."""
    record = record_of(line)
    if record is None:
        return None
    message = record.get("message")
    at = _clock(record)
    if message == "message handled":
        why = f" ({record['why']})" if record.get("why") else ""
        return f"{at}  message   {_refund(record)}: {record.get('action')}{why}"
    if message == "message rejected":
        return f"{at}  DLQ       message {str(record.get('messageId'))[:8]} rejected: {record.get('reason')}"
    if message == "poll":
        decision = record.get("decision") or {}
        said = f"{_refund(record)} #{record.get('polls')} {record.get('status')}"
        if decision.get("next") == "wait":
            return f"{at}  poll      {said}, wait {decision.get('waitSeconds')} s"
        return f"{at}  close     {said}: window closed {decision.get('status')}"
    if message == "outbox swept" and record.get("published"):
        return f"{at}  event     outbox sweep published {record['published']} pending result event(s)"
    if str(record.get("level")) in ("ERROR", "CRITICAL") or (message and "left for redelivery" in str(message)):
        return f"{at}  {str(record.get('level', 'warn')).lower():<8}  {function}: {message}"
    return None


def event_line(message: str) -> str | None:
    """The readable line for one result event as the log group target stored it (the whole event, JSON)."""
    event = record_of(message)
    if event is None:
        return None
    detail = event.get("detail") or {}
    at = str(event.get("time", ""))[11:19] or time.strftime("%H:%M:%S", time.gmtime())
    kind = "conflict" if event.get("detail-type") == "Refund Final Status Conflict" else "finished"
    return (
        f"{at}  event     {_refund(detail)}: {detail.get('status')} ({kind}, eventId {str(detail.get('eventId'))[:8]})"
    )


def read_events(logs: Any, log_group: str, start_ms: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The result events stored in ``log_group`` since ``start_ms``, oldest first, and where to read next."""
    found: list[tuple[int, str]] = []
    token: dict[str, str] = {}
    while True:
        page = logs.filter_log_events(logGroupName=log_group, startTime=start_ms, **token)
        found += [(int(e["timestamp"]), str(e["message"])) for e in page.get("events", [])]
        if not page.get("nextToken"):
            break
        token = {"nextToken": page["nextToken"]}
    found.sort(key=lambda pair: pair[0])
    events = [event for _, message in found if (event := record_of(message)) is not None]
    return events, (found[-1][0] + 1 if found else start_ms)


class ActivityPrinter(threading.Thread):
    """Prints the stack's activity while ``local up`` runs, until stopped."""

    def __init__(self, directory: Path, clients: Callable[[str], Any], dlq_url: str, say: Callable[[str], None]):
        super().__init__(name="activity", daemon=True)
        self._tail = LogTail(directory)
        self._clients = clients
        self._dlq_url = dlq_url
        self._say = say
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        logs, sqs = self._clients("logs"), self._clients("sqs")
        next_event_ms, in_dlq = 0, 0
        while not self._stopped.wait(0.5):
            try:
                for function, line in self._tail.lines():
                    shown = activity_line(function.removeprefix("local-"), line)
                    if shown:
                        self._say(shown)
                events, next_event_ms = read_events(logs, EVENTS_LOG_GROUP, next_event_ms)
                for event in events:
                    shown = event_line(json.dumps(event))
                    if shown:
                        self._say(shown)
                attributes = sqs.get_queue_attributes(
                    QueueUrl=self._dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
                now_in_dlq = int(attributes.get("ApproximateNumberOfMessages", 0))
                if now_in_dlq > in_dlq:
                    self._say(
                        f"{time.strftime('%H:%M:%S', time.gmtime())}  DLQ       {now_in_dlq} message(s) in the DLQ"
                        " (`refund-poller dlq` lists them with their reasons)"
                    )
                in_dlq = now_in_dlq
            except Exception:  # noqa: S112  # nosec B112  # a stopping stack refuses calls; the next round settles it
                continue
