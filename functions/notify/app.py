"""Notify: receives a provider's signed refund-result push (``POST /notify/{provider}/{merchant}``, HTTP API).

Thin on purpose: the provider's module verifies and reads the notification, the service records it like a verified
answer; this handler maps outcomes to HTTP. The provider is acknowledged only once the item is durably written;
anything else gets an error status so the provider retries. Refusals are counted by reason and logged without the
body (it is the provider's data, and a forged one is an attacker's).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from refund_core.aws.wiring import InvocationDeadline, OutOfTimeError, provider_total_timeout, service_from_environment
from refund_core.providers import PROVIDERS, NotificationRejectedError, ReceivedNotification
from refund_core.providers.base import MAX_NOTIFICATION_BYTES
from refund_core.service import RejectedMessageError
from refund_core.telemetry import MetricValue, emit

logger = Logger()
metrics = Metrics()
_service = service_from_environment()
_provider_cap = provider_total_timeout()
# ConfirmNotifications: one inquiry per verified notification, whose answer is what is stored.
_confirm = os.environ.get("CONFIRM_NOTIFICATIONS", "false") == "true"
_MERCHANT = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_JSON = {"Content-Type": "application/json"}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parameters = event.get("pathParameters") or {}
    provider, merchant = str(parameters.get("provider", "")), str(parameters.get("merchant", ""))
    if provider not in PROVIDERS or not _MERCHANT.fullmatch(merchant):
        return _refuse("unknown-merchant", 404, "no such provider or merchant name", provider)
    logger.append_keys(provider=provider, merchant=merchant)
    try:
        body = _raw_body(event)
    except ValueError:
        return _refuse("malformed", 400, "body is not valid base64", provider)
    if len(body) > MAX_NOTIFICATION_BYTES:  # before anything else reads it
        return _refuse("oversize", 413, f"body is {len(body)} bytes", provider)
    headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
    signature = headers.pop("signature", None)
    notification = ReceivedNotification(
        path=str(event.get("rawPath", "")),
        headers=headers,
        body=body,
        signatures=() if signature is None else (signature,),  # two headers arrive comma-joined: refused as such
    )
    try:
        budget = InvocationDeadline(context, provider_cap_seconds=_provider_cap).provider_budget() if _confirm else None
        result = _service.notify(provider, merchant, notification, confirm=_confirm, budget_seconds=budget)
    except RejectedMessageError as exc:  # no profile for this merchant (or a broken one): say nothing more
        return _refuse("unknown-merchant", 404, str(exc), provider)
    except NotificationRejectedError as exc:
        return _refuse(exc.reason, exc.http_status, str(exc), provider)
    except OutOfTimeError:
        logger.warning("notification not confirmed: too little time left to ask the provider")
        return {"statusCode": 503, "headers": _JSON, "body": json.dumps({"message": "try again later"})}
    except Exception:
        # Not recorded (or not known to be): no acknowledgement, so the provider sends it again.
        logger.exception("notification not recorded")
        return {"statusCode": 503, "headers": _JSON, "body": json.dumps({"message": "try again later"})}
    observation = result.observation
    values = [MetricValue("NotificationsReceived", MetricUnit.Count, 1, (("provider", provider),))]
    if result.outcome == "unconfirmed":  # ConfirmNotifications: the inquiry gave no trusted final answer
        values.append(MetricValue("NotificationsUnconfirmed", MetricUnit.Count, 1, (("provider", provider),)))
    if result.final_conflict:
        values.append(MetricValue("FinalStatusConflicts", MetricUnit.Count, 1))
        values.append(MetricValue("NotificationConflicts", MetricUnit.Count, 1, (("provider", provider),)))
    emit(metrics, values)
    logger.info(
        "notification recorded",
        extra={
            "outcome": result.outcome,
            "key": result.key,
            "status": observation.status.value,
            "refundId": observation.refund_id,
            "refundRequestId": observation.refund_request_id,
            "eventPending": result.event_pending,
        },
    )
    return {"statusCode": 200, "headers": _JSON, "body": result.acknowledgement.decode()}


def _raw_body(event: dict[str, Any]) -> bytes:
    """The body's bytes as the provider sent them (API Gateway base64-encodes bodies it does not treat as text)."""
    text = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("body is not base64") from None
    return str(text).encode("utf-8")


def _refuse(reason: str, status: int, why: str, provider: str) -> dict[str, Any]:
    """A refused notification: counted by reason, logged with why (never the body), answered with no detail."""
    emit(metrics, [MetricValue("NotificationsRejected", MetricUnit.Count, 1, (("reason", reason),))])
    logger.warning("notification refused", extra={"reason": reason, "why": why, "providerName": provider or None})
    message = {404: "Not Found", 413: "Request Entity Too Large", 400: "Bad Request"}.get(status, "Unauthorized")
    return {"statusCode": status, "headers": _JSON, "body": json.dumps({"message": message})}
