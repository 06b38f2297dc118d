"""Build the inquiry service from the function's environment (the template sets these variables)."""

from __future__ import annotations

import os

import boto3

from refund_core.aws.events import EventBridgeEvents
from refund_core.aws.profiles import SecretsManagerAdapters
from refund_core.domain.polling import EXPRESS_MAX_WINDOW_SECONDS, policies_from_json
from refund_core.service import InquiryService
from refund_core.store import DynamoDbRefundStore


def service_from_environment() -> InquiryService:
    """One service per container: clients, profile cache and HTTP pool are reused across invocations."""
    env = os.environ
    timeout = (float(env.get("PROVIDER_CONNECT_TIMEOUT", "3")), float(env.get("PROVIDER_READ_TIMEOUT", "10")))
    return InquiryService(
        store=DynamoDbRefundStore(boto3.client("dynamodb"), env["RESULTS_TABLE"], int(env.get("ITEM_TTL_DAYS", "90"))),
        adapters=SecretsManagerAdapters(env["PROFILE_SECRET_PREFIX"], timeout=timeout),
        events=EventBridgeEvents(boto3.client("events"), env.get("EVENT_BUS_NAME", "default")),
        policies=policies_from_json(env["POLLING_POLICY"]),
        max_window_seconds=EXPRESS_MAX_WINDOW_SECONDS if env.get("WORKFLOW_TYPE") == "EXPRESS" else None,
    )
