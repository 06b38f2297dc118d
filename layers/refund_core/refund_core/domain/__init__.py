"""The domain: statuses, observations, merchant profiles, inquiry messages. Standard library only."""

from refund_core.domain.outcome import FINAL_STATUSES, Observation, ProviderResult, Status
from refund_core.domain.profile import MerchantProfile, ProfileError, parse_profile

__all__ = [
    "FINAL_STATUSES",
    "MerchantProfile",
    "Observation",
    "ProfileError",
    "ProviderResult",
    "Status",
    "parse_profile",
]
