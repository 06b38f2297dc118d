"""The fixed test key pair and vectors under tests/fixtures/vectors, in the forms profiles carry."""

from __future__ import annotations

import base64
import functools
import math
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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


@functools.cache
def weak_key_pair(bits: int) -> tuple[str, str]:
    """(Base64 PKCS#8 private key, Base64 SubjectPublicKeyInfo) of an RSA key of ``bits`` bits, made once per run.

    cryptography refuses to generate keys under 1024 bits, so the primes are drawn here (Miller-Rabin); such keys
    still load, which is what profiles must be protected from.
    """
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits - bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and math.gcd(e, phi) == 1 and (p * q).bit_length() == bits:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, p * q)
    )
    key = numbers.private_key(unsafe_skip_rsa_key_validation=True)
    private = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1  # top two bits: n has all bits
        if _probably_prime(candidate):
            return candidate


def _probably_prime(n: int, rounds: int = 32) -> bool:
    if any(n % small == 0 for small in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True
