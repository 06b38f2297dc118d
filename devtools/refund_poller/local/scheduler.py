"""EventBridge Scheduler on the local stack: moto keeps the schedules (CreateSchedule, DeleteSchedule, …) but never
fires them. This module fires due one-time schedules into their SQS target, deletes them after completion when
they ask for it (``ActionAfterCompletion`` DELETE), and refuses at CreateSchedule what AWS refuses and moto accepts.
A time scale compresses waiting, so a multi-day long tail runs in seconds (docs/internals.md, "Strict local
stack: EventBridge Scheduler").
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.scheduler.exceptions import ScheduleGroupNotFound, ValidationException
from moto.scheduler.models import EventBridgeSchedulerBackend, Schedule, scheduler_backends

from refund_poller.local.errors import LocalCloudError

# CreateSchedule, request parameter Name: 1-64 characters of [0-9a-zA-Z-_.].
NAME = re.compile(r"[0-9a-zA-Z_.-]{1,64}")
# "at(yyyy-mm-ddThh:mm:ss)": one-time schedules (the only kind this stack creates and the firer fires).
AT_EXPRESSION = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
QUEUE_ARN = re.compile(r"arn:[^:]+:sqs:[^:]+:\d{12}:([A-Za-z0-9_-]{1,80})")
TICK_SECONDS = 0.05


@dataclass
class SchedulerSettings:
    """``time_scale``: waiting is divided by it (1: real time; 100000: seven days in about six seconds), counted
    from each schedule's creation. ``duplicate_rate``: the share of firings delivered twice (AWS delivers at least
    once). ``strict``: refuse at CreateSchedule what AWS refuses."""

    time_scale: float = 1.0
    duplicate_rate: float = 0.0
    strict: bool = True
    seed: int | None = None
    # Compression never brings a firing closer than this to its schedule's creation: on AWS the shortest tail
    # delay is 60 s, so the item write that follows CreateSchedule always lands before the firing.
    min_delay_seconds: float = 0.5


class ScheduleFirer:
    """A thread that fires due one-time schedules of this process's moto into their SQS queue."""

    def __init__(self, settings: SchedulerSettings, sqs: Any, account_id: str, region: str) -> None:
        self.settings = settings
        self._sqs = sqs
        self._account, self._region = account_id, region
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="schedule-firer", daemon=True)
        self._fired: set[str] = set()  # schedules kept after firing (ActionAfterCompletion NONE)
        self._random = random.Random(settings.seed)  # noqa: S311  # nosec B311  # emulation, not security
        self._offsets: dict[str, float] = {}  # flexible window offsets, drawn once per schedule
        self.deliveries = 0  # messages sent to targets (duplicates included)
        self.failures = 0  # target deliveries that failed (retried at the next tick)

    def start(self) -> None:
        _patch_backend()
        _enforced[0] = self.settings.strict
        self._thread.start()

    def stop(self) -> None:
        _enforced[0] = False
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def fire_due(self, now: float) -> int:
        """Fire every schedule due at epoch ``now`` (real time; the time scale applies); returns how many fired."""
        fired = 0
        for schedule in self._schedules():
            if schedule.arn in self._fired or schedule.state != "ENABLED" or self._due(schedule) > now:
                continue
            try:
                self._deliver(schedule)
            except Exception:  # the target refused: AWS retries within the schedule's retry policy
                self.failures += 1
                continue
            fired += 1
            if schedule.action_after_completion == "DELETE":
                self._backend().get_schedule_group(schedule.group_name).schedules.pop(schedule.name, None)
            else:
                self._fired.add(schedule.arn)
        return fired

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.fire_due(datetime.now(UTC).timestamp())
            except Exception:  # noqa: S112  # a server stopping under the thread  # nosec B112
                continue

    def _due(self, schedule: Schedule) -> float:
        match = AT_EXPRESSION.fullmatch(schedule.schedule_expression)
        if match is None:
            return float("inf")  # rate() and cron() schedules: not fired locally
        at = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC).timestamp()
        created = float(schedule.creation_date)
        if schedule.arn not in self._offsets:
            window = schedule.flexible_time_window or {}
            minutes = window.get("MaximumWindowInMinutes", 0) if window.get("Mode") == "FLEXIBLE" else 0
            self._offsets[schedule.arn] = self._random.uniform(0, minutes * 60)
        wait = max(0.0, at + self._offsets[schedule.arn] - created) / self.settings.time_scale
        return created + max(wait, min(self.settings.min_delay_seconds, at - created))

    def _deliver(self, schedule: Schedule) -> None:
        target = schedule.target
        match = QUEUE_ARN.fullmatch(str(target.get("Arn", "")))
        if match is None:
            raise LocalCloudError(f"schedule {schedule.name}: only SQS targets are fired locally")
        url = self._sqs.get_queue_url(QueueName=match.group(1))["QueueUrl"]
        copies = 2 if self._random.random() < self.settings.duplicate_rate else 1
        for _ in range(copies):
            self._sqs.send_message(QueueUrl=url, MessageBody=target.get("Input") or "{}")
            self.deliveries += 1

    def _schedules(self) -> list[Schedule]:
        groups = list(self._backend().schedule_groups.values())
        return [schedule for group in groups for schedule in list(group.schedules.values())]

    def _backend(self) -> EventBridgeSchedulerBackend:
        return scheduler_backends[self._account][self._region]


_originals: dict[str, Any] = {}
_enforced = [False]  # the running stack's ``strict`` (one local stack per process)


def _patch_backend() -> None:
    """Refuse at CreateSchedule what AWS refuses and moto 5.2.5 accepts (idempotent, process-wide)."""
    if _originals:
        return
    _originals["create_schedule"] = EventBridgeSchedulerBackend.create_schedule
    EventBridgeSchedulerBackend.create_schedule = _create_schedule  # type: ignore[method-assign,assignment]


def _create_schedule(backend: EventBridgeSchedulerBackend, *args: Any, **kwargs: Any) -> Schedule:
    if _enforced[0]:
        check_create_schedule(backend, **kwargs)
    schedule: Schedule = _originals["create_schedule"](backend, *args, **kwargs)
    return schedule


def check_create_schedule(backend: EventBridgeSchedulerBackend, **request: Any) -> None:
    """The CreateSchedule rules the long tail relies on (EventBridge Scheduler API Reference, CreateSchedule)."""
    name = str(request.get("name") or "")
    if not NAME.fullmatch(name):
        raise ValidationException(f"Name: must be 1-64 characters of [0-9a-zA-Z-_.], got {len(name)} characters")
    group = request.get("group_name") or "default"
    if group not in backend.schedule_groups:
        raise ScheduleGroupNotFound(group)
    expression = str(request.get("schedule_expression") or "")
    if expression.startswith("at(") and not AT_EXPRESSION.fullmatch(expression):
        raise ValidationException("ScheduleExpression: at() takes yyyy-mm-ddThh:mm:ss")
    window = request.get("flexible_time_window") or {}
    if window.get("Mode") not in ("OFF", "FLEXIBLE"):
        raise ValidationException("FlexibleTimeWindow.Mode: must be OFF or FLEXIBLE")
    if window.get("Mode") == "FLEXIBLE" and not 1 <= int(window.get("MaximumWindowInMinutes", 0)) <= 1440:
        raise ValidationException("FlexibleTimeWindow.MaximumWindowInMinutes: must be 1 to 1440 when FLEXIBLE")
    if request.get("action_after_completion") not in (None, "NONE", "DELETE"):
        raise ValidationException("ActionAfterCompletion: must be NONE or DELETE")
    target = request.get("target") or {}
    if not target.get("Arn") or not target.get("RoleArn"):
        raise ValidationException("Target: Arn and RoleArn are required")
