"""Metrics and log keys for one poll, shared by both handlers (Powertools Metrics, EMF)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from refund_core.domain.outcome import Status
from refund_core.service import PollResult

# Codes that mean our credentials or configuration are wrong (an operator must act).
AUTH_ERROR_CODES = frozenset(
    {
        "INVALID_SIGNATURE",
        "KEY_NOT_FOUND",
        "CLIENT_INVALID",
        "INVALID_CLIENT",
        "INVALID_CLIENT_STATUS",
        "ACCESS_DENIED",
        "EXPIRED_AGENT_TOKEN",
        "INVALID_AGENT_TOKEN",
    }
)


def log_keys(inquiry: dict[str, str]) -> dict[str, str]:
    """Refund ids and correlation id as structured log keys (support staff search by them)."""
    names = ("provider", "merchant", "refundId", "refundRequestId", "correlationId")
    return {name: inquiry[name] for name in names if inquiry.get(name)}


def emit_poll_metrics(metrics: Metrics, poll: PollResult) -> None:
    """Polls, outcome by provider and status, provider latency, untrusted answers, auth errors."""
    observation = poll.observation
    provider = observation.provider
    metrics.add_metric(name="Polls", unit=MetricUnit.Count, value=1)
    if observation.latency_ms is not None:
        metrics.add_metric(name="ProviderLatency", unit=MetricUnit.Milliseconds, value=observation.latency_ms)
    if observation.status is Status.UNKNOWN and observation.result.status == "S" and not observation.verified:
        metrics.add_metric(name="UntrustedAnswers", unit=MetricUnit.Count, value=1)
    if observation.result.status == "F" and observation.result.code in AUTH_ERROR_CODES:
        metrics.add_metric(name="ProviderAuthErrors", unit=MetricUnit.Count, value=1)
    with single_metric(name="Observations", unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="provider", value=provider)
        metric.add_dimension(name="status", value=observation.status.value)


def log_poll(logger: Logger, poll: PollResult) -> None:
    observation = poll.observation
    logger.info(
        "poll",
        extra={
            "status": observation.status.value,
            "verified": observation.verified,
            "resultCode": observation.result.code,
            "reason": observation.reason,
            "latencyMs": observation.latency_ms,
            "decision": poll.decision.to_state(),
            "polls": poll.state["polls"],
        },
    )
