"""Lambda's SQS event source mapping, done by us: moto's own runs inside SendMessage, one message per invoke,
and ignores ``batchItemFailures`` (see docs/local-emulation.md)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from refund_poller.local.errors import DeploymentError

LOGGER = logging.getLogger(__name__)
RECEIVE_WAIT_SECONDS = 1  # long polling: short enough for stop() to return promptly
FIRST_ATTRIBUTES = ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp")


@dataclass(frozen=True)
class SqsEventSource:
    """One ``Type: SQS`` event of a function, with SAM's defaults applied."""

    function_logical_id: str
    event_name: str
    function_name: str
    function_timeout: int
    queue_arn: str
    queue_url: str
    batch_size: int = 10
    batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    enabled: bool = True
    maximum_concurrency: int | None = None
    """ScalingConfig.MaximumConcurrency: the most concurrent batches Lambda runs for this mapping."""


def sqs_event_source(
    sqs: Any, function_logical_id: str, function_name: str, function_timeout: int, event_name: str, properties: Any
) -> SqsEventSource:
    """The event source of a SAM ``Type: SQS`` event, refused where CreateEventSourceMapping would refuse it."""
    queue_arn = str(properties["Queue"])
    queue_url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
    source = SqsEventSource(
        function_logical_id=function_logical_id,
        event_name=event_name,
        function_name=function_name,
        function_timeout=function_timeout,
        queue_arn=queue_arn,
        queue_url=queue_url,
        batch_size=int(properties.get("BatchSize", 10)),
        batching_window_seconds=int(properties.get("MaximumBatchingWindowInSeconds", 0)),
        report_batch_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
        enabled=str(properties.get("Enabled", True)).lower() == "true",
        maximum_concurrency=_maximum_concurrency(properties.get("ScalingConfig")),
    )
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    _validate(source, int(attributes["VisibilityTimeout"]))
    return source


def _maximum_concurrency(scaling: Any) -> int | None:
    if not scaling or scaling.get("MaximumConcurrency") is None:
        return None
    return int(scaling["MaximumConcurrency"])


def _validate(source: SqsEventSource, visibility_timeout: int) -> None:
    where = f"{source.function_logical_id}.Events.{source.event_name}"
    fifo = source.queue_arn.endswith(".fifo")
    if not 1 <= source.batch_size <= (10 if fifo else 10000):
        raise DeploymentError(f"{where}: BatchSize {source.batch_size} is out of range for this queue")
    if source.batch_size > 10 and source.batching_window_seconds < 1:
        raise DeploymentError(f"{where}: a BatchSize above 10 needs MaximumBatchingWindowInSeconds of at least 1")
    if source.maximum_concurrency is not None and not 2 <= source.maximum_concurrency <= 1000:
        raise DeploymentError(
            f"{where}: ScalingConfig.MaximumConcurrency {source.maximum_concurrency} is out of range: "
            "it must be from 2 to 1000"
        )
    if visibility_timeout < source.function_timeout:
        raise DeploymentError(
            f"{where}: Queue visibility timeout: {visibility_timeout} seconds is less than Function timeout: "
            f"{source.function_timeout} seconds"
        )


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the event, with the keys and order of Lambda's (``sam local generate-event sqs``)."""
    attributes = message.get("Attributes", {})
    ordered = {name: attributes[name] for name in FIRST_ATTRIBUTES if name in attributes}
    ordered.update((name, value) for name, value in attributes.items() if name not in ordered)
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": ordered,
        "messageAttributes": {
            name: _message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {}
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shaped["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    shaped["stringListValues"] = value.get("StringListValues", [])
    shaped["binaryListValues"] = [base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])]
    shaped["dataType"] = value["DataType"]
    return shaped


def failed_message_ids(
    response: dict[str, Any], payload: str, message_ids: list[str], report_batch_item_failures: bool
) -> set[str]:
    """The messages to leave on the queue, by Lambda's rules for batch item failures."""
    everything = set(message_ids)
    if response.get("FunctionError"):
        return everything
    if not report_batch_item_failures:
        return set()
    try:
        answer = json.loads(payload) if payload.strip() else None
    except ValueError:
        return everything  # an invalid JSON response fails the whole batch
    failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
    if not failures:
        return set()  # null or empty: the whole batch succeeded
    identifiers = [item.get("itemIdentifier") if isinstance(item, dict) else None for item in failures]
    if any(not isinstance(identifier, str) or identifier not in everything for identifier in identifiers):
        return everything  # a missing, empty or unknown identifier fails the whole batch
    return {str(identifier) for identifier in identifiers}


class SqsPoller:
    """Receives batches from one queue, invokes the function with each, deletes the records that succeeded.

    Failed records stay in flight until the queue's visibility timeout; the queue's redrive policy moves
    them to the dead-letter queue after ``maxReceiveCount`` receives (moto does that part).
    """

    def __init__(self, source: SqsEventSource, sqs: Any, lambda_client: Any, region: str, concurrency: int = 1) -> None:
        self.source = source
        self._sqs = sqs
        self._lambda = lambda_client
        self._region = region
        self._stopping = threading.Event()
        # Each thread receives a batch and invokes with it: ``concurrency`` batches in flight at most.
        self._threads = [
            threading.Thread(target=self._run, name=f"sqs-{source.function_name}-{number}", daemon=True)
            for number in range(max(1, concurrency))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def request_stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float = 2.0) -> None:
        """Wait for the poller to finish its current receive (an invocation in flight may outlast this)."""
        deadline = time.monotonic() + timeout  # for all of its threads together: they stop side by side
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = self._receive_batch()
                if batch and not self._stopping.is_set():
                    self._deliver(batch)
            except self._lambda.exceptions.TooManyRequestsException:
                # Throttled: the batch goes back to the queue when its visibility timeout ends, as on AWS.
                self._stopping.wait(1.0)
            except Exception:  # keep polling, as the real mapping does; the reason goes to the log
                if not self._stopping.is_set():
                    LOGGER.exception("SQS event source of %s failed; retrying", self.source.function_name)
                    self._stopping.wait(1.0)

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages, gathering for at most MaximumBatchingWindowInSeconds after the first."""
        batch: list[dict[str, Any]] = []
        window_ends: float | None = None
        while len(batch) < self.source.batch_size and not self._stopping.is_set():
            response = self._sqs.receive_message(
                QueueUrl=self.source.queue_url,
                MaxNumberOfMessages=min(10, self.source.batch_size - len(batch)),
                WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            batch.extend(response.get("Messages", []))
            if batch and window_ends is None:
                window_ends = time.monotonic() + self.source.batching_window_seconds
            if window_ends is not None and time.monotonic() >= window_ends:
                break
        return batch

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        event = {"Records": [lambda_record(message, self.source.queue_arn, self._region) for message in batch]}
        response = self._lambda.invoke(FunctionName=self.source.function_name, Payload=json.dumps(event).encode())
        payload = response["Payload"].read().decode("utf-8")
        failed = failed_message_ids(
            response, payload, [message["MessageId"] for message in batch], self.source.report_batch_item_failures
        )
        done = [message for message in batch if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self.source.queue_url, Entries=entries)
