"""Result events on EventBridge; the detail is the stored outcome with its ``eventId`` (no secrets)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from refund_core.service import CONFLICT_DETAIL_TYPE, FINISHED_DETAIL_TYPE

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "refund-poller"
DETAIL_TYPE = FINISHED_DETAIL_TYPE
__all__ = ["CONFLICT_DETAIL_TYPE", "DETAIL_TYPE", "EVENT_SOURCE", "EventBridgeEvents", "EventPublishError"]


class EventPublishError(RuntimeError):
    """EventBridge did not accept the event (the outbox keeps it pending; a retry sends it again)."""


class EventBridgeEvents:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def publish(self, detail: Mapping[str, Any], *, detail_type: str = DETAIL_TYPE) -> None:
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail, separators=(",", ":"), default=str),
            "EventBusName": self._bus,
        }
        answer = self._client.put_events(Entries=[entry])  # type: ignore[list-item]  # TypedDict from a dict literal
        # PutEvents reports a refused entry in the answer, not as an error: FailedEntryCount must be checked.
        if answer.get("FailedEntryCount"):
            failed = (answer.get("Entries") or [{}])[0]
            raise EventPublishError(
                f"EventBridge refused the event: {failed.get('ErrorCode')} {failed.get('ErrorMessage')}"
            )
