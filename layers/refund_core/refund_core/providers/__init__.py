"""Provider adapters: signed inquiryRefund clients, one module per provider."""

from refund_core.providers.base import DEFAULT_TIMEOUT, Provider, QueryError, RefundQuery, SignedRequest
from refund_core.providers.registry import PROVIDERS, provider_for

__all__ = ["DEFAULT_TIMEOUT", "PROVIDERS", "Provider", "QueryError", "RefundQuery", "SignedRequest", "provider_for"]
