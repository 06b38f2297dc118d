"""Provider name → adapter class. Adding a provider is one module and one line here."""

from __future__ import annotations

from typing import Any

from refund_core.domain.profile import MerchantProfile
from refund_core.providers.alipayplus import AlipayPlusWallet
from refund_core.providers.alphapay import AlphaPay
from refund_core.providers.antom import Antom
from refund_core.providers.base import Provider

PROVIDERS: dict[str, type[Provider]] = {
    Antom.name: Antom,
    AlipayPlusWallet.name: AlipayPlusWallet,
    AlphaPay.name: AlphaPay,
}


def provider_for(profile: MerchantProfile, **options: Any) -> Provider:
    """The adapter for ``profile``'s provider, with its keys loaded (raises ProfileError on bad keys)."""
    return PROVIDERS[profile.provider](profile, **options)
