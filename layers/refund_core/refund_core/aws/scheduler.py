"""The long tail's waiting engine: EventBridge Scheduler one-time schedules that put a tail attempt's message on
the inquiry queue (docs/long-tail.md). One schedule per pending attempt, deleted by the service after it fired
(``ActionAfterCompletion`` DELETE), in the stack's own schedule group (deleted with the stack)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

# Delivery retries of the schedule's target: EventBridge Scheduler's defaults (24 h, 185 retries), stated.
RETRY_POLICY = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}


class EventBridgeTailScheduler:
    def __init__(self, client: Callable[[], Any], group_name: str, queue_arn: str, role_arn: str) -> None:
        # A client factory: the scheduler client is made on a container's first tail attempt, not at cold start.
        self._factory = client
        self._made: Any = None
        self._group = group_name
        self._queue_arn = queue_arn
        self._role_arn = role_arn

    def schedule(self, name: str, at: float, message: Mapping[str, Any]) -> None:
        """A one-time schedule ``at(<UTC time>)``, to the second, flexible window OFF (on time, not spread)."""
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        client = self._client()
        # An existing name was made by an earlier try of the same write (the name is fixed by window and attempt).
        with contextlib.suppress(client.exceptions.ConflictException):
            client.create_schedule(
                Name=name,
                GroupName=self._group,
                ScheduleExpression=f"at({when})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={
                    "Arn": self._queue_arn,
                    "RoleArn": self._role_arn,
                    "Input": json.dumps(message, ensure_ascii=False, separators=(",", ":")),
                    "RetryPolicy": RETRY_POLICY,
                },
            )

    def cancel(self, name: str) -> None:
        client = self._client()
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):  # fired and deleted, or never made
            client.delete_schedule(Name=name, GroupName=self._group)

    def _client(self) -> Any:
        if self._made is None:
            self._made = self._factory()
        return self._made
