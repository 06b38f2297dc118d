"""Metrics and log keys for one poll, shared by both handlers (Powertools Metrics, EMF).

A poll's metrics are first computed as plain values (:func:`poll_metrics`) and only then written
(:func:`emit`): Powertools' ``Metrics.add_metric`` is not thread-safe, so StartInquiry's record
threads collect values and the handler thread writes them once the batch is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

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
# The distrust tag of an S answer whose signature did not verify, for adapters that do not tag it themselves.
UNVERIFIED_SUCCESS = "unverified"


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One value of one metric. Metrics with dimensions are written on their own (one EMF line each); the others
    join the function's metric set, whose only dimension is the service (so the template's alarms see them)."""

    name: str
    unit: MetricUnit
    value: float
    dimensions: tuple[tuple[str, str], ...] = ()


def log_keys(inquiry: Mapping[str, object]) -> dict[str, str]:
    """Refund ids and correlation id as structured log keys (support staff search by them)."""
    names = ("provider", "merchant", "refundId", "refundRequestId", "correlationId")
    return {name: str(inquiry[name]) for name in names if inquiry.get(name)}


def poll_metrics(poll: PollResult) -> list[MetricValue]:
    """Polls, outcome by provider and status, provider latency, untrusted answers by reason, auth errors,
    final-status conflicts."""
    observation = poll.observation
    if not poll.provider_called:  # the loop ended on the stored item (closed by a notification): no poll to count
        return []
    values = [
        MetricValue("Polls", MetricUnit.Count, 1),
        MetricValue(
            "Observations",
            MetricUnit.Count,
            1,
            (("provider", observation.provider), ("status", observation.status.value)),
        ),
    ]
    if observation.latency_ms is not None:
        values.append(MetricValue("ProviderLatency", MetricUnit.Milliseconds, observation.latency_ms))
    distrust = observation.distrust
    if distrust is None and observation.result.status == "S" and not observation.verified:
        distrust = UNVERIFIED_SUCCESS  # an adapter that forgot to tag an untrusted answer still counts
    if distrust:
        values.append(MetricValue("UntrustedAnswers", MetricUnit.Count, 1, (("reason", distrust),)))
    if observation.result.status == "F" and observation.result.code in AUTH_ERROR_CODES:
        values.append(MetricValue("ProviderAuthErrors", MetricUnit.Count, 1))
    if poll.final_status_conflicts:  # the provider contradicted a stored final status: both answers are on the item
        values.append(MetricValue("FinalStatusConflicts", MetricUnit.Count, poll.final_status_conflicts))
    if poll.tail_gave_up:  # the long tail reached its maximum age without a final status: a person must look
        values.append(MetricValue("TailGaveUp", MetricUnit.Count, poll.tail_gave_up))
    return values


def emit(metrics: Metrics, values: Iterable[MetricValue]) -> None:
    """Write metric values; call from one thread only (the handler's)."""
    for value in values:
        if not value.dimensions:
            metrics.add_metric(name=value.name, unit=value.unit, value=value.value)
            continue
        with single_metric(name=value.name, unit=value.unit, value=value.value, namespace=metrics.namespace) as metric:
            for name, dimension in value.dimensions:
                metric.add_dimension(name=name, value=dimension)


def log_poll(logger: Logger, poll: PollResult) -> None:
    observation = poll.observation
    logger.info(
        "poll",
        extra={
            "status": observation.status.value,
            "verified": observation.verified,
            "resultCode": observation.result.code,
            "reason": observation.reason,
            "distrust": observation.distrust,
            "latencyMs": observation.latency_ms,
            "decision": poll.decision.to_state(),
            "polls": poll.state["polls"],
        },
    )
