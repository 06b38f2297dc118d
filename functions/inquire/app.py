"""Inquire: one signed inquiryRefund call per poll; records the observation and returns the decision."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from refund_core.aws.wiring import service_from_environment
from refund_core.telemetry import emit_poll_metrics, log_keys, log_poll

logger = Logger()
metrics = Metrics()
_service = service_from_environment()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(**log_keys(event["inquiry"]))
    poll = _service.poll(event)
    emit_poll_metrics(metrics, poll)
    log_poll(logger, poll)
    return poll.state
