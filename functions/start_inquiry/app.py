"""StartInquiry: validates each queue message, makes the first inquiry, starts polling only when needed.

Records of a batch are handled concurrently, each on a thread of the batch's own pool (one thread per record),
within one deadline taken from the invocation's remaining time: a record's provider call gets a total budget
that leaves time to record the answer and return. An invalid message goes straight to the DLQ with its reason
(never retried, never lost); only transient failures, and records there was no time left to finish, are
reported as batch item failures so SQS redelivers them.

Powertools' Logger keys and Metrics set are shared by every thread: each record's log keys are set with the
thread-safe key API in the record's own context, and its metric values are written by the handler thread once
the batch is done.

A scheduled event (``"source": "aws.events"``, the template's OutboxSweep) is not a batch: it sweeps the outbox,
publishing result events left pending longer than the grace (docs/internals.md, "Result events (outbox)").
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from refund_core.aws import StepFunctionsExecutions
from refund_core.aws.wiring import (
    InvocationDeadline,
    LazyClient,
    OutOfTimeError,
    provider_total_timeout,
    service_from_environment,
)
from refund_core.service import RejectedMessageError, StartResult
from refund_core.telemetry import MetricValue, emit, log_keys, poll_metrics
from refund_core.validation import parse_message

logger = Logger()
metrics = Metrics()
_sqs = LazyClient("sqs")  # only a rejected message uses it
_executions = StepFunctionsExecutions(boto3.client("stepfunctions"), os.environ["STATE_MACHINE_ARN"])
_service = service_from_environment()
_provider_cap = provider_total_timeout()
_processor = AsyncBatchProcessor(event_type=EventType.SQS)
REJECTED = MetricValue("RejectedMessages", MetricUnit.Count, 1)
# Items one sweep reads per index page, and at most per run (a sweep every 5 minutes; the run also stops when the
# invocation's time is up): a backlog of 2,000 clears in one run, and items EventBridge keeps refusing are passed over.
SWEEP_PAGE = 100
SWEEP_MAX_ITEMS = 2000


class Batch:
    """One invocation's records: a thread per record, one deadline, the metric values they produced."""

    def __init__(self, size: int, deadline: InvocationDeadline) -> None:
        self.deadline = deadline
        self._pool = ThreadPoolExecutor(max_workers=max(size, 1), thread_name_prefix="record")
        self._lock = threading.Lock()
        self._metric_values: list[MetricValue] = []
        self._log_keys: dict[str, dict[str, str]] = {}

    async def handle(self, record: SQSRecord) -> str:
        """The record's outcome; OutOfTimeError (a batch item failure) when it cannot finish in time."""
        loop = asyncio.get_running_loop()
        # A copy of the context per record: the thread-safe log keys it sets stay with this record.
        work = loop.run_in_executor(self._pool, contextvars.copy_context().run, self._run, record)
        try:
            return await asyncio.wait_for(work, timeout=max(self.deadline.seconds_for_work(), 0.0))
        except TimeoutError:
            # The record's thread is still busy (an AWS call that hangs): answer for it now, SQS redelivers it.
            keys = self._log_keys.get(record.message_id, {"messageId": record.message_id})
            logger.warning("record out of time: left for redelivery", extra=keys)
            raise OutOfTimeError(
                f"message {record.message_id}: not finished before the invocation's deadline"
            ) from None

    def metric_values(self) -> list[MetricValue]:
        with self._lock:
            values, self._metric_values = self._metric_values, []
        return values

    def close(self) -> None:
        # Never wait for a thread that overran: the invocation must return before Lambda's timeout.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, record: SQSRecord) -> str:
        logger.thread_safe_clear_keys()
        logger.thread_safe_append_keys(messageId=record.message_id)
        try:
            action, values = handle_record(record, self.deadline, self._log_ids)
        except OutOfTimeError as exc:
            logger.warning("record not started: left for redelivery", extra={"why": str(exc)})
            raise
        finally:
            logger.thread_safe_clear_keys()
        with self._lock:
            self._metric_values.extend(values)
        return action

    def _log_ids(self, record: SQSRecord, ids: dict[str, str]) -> None:
        """From here on, every line the record logs carries its refund ids (and so does its time-out warning)."""
        logger.thread_safe_append_keys(**ids)
        with self._lock:
            self._log_keys[record.message_id] = {"messageId": record.message_id, **ids}


def handle_record(
    record: SQSRecord, deadline: InvocationDeadline, log_ids: Callable[[SQSRecord, dict[str, str]], None]
) -> tuple[str, list[MetricValue]]:
    """One message: a rejection goes to the DLQ and counts as handled; anything raised is retried."""
    try:
        message = parse_message(record.body)
        log_ids(record, log_keys(message.as_state(message.key)))
        result = _service.start(
            message,
            message_id=record.message_id,
            executions=_executions,
            budget_seconds=deadline.provider_budget(),
        )
    except RejectedMessageError as exc:
        reject(record, str(exc))
        return "rejected", [REJECTED]
    _report(result)
    return result.action, poll_metrics(result.poll) if result.poll else []


def reject(record: SQSRecord, reason: str) -> None:
    logger.warning("message rejected", extra={"messageId": record.message_id, "reason": reason})
    _sqs.send_message(
        QueueUrl=os.environ["DLQ_URL"],
        MessageBody=record.body,
        MessageAttributes={
            "rejectionReason": {"DataType": "String", "StringValue": reason},
            "rejectedBy": {"DataType": "String", "StringValue": "StartInquiry"},
            "sourceMessageId": {"DataType": "String", "StringValue": record.message_id},
        },
    )


def _report(result: StartResult) -> None:
    logger.info(
        "message handled",
        extra={"action": result.action, "why": result.reason, "executionArn": result.execution_arn},
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, int]:
    if "Records" not in event and event.get("source") == "aws.events":
        return sweep(InvocationDeadline(context).seconds_for_work())
    deadline = InvocationDeadline(context, provider_cap_seconds=_provider_cap)
    batch = Batch(len(event.get("Records") or ()), deadline)
    try:
        return async_process_partial_response(
            event=event, record_handler=batch.handle, processor=_processor, context=context
        )
    finally:
        batch.close()
        emit(metrics, batch.metric_values())


def sweep(seconds: float) -> dict[str, int]:
    result = _service.sweep_outbox(page=SWEEP_PAGE, max_items=SWEEP_MAX_ITEMS, seconds=seconds)
    logger.info("outbox swept", extra={"items": result.items, "published": result.published, "failed": result.failed})
    # OutboxEventsStuck > 0 on two sweeps in a row means EventBridge keeps refusing events (OutboxStuckAlarm).
    metrics.add_metric(name="OutboxEventsPublished", unit=MetricUnit.Count, value=result.published)
    metrics.add_metric(name="OutboxEventsStuck", unit=MetricUnit.Count, value=result.failed)
    return {"items": result.items, "published": result.published, "failed": result.failed}
