"""Merchant profiles from Secrets Manager, cached per container (Powertools parameters).

Secret name: ``<prefix><provider>/<merchant>``, e.g. ``refund-poller/merchants/antom/default``.
The adapter (with its parsed keys: loading a key costs tens of milliseconds) is cached until the
secret's text changes, so a rotated key is picked up within the cache age.
"""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError

from refund_core.domain.profile import ProfileError, parse_profile
from refund_core.providers import Provider, provider_for
from refund_core.service import RejectedMessageError

PROFILE_CACHE_SECONDS = 300


def secret_name(prefix: str, provider: str, merchant: str) -> str:
    return f"{prefix}{provider}/{merchant}"


class SecretsManagerAdapters:
    def __init__(self, prefix: str, **adapter_options: Any) -> None:
        self._prefix = prefix
        self._options = adapter_options
        self._adapters: dict[str, tuple[str, Provider]] = {}
        self._provider: parameters.SecretsProvider | None = None

    def adapter(self, provider: str, merchant: str) -> Provider:
        name = secret_name(self._prefix, provider, merchant)
        text = self._secret(name)
        digest = hashlib.sha256(text.encode()).hexdigest()
        cached = self._adapters.get(name)
        if cached and cached[0] == digest:
            return cached[1]
        try:
            profile = parse_profile(text)
        except ProfileError as exc:
            raise RejectedMessageError(f"merchant profile {name} is invalid: {exc}") from None
        if profile.provider != provider:
            raise RejectedMessageError(
                f"merchant profile {name} is for provider '{profile.provider}', not '{provider}'"
            )
        try:
            adapter = provider_for(profile, **self._options)
        except ProfileError as exc:
            raise RejectedMessageError(f"merchant profile {name} is invalid: {exc}") from None
        self._adapters[name] = (digest, adapter)
        return adapter

    def _secret(self, name: str) -> str:
        try:
            value = self._secrets().get(name, max_age=PROFILE_CACHE_SECONDS)
        except parameters.exceptions.GetParameterError as exc:
            cause = exc.__cause__ or exc.__context__  # Powertools re-raises without "from"
            if isinstance(cause, ClientError) and cause.response["Error"]["Code"] == "ResourceNotFoundException":
                raise RejectedMessageError(f"merchant: no merchant profile secret named {name}") from None
            raise
        if isinstance(value, bytes):
            value = value.decode()
        if not isinstance(value, str):  # get() without a transform gives the secret's text (or its bytes)
            raise RejectedMessageError(f"merchant profile {name} is not a text secret")
        return value

    def _secrets(self) -> parameters.SecretsProvider:
        """Powertools' provider on a client of boto3's default session, made at first use.

        ``parameters.get_secret`` would build its client on a new ``boto3.Session``, whose loader reads the
        endpoint and partition data again that the function's other clients already loaded (bench/README.md).
        """
        if self._provider is None:
            self._provider = parameters.SecretsProvider(boto3_client=boto3.client("secretsmanager"))
        return self._provider
