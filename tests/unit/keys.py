"""The fixed test key pair and vectors under tests/fixtures/vectors, in the forms profiles carry."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization

VECTORS = Path(__file__).resolve().parent.parent / "fixtures" / "vectors"
PKCS8_PEM = (VECTORS / "merchant_pkcs8.pem").read_text()
PKCS1_PEM = (VECTORS / "merchant_pkcs1.pem").read_text()
PUBLIC_PEM = (VECTORS / "merchant_public.pem").read_text()


def _der_b64(pem: str, private: bool) -> str:
    if private:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    else:
        public = serialization.load_pem_public_key(pem.encode())
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


PKCS8_B64 = _der_b64(PKCS8_PEM, private=True)
PUBLIC_B64 = _der_b64(PUBLIC_PEM, private=False)


def vector(name: str) -> tuple[bytes, str]:
    """(content bytes, expected Base64 signature) of one recorded vector."""
    return (VECTORS / f"{name}.txt").read_bytes(), (VECTORS / f"{name}.sig").read_text().strip()


def profile_data(provider: str = "antom", /, **overrides: object) -> dict[str, object]:
    """A valid profile mapping for ``provider`` using the fixed key pair (for both sides)."""
    data: dict[str, object] = {
        "provider": provider,
        "privateKey": PKCS8_B64,
        "providerPublicKey": PUBLIC_B64,
        "baseUrl": "https://open-sea-global.alipay.com",
    }
    if provider == "alphapay":
        data["merchantCode"] = "M123456"
    else:
        data["clientId"] = "SANDBOX_5X00000000000000"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}
