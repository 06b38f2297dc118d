"""Provider adapters: signed inquiryRefund clients and notification readers, one module per provider."""

from refund_core.providers.base import (
    DEFAULT_TIMEOUT,
    NotificationRejectedError,
    Provider,
    QueryError,
    ReceivedNotification,
    RefundQuery,
    SignedRequest,
)
from refund_core.providers.registry import PROVIDERS, provider_for

__all__ = [
    "DEFAULT_TIMEOUT",
    "PROVIDERS",
    "NotificationRejectedError",
    "Provider",
    "QueryError",
    "ReceivedNotification",
    "RefundQuery",
    "SignedRequest",
    "provider_for",
]
