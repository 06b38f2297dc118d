"""Inquire: one signed inquiryRefund call per poll; records the observation and returns the decision.

The provider call gets a total budget from the invocation's remaining time, so a provider that hangs gives an
unanswered poll (recorded, the loop goes on) rather than a Lambda timeout. A warm container serves many
refunds one after another: ``clear_state`` drops the previous refund's log keys before each invocation.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from refund_core.aws.wiring import InvocationDeadline, provider_total_timeout, service_from_environment
from refund_core.telemetry import emit, log_keys, log_poll, poll_metrics

logger = Logger()
metrics = Metrics()
_service = service_from_environment()
_provider_cap = provider_total_timeout()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(**log_keys(event["inquiry"]))
    deadline = InvocationDeadline(context, provider_cap_seconds=_provider_cap)
    # Too little time left raises OutOfTimeError: the state machine retries the task (States.TaskFailed).
    poll = _service.poll(event, budget_seconds=deadline.provider_budget())
    emit(metrics, poll_metrics(poll))
    log_poll(logger, poll)
    return poll.state
