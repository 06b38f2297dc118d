"""The inquiry service wired to a real moto server: results table, EventBridge bus, Step Functions.

Only the provider is scripted (its answers are what these tests choose); the store, the EventBridge and Step
Functions adapters and the service are the real ones, talking to moto over HTTP. Executions stay RUNNING (this
moto server does not run state machines), as a live loop would while the tests look at names and windows.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from refund_core.aws.events import EventBridgeEvents
from refund_core.aws.executions import StepFunctionsExecutions
from refund_core.domain.inquiry import InquiryMessage
from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.domain.polling import Policy
from refund_core.providers import Provider, RefundQuery
from refund_core.service import InquiryService, StartResult
from refund_core.store import (
    PENDING_INDEX,
    PENDING_SHARD,
    PENDING_SINCE,
    REFUND_ID_INDEX,
    DynamoDbRefundStore,
    is_refund_item,
    load_item,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOW = 1_800_000_000.0
PROVIDERS = ("antom", "alipayplus", "alphapay")
# A loop whose state machine only waits: moto keeps it RUNNING, which is all these tests need of it.
WAITING_LOOP = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}})


def create_results_table(dynamodb: DynamoDBClient) -> str:
    """A results table shaped as the template's (key ``pk``, GSIs ``refundId-index``, ``pendingEvents-index``)."""
    name = f"results-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "refundIdKey", "AttributeType": "S"},
            {"AttributeName": PENDING_SHARD, "AttributeType": "S"},
            {"AttributeName": PENDING_SINCE, "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": REFUND_ID_INDEX,
                "KeySchema": [{"AttributeName": "refundIdKey", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": PENDING_INDEX,
                "KeySchema": [
                    {"AttributeName": PENDING_SHARD, "KeyType": "HASH"},
                    {"AttributeName": PENDING_SINCE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    )
    return name


def answer(
    status: Status,
    *,
    refund_id: str | None = None,
    refund_request_id: str | None = None,
    verified: bool = True,
    provider: str = "antom",
) -> Observation:
    """A provider's answer as the adapters normalise it."""
    return Observation(
        provider=provider,
        status=status,
        verified=verified,
        refund_id=refund_id,
        refund_request_id=refund_request_id,
        amount_value="100" if status is Status.SUCCESS else None,
        amount_currency="USD" if status is Status.SUCCESS else None,
        result=ProviderResult("SUCCESS", "S", "success"),
        reason=f"refund is {status.value} at the provider",
    )


class ScriptedProvider:
    """Answers every inquiry with ``default`` unless a refund id has answers queued (first in, first out)."""

    def __init__(self, default: Status = Status.PROCESSING) -> None:
        self.default = default
        self.queued: dict[str, list[Observation]] = {}
        self.queries: list[RefundQuery] = []

    def queue(self, refund: str, *answers: Observation) -> None:
        self.queued.setdefault(refund, []).extend(answers)

    def inquire(self, query: RefundQuery, *, timeout_seconds: float | None = None) -> Observation:
        self.queries.append(query)
        for refund in (query.refund_request_id, query.refund_id):
            if refund and self.queued.get(refund):
                return self.queued[refund].pop(0)
        return answer(self.default)


@dataclass
class ScriptedAdapters:
    provider: ScriptedProvider = field(default_factory=ScriptedProvider)

    def adapter(self, provider: str, merchant: str) -> Provider:
        return cast(Provider, self.provider)


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


class EventCapture:
    """A bus with a rule copying every event to a queue: what a merchant's consumer would receive."""

    def __init__(self, endpoint: str) -> None:
        self.events = boto3.client("events", endpoint_url=endpoint, region_name="us-east-1")
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        self.bus = f"bus-{uuid.uuid4().hex[:8]}"
        self.events.create_event_bus(Name=self.bus)
        self.queue_url = self.sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.events.put_rule(
            Name="capture", EventBusName=self.bus, EventPattern=json.dumps({"source": ["refund-poller"]})
        )
        self.events.put_targets(
            Rule="capture", EventBusName=self.bus, Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}]
        )

    def drain(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


class FailingPutEvents:
    """The real EventBridge client, except that the next ``failures`` PutEvents fail as ``mode`` says.

    ``refused``: answered with FailedEntryCount and nothing delivered (as AWS reports a throttled or internal entry
    failure, without raising); ``timeout``: no connection, nothing delivered; ``lost-answer``: delivered, then the
    answer is lost (a read timeout): the one case that yields a duplicate, with the same ``eventId``.
    """

    def __init__(self, client: Any, failures: int, mode: str = "refused") -> None:
        self._client = client
        self.failures = failures
        self.mode = mode

    def put_events(self, **request: Any) -> Any:
        if self.failures <= 0:
            return self._client.put_events(**request)
        self.failures -= 1
        endpoint = "https://events.us-east-1.amazonaws.com"
        if self.mode == "timeout":
            raise ConnectTimeoutError(endpoint_url=endpoint)
        if self.mode == "lost-answer":
            self._client.put_events(**request)
            raise ReadTimeoutError(endpoint_url=endpoint)
        entries = [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} for _ in request["Entries"]]
        return {"FailedEntryCount": len(entries), "Entries": entries}


@dataclass
class Core:
    """Everything a test of the service needs, on one moto server."""

    endpoint: str
    dynamodb: Any
    table: str
    store: DynamoDbRefundStore
    capture: EventCapture
    events: EventBridgeEvents
    put_events: FailingPutEvents
    sfn: Any
    executions: StepFunctionsExecutions
    adapters: ScriptedAdapters
    clock: Clock
    service: InquiryService

    @property
    def provider(self) -> ScriptedProvider:
        return self.adapters.provider

    def send(self, body: dict[str, Any], message_id: str | None = None) -> StartResult:
        """What the starter does with one valid message."""
        message = InquiryMessage.from_body(body)
        return self.service.start(message, message_id=message_id or uuid.uuid4().hex, executions=self.executions)

    def items(self) -> dict[str, dict[str, Any]]:
        """Every refund item (alias items left out), by key."""
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True)
        loaded = (load_item(raw) for page in pages for raw in page["Items"])
        return {str(item["pk"]): item for item in loaded if is_refund_item(item)}

    def fail_put_events(self, failures: int, mode: str = "refused") -> None:
        self.put_events.failures, self.put_events.mode = failures, mode

    def execution_input(self, arn: str) -> dict[str, Any]:
        return dict(json.loads(self.sfn.describe_execution(executionArn=arn)["input"]))


def make_core(moto_endpoint: str, dynamodb: DynamoDBClient) -> Core:
    table = create_results_table(dynamodb)
    store = DynamoDbRefundStore(dynamodb, table, ttl_days=1)
    capture = EventCapture(moto_endpoint)
    put_events = FailingPutEvents(boto3.client("events", endpoint_url=moto_endpoint, region_name="us-east-1"), 0)
    events = EventBridgeEvents(cast(Any, put_events), capture.bus)
    sfn = boto3.client("stepfunctions", endpoint_url=moto_endpoint, region_name="us-east-1")
    machine = sfn.create_state_machine(
        name=f"loop-{uuid.uuid4().hex[:8]}",
        definition=WAITING_LOOP,
        roleArn="arn:aws:iam::123456789012:role/refund-poller-loop",
    )["stateMachineArn"]
    adapters, clock = ScriptedAdapters(), Clock()
    policies = {provider: Policy(interval_seconds=5, max_duration_seconds=60) for provider in PROVIDERS}
    service = InquiryService(store, adapters, events, policies, clock=clock)
    return Core(
        moto_endpoint,
        dynamodb,
        table,
        store,
        capture,
        events,
        put_events,
        sfn,
        StepFunctionsExecutions(sfn, machine),
        adapters,
        clock,
        service,
    )


@pytest.fixture
def core(moto_endpoint: str, dynamodb: DynamoDBClient) -> Iterator[Core]:
    yield make_core(moto_endpoint, dynamodb)


def eventually(check: Callable[[], Any], timeout: float = 5) -> Any:
    """The first truthy result of ``check`` within ``timeout`` (EventBridge delivers to the queue asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)
