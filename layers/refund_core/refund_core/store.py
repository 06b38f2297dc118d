"""The results table: one item per refund, written with conditional updates.

Rules (architecture.md, "Stored item"): a final status is never overwritten by a weaker
observation; counters use atomic ``ADD`` so concurrent writers cannot lose an update; only the
loop that owns the current ``generation`` may close the item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from refund_core.domain.claim import IDLE, POLLING, ClaimVerdict, judge_claim
from refund_core.domain.inquiry import InquiryMessage, item_key
from refund_core.domain.outcome import Observation, Status

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REFUND_ID_INDEX = "refundId-index"
_INTERNAL = frozenset({"pk", "refundIdKey", "claimMessageId"})
# Statuses an observation may write; UNKNOWN (a failed poll) leaves the stored status as it was.
_STATUS_WRITERS = frozenset({Status.SUCCESS, Status.FAIL, Status.PROCESSING, Status.NOT_FOUND})
_serializer, _deserializer = TypeSerializer(), TypeDeserializer()


class ClaimContendedError(RuntimeError):
    """Another writer kept changing the item while this one tried to claim it (retry later)."""


@dataclass(frozen=True, slots=True)
class Claim:
    proceed: bool
    reason: str
    generation: int = 0


class DynamoDbRefundStore:
    """:class:`RefundStore` on a DynamoDB table (key ``pk``, GSI ``refundId-index``)."""

    def __init__(self, client: DynamoDBClient, table_name: str, ttl_days: int = 90) -> None:
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_days * 86400

    def get(self, key: str) -> dict[str, Any] | None:
        answer = self._client.get_item(TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True)
        return load_item(answer["Item"]) if "Item" in answer else None

    def key_for_refund_id(self, provider: str, merchant: str, refund_id: str) -> str | None:
        """The key of the item that knows this provider refund id, if any (via the GSI)."""
        answer = self._client.query(
            TableName=self._table,
            IndexName=REFUND_ID_INDEX,
            KeyConditionExpression="refundIdKey = :k",
            ExpressionAttributeValues={":k": {"S": item_key(provider, merchant, refund_id)}},
            Limit=1,
        )
        items = answer.get("Items", [])
        return items[0]["pk"]["S"] if items else None

    def claim(self, message: InquiryMessage, key: str, *, message_id: str, now: float, window_end: float) -> Claim:
        """Take the right to poll this refund for one window (optimistic lock on ``generation``)."""
        for _ in range(3):
            item = self.get(key)
            verdict: ClaimVerdict = judge_claim(item, message_id=message_id, force=message.force, now=now)
            if verdict.verdict == "skip":
                return Claim(False, verdict.reason)
            generation = int((item or {}).get("generation", 0))
            if verdict.verdict == "resume":
                return Claim(True, verdict.reason, generation)
            if self._try_claim(message, key, message_id, generation, now, window_end):
                return Claim(True, verdict.reason, generation + 1)
        raise ClaimContendedError(f"could not claim {key}: concurrent writers")

    def _try_claim(
        self, message: InquiryMessage, key: str, message_id: str, generation: int, now: float, window_end: float
    ) -> bool:
        update = (
            _Update()
            .set("generation", generation + 1)
            .set("pollingState", POLLING)
            .set("claimMessageId", message_id)
            .set("claimedAt", _iso(now))
            .set("windowEndsAt", Decimal(str(round(window_end, 3))))
            .set("provider", message.provider)
            .set("merchant", message.merchant)
            .set("status", Status.UNKNOWN.value, if_absent=True)
            .set("final", False, if_absent=True)
            .set("expiresAt", int(now) + self._ttl_seconds)
            .set("executionArn", None)
        )
        for attribute, value in (
            ("refundId", message.refund_id),
            ("refundRequestId", message.refund_request_id),
            ("correlationId", message.correlation_id),
        ):
            if value:
                update.set(attribute, value)
        if message.refund_id:
            update.set("refundIdKey", item_key(message.provider, message.merchant, message.refund_id))
        generation_name = update.name("generation")
        condition = f"attribute_not_exists(pk) OR {update.generation_is(generation)}"
        if generation == 0:
            condition += f" OR attribute_not_exists({generation_name})"
        return self._apply(key, update, condition) is not None

    def record(self, key: str, observation: Observation, *, now: float) -> None:
        """Store one observation: counters always, the status only when it does not regress."""
        if observation.status in _STATUS_WRITERS:
            update = self._observed(key, observation, _status_fields(observation), now)
            condition = None if observation.final else update.not_final()
            if self._apply(key, update, condition) is not None:
                return
            # The item is final and this observation is not: keep the counters, leave the status alone.
        counters = self._counters(observation, now)
        if observation.status is Status.ERROR:  # the refusal's code is what an operator needs; close sets the status
            counters.set("result", _status_fields(observation)["result"])
        self._apply(key, counters)

    def record_and_close(
        self, key: str, generation: int, observation: Observation, status: Status, reason: str | None, *, now: float
    ) -> dict[str, Any]:
        """The window's last observation and its close as one conditional write; returns the stored item.

        One write, not two: the final answer and the end of the window appear together (no reader sees a final
        status on an item still polling), and the commonest refund, final at its first poll, costs one write
        less. When the item is not as this window expects (a newer window owns it, or it is final and this
        observation is not), or the observation does not write a status, it falls back to ``record`` then
        ``close``, whose conditions sort those cases out.
        """
        if observation.status in _STATUS_WRITERS and observation.final == status.final:
            fields = {**_status_fields(observation), "status": status.value}
            update = self._observed(key, observation, fields, now)
            update.set("pollingState", IDLE).set("resolvedAt", _iso(now)).set("reason", reason)
            condition = update.generation_is(generation)
            if not status.final:
                condition += f" AND {update.not_final()}"
            item = self._apply(key, update, condition)
            if item is not None:
                return public_view(item)
        self.record(key, observation, now=now)
        return self.close(key, generation, status, reason, now=now)

    def _observed(self, key: str, observation: Observation, fields: Mapping[str, Any], now: float) -> _Update:
        """The counters plus what the observation says about the refund."""
        update = self._counters(observation, now)
        for attribute, value in fields.items():
            update.set(attribute, value)
        if observation.refund_id:  # the provider revealed its id: make the item findable by it
            provider, merchant, _ = key.split("#", 2)
            update.set("refundIdKey", item_key(provider, merchant, observation.refund_id))
        return update

    def _counters(self, observation: Observation, now: float) -> _Update:
        return (
            _Update()
            .add("polls", 1)
            .set("firstPollAt", _iso(now), if_absent=True)
            .set("lastPollAt", _iso(now))
            .set("lastObservation", _observation_summary(observation))
            .set("expiresAt", int(now) + self._ttl_seconds)
        )

    def set_execution(self, key: str, generation: int, execution_arn: str) -> None:
        update = _Update().set("executionArn", execution_arn)
        self._apply(key, update, update.generation_is(generation))

    def close(self, key: str, generation: int, status: Status, reason: str | None, *, now: float) -> dict[str, Any]:
        """End this generation's window with ``status``; returns the stored item (the event's detail)."""

        def closing() -> _Update:
            return _Update().set("pollingState", IDLE).set("resolvedAt", _iso(now)).set("reason", reason)

        update = closing().set("status", status.value)
        condition = update.generation_is(generation)
        if not status.final:
            condition += f" AND {update.not_final()}"
        item = self._apply(key, update, condition)
        if item is None:  # a final status stays, or a newer window owns the item: close only our window
            update = closing()
            item = self._apply(key, update, update.generation_is(generation)) or self.get(key)
        return public_view(item or {})

    def _apply(self, key: str, update: _Update, condition: str | None = None) -> dict[str, Any] | None:
        """One UpdateItem; None when the condition failed. Other client errors propagate (the caller retries)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": update.expression(),
            "ExpressionAttributeNames": update.names,
            "ExpressionAttributeValues": {k: _serializer.serialize(v) for k, v in update.values.items()},
            "ReturnValues": "ALL_NEW",
        }
        if condition:
            request["ConditionExpression"] = condition
        try:
            answer = self._client.update_item(**request)
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        return load_item(answer.get("Attributes", {}))


class _Update:
    """An UpdateItem expression with every attribute name and value as a placeholder.

    DynamoDB reserves hundreds of words (status, result, final, reason, …); placeholders for all
    names avoid the list entirely.
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._sets: list[str] = []
        self._adds: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, attribute: str, value: Any, *, if_absent: bool = False) -> _Update:
        name, placeholder = self.name(attribute), self.value(value)
        self._sets.append(f"{name} = if_not_exists({name}, {placeholder})" if if_absent else f"{name} = {placeholder}")
        return self

    def add(self, attribute: str, amount: int) -> _Update:
        self._adds.append(f"{self.name(attribute)} {self.value(amount)}")
        return self

    def expression(self) -> str:
        parts = [f"SET {', '.join(self._sets)}"] if self._sets else []
        return " ".join(parts + ([f"ADD {', '.join(self._adds)}"] if self._adds else []))

    def not_final(self) -> str:
        final = self.name("final")
        return f"(attribute_not_exists({final}) OR {final} = {self.value(False)})"

    def generation_is(self, generation: int) -> str:
        return f"{self.name('generation')} = {self.value(generation)}"


def public_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The stored outcome as merchants see it (events, CLI): no internal bookkeeping."""
    return {k: v for k, v in item.items() if k not in _INTERNAL}


def _status_fields(observation: Observation) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": observation.status.value,
        "final": observation.final,
        "result": {
            "code": observation.result.code,
            "status": observation.result.status,
            "message": observation.result.message,
        },
        "refundId": observation.refund_id,
        "refundRequestId": observation.refund_request_id,
        "amount": (
            {"value": observation.amount_value, "currency": observation.amount_currency}
            if observation.amount_value is not None
            else None
        ),
        "refundTime": observation.refund_time,
        "failReason": observation.fail_reason,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _observation_summary(observation: Observation) -> dict[str, Any]:
    summary = {
        "status": observation.status.value,
        "verified": observation.verified,
        "reason": observation.reason,
        "resultCode": observation.result.code,
        "resultStatus": observation.result.status,
        "latencyMs": None if observation.latency_ms is None else Decimal(str(round(observation.latency_ms, 1))),
    }
    return {k: v for k, v in summary.items() if v is not None}


def load_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's typed JSON as plain Python: numbers as ints or floats, sets as lists."""
    return {k: _plain(_deserializer.deserialize(v)) for k, v in raw.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; give JSON-friendly ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    return value


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
