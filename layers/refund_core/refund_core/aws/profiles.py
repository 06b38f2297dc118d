"""Merchant profiles from Secrets Manager, cached per container (Powertools parameters).

Secret name: ``<prefix><provider>/<merchant>``, e.g. ``refund-poller/merchants/antom/default``.
The adapter (with its parsed keys: loading a key costs tens of milliseconds) is cached until the
secret's text changes, so a rotated key is picked up within the cache age.

Plain ``http://`` base URLs are refused unless the function's environment sets
``REFUND_POLLER_ALLOW_PLAIN_HTTP=loopback``: only the local stack does (devtools/refund_poller/devstack.py),
template.yaml never does (tests/integration/test_profile_hygiene.py). In Lambda, 127.0.0.1:9001 is the
Runtime API: a profile must not be able to point a deployed function at it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError

from refund_core.domain.profile import ProfileError, parse_profile
from refund_core.providers import Provider, provider_for
from refund_core.service import RejectedMessageError

PROFILE_CACHE_SECONDS = 300
PLAIN_HTTP_SETTING = "REFUND_POLLER_ALLOW_PLAIN_HTTP"
PLAIN_HTTP_LOOPBACK = "loopback"


def plain_http_allowed(environ: Mapping[str, str]) -> bool:
    """Whether the environment allows plain http:// to loopback hosts: unset or empty no, ``loopback`` yes.

    Raises:
        ValueError: for any other value, so a typo fails the cold start instead of meaning something.
    """
    value = environ.get(PLAIN_HTTP_SETTING, "")
    if value not in ("", PLAIN_HTTP_LOOPBACK):
        raise ValueError(f"{PLAIN_HTTP_SETTING} must be unset or '{PLAIN_HTTP_LOOPBACK}', not {value!r}")
    return value == PLAIN_HTTP_LOOPBACK


def secret_name(prefix: str, provider: str, merchant: str) -> str:
    return f"{prefix}{provider}/{merchant}"


class SecretsManagerAdapters:
    def __init__(self, prefix: str, *, allow_plain_http: bool | None = None, **adapter_options: Any) -> None:
        """``allow_plain_http`` None: as the environment says (:func:`plain_http_allowed`)."""
        self._prefix = prefix
        self._allow_plain_http = plain_http_allowed(os.environ) if allow_plain_http is None else allow_plain_http
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
            profile = parse_profile(text, allow_plain_http=self._allow_plain_http)
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
