"""StartInquiry: validates each queue message, makes the first inquiry, starts polling only when needed.

Records of a batch are handled concurrently. An invalid message goes straight to the DLQ with
its reason (never retried, never lost); only transient failures are reported as batch item
failures so SQS redelivers them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from refund_core.aws import StepFunctionsExecutions
from refund_core.aws.wiring import service_from_environment
from refund_core.service import RejectedMessageError, StartResult
from refund_core.telemetry import emit_poll_metrics, log_keys
from refund_core.validation import parse_message

logger = Logger()
metrics = Metrics()
_sqs = boto3.client("sqs")
_executions = StepFunctionsExecutions(boto3.client("stepfunctions"), os.environ["STATE_MACHINE_ARN"])
_service = service_from_environment()
_processor = AsyncBatchProcessor(event_type=EventType.SQS)


def handle_record(record: SQSRecord) -> str:
    """One message: a rejection goes to the DLQ and counts as handled; anything raised is retried."""
    try:
        message = parse_message(record.body)
        result = _service.start(message, message_id=record.message_id, executions=_executions)
    except RejectedMessageError as exc:
        reject(record, str(exc))
        return "rejected"
    with logger.append_context_keys(**log_keys(result.poll.state["inquiry"] if result.poll else {})):
        _report(result)
    return result.action


def reject(record: SQSRecord, reason: str) -> None:
    logger.warning("message rejected", extra={"messageId": record.message_id, "reason": reason})
    metrics.add_metric(name="RejectedMessages", unit="Count", value=1)
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
    if result.poll:
        emit_poll_metrics(metrics, result.poll)
    logger.info(
        "message handled",
        extra={"action": result.action, "why": result.reason, "executionArn": result.execution_arn},
    )


async def _handle_async(record: SQSRecord) -> str:
    return await asyncio.to_thread(handle_record, record)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return async_process_partial_response(
        event=event, record_handler=_handle_async, processor=_processor, context=context
    )
