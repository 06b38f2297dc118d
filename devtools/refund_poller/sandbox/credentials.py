"""The sandbox's keys and the merchant profiles that point at it.

Every start generates fresh RSA-2048 keys: one provider key pair and one merchant key pair per
provider, plus a forger key for deliberately bad signatures. The merchant profiles written to
disk hold the merchant private key and the provider public key in the providers' usual forms
(Base64 PKCS#8 DER, Base64 SubjectPublicKeyInfo DER), so they exercise the same parsing as real ones.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROVIDERS = ("antom", "alipayplus", "alphapay")


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    """One profile file the sandbox writes: its name, provider and the caller id it is known by."""

    name: str
    provider: str
    caller_id: str

    @property
    def id_field(self) -> str:
        return "merchantCode" if self.provider == "alphapay" else "clientId"


PROFILE_SPECS = (
    # SANDBOX_ client ids select Antom's sandbox path; the live one exercises the live path.
    ProfileSpec("antom", "antom", "SANDBOX_5YRP00000001"),
    ProfileSpec("antom-live", "antom", "5YRP00000001"),
    ProfileSpec("alipayplus", "alipayplus", "RP_WALLET_CLIENT_01"),
    ProfileSpec("alphapay", "alphapay", "RPM0001"),
)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Credentials:
    """All keys of one sandbox run. Never printed or logged: only written into profile files."""

    def __init__(self) -> None:
        self.provider_keys = {provider: _new_key() for provider in PROVIDERS}
        self.merchant_keys = {provider: _new_key() for provider in PROVIDERS}
        self.forger_key = _new_key()
        self._callers = {(spec.provider, spec.caller_id): spec.provider for spec in PROFILE_SPECS}

    def __repr__(self) -> str:  # keys stay out of reprs and tracebacks
        return f"Credentials(callers={sorted(self._callers)!r})"

    def merchant_public_key(self, provider: str, caller_id: str) -> rsa.RSAPublicKey | None:
        """The key a known caller signs with, or None for a caller the sandbox has never issued."""
        if (provider, caller_id) not in self._callers:
            return None
        return self.merchant_keys[provider].public_key()

    def write_profiles(self, directory: Path, base_url: str) -> dict[str, Path]:
        """Write one merchant profile per :data:`PROFILE_SPECS` entry; return name → path."""
        directory.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for spec in PROFILE_SPECS:
            path = directory / f"{spec.name}.json"
            _write_private(path, json.dumps(self.profile(spec, base_url), indent=2) + "\n")
            paths[spec.name] = path
        return paths

    def profile(self, spec: ProfileSpec, base_url: str) -> dict[str, Any]:
        """The profile document for ``spec`` (the providers' default paths apply)."""
        return {
            "provider": spec.provider,
            spec.id_field: spec.caller_id,
            "privateKey": _private_der_b64(self.merchant_keys[spec.provider]),
            "providerPublicKey": _public_der_b64(self.provider_keys[spec.provider].public_key()),
            "baseUrl": base_url,
        }


def _private_der_b64(key: rsa.RSAPrivateKey) -> str:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return base64.b64encode(der).decode("ascii")


def _public_der_b64(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only: it holds a private key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT
