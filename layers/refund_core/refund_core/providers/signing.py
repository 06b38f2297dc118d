"""SHA256withRSA (RSASSA-PKCS1-v1_5) signatures as the three providers use them.

All three sign a UTF-8 "content to be signed" string, Base64-encode the signature and then
URL-encode it inside a ``Signature: algorithm=..,keyVersion=..,signature=..`` header
(providers.md §1).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from refund_core.domain.profile import ProfileError

# NIST SP 800-131A Rev. 2 (table 2): RSA keys under 2048 bits are disallowed for digital signature
# generation, and legacy-use only for verification; a 512- or 1024-bit provider key can be factored, so a
# forged answer would verify.
MIN_RSA_KEY_BITS = 2048

__all__ = [
    "MIN_RSA_KEY_BITS",
    "format_signature_header",
    "load_private_key",
    "load_public_key",
    "parse_signature_header",
    "sign",
    "verify",
]


def load_private_key(text: str, field: str = "privateKey") -> rsa.RSAPrivateKey:
    """Load a merchant private key: Base64 DER or PEM, PKCS#8 or PKCS#1, of at least 2048 bits.

    OpenSSL's RSA consistency check (primality of p and q, CRT parameters) is skipped: it took 36 ms of every
    cold start (bench/README.md) and guards nothing here, as the key is the merchant's own, read from its own
    secret. A key that parses but is inconsistent signs wrongly, which the provider answers with
    INVALID_SIGNATURE: an ERROR outcome and the ProviderAuthErrors alarm, not a silent failure.

    Raises:
        ProfileError: naming ``field``; the key text is never included.
    """
    key: object
    try:
        if text.lstrip().startswith("-----BEGIN "):
            key = serialization.load_pem_private_key(text.encode(), password=None, unsafe_skip_rsa_key_validation=True)
        else:
            key = _load_der_private_key(_b64(text))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ProfileError(field, "is not a readable unencrypted RSA private key (PKCS#8 or PKCS#1)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProfileError(field, "must be an RSA key")
    _check_key_size(key.key_size, field)
    return key


def load_public_key(text: str, field: str = "providerPublicKey") -> rsa.RSAPublicKey:
    """Load a provider public key: Base64 SubjectPublicKeyInfo DER, or PEM, of at least 2048 bits.

    Raises:
        ProfileError: naming ``field``; the key text is never included.
    """
    try:
        if text.lstrip().startswith("-----BEGIN "):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(_b64(text))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ProfileError(field, "is not a readable RSA public key (X.509 SubjectPublicKeyInfo)") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProfileError(field, "must be an RSA key")
    _check_key_size(key.key_size, field)
    return key


def _check_key_size(bits: int, field: str) -> None:
    if bits < MIN_RSA_KEY_BITS:
        raise ProfileError(field, f"must be an RSA key of at least {MIN_RSA_KEY_BITS} bits (this one has {bits})")


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def _load_der_private_key(der: bytes) -> object:
    try:
        # PKCS#8, and PKCS#1 where supported
        return serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
    except ValueError:
        # Older cryptography releases only read PKCS#1 DER through PEM armour.
        pem = b"-----BEGIN RSA PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PRIVATE KEY-----\n"
        return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)


def sign(key: rsa.RSAPrivateKey, content: bytes) -> str:
    """Sign ``content`` and return the Base64 signature (not yet URL-encoded)."""
    return base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(key: rsa.RSAPublicKey, content: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` (already URL-decoded) is a valid signature of ``content``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def format_signature_header(algorithm: str, key_version: str, signature_b64: str) -> str:
    """The ``Signature`` header value as the official SDKs send it (no spaces)."""
    return f"algorithm={algorithm},keyVersion={key_version},signature={quote(signature_b64, safe='')}"


def parse_signature_header(value: str | None) -> dict[str, str]:
    """Parse a ``Signature`` header tolerantly into its ``key=value`` pairs.

    Spaces after commas are allowed, each pair splits on its first ``=`` only (Base64 may end in
    ``=``), and the signature is percent-decoded with either case of escapes; ``+`` stays ``+``.
    Pairs without ``=`` are ignored; an empty or missing header gives ``{}``.
    """
    pairs: dict[str, str] = {}
    for part in (value or "").split(","):
        name, sep, raw = part.strip().partition("=")
        if sep and name:
            pairs[name.strip()] = unquote(raw.strip()) if name.strip() == "signature" else raw.strip()
    return pairs
