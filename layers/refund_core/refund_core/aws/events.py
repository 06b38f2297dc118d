"""One EventBridge event per finished inquiry; the detail is the stored outcome (no secrets)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "refund-poller"
DETAIL_TYPE = "Refund Inquiry Finished"


class EventPublishError(RuntimeError):
    """EventBridge did not accept the event (the caller's retry will send it again)."""


class EventBridgeEvents:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def publish(self, outcome: Mapping[str, Any]) -> None:
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(outcome, separators=(",", ":"), default=str),
            "EventBusName": self._bus,
        }
        answer = self._client.put_events(Entries=[entry])  # type: ignore[list-item]  # TypedDict from a dict literal
        if answer.get("FailedEntryCount"):
            raise EventPublishError(f"EventBridge refused the event: {answer['Entries'][0].get('ErrorCode')}")
