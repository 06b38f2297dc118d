"""Fixtures shared by every test layer: the provider sandbox on loopback, and adapters pointed at it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from refund_core.domain import parse_profile
from refund_core.providers import Provider, provider_for
from refund_poller.sandbox import Sandbox

PROVIDER_NAMES = ("antom", "alipayplus", "alphapay")
# Short enough that a test never waits long on a broken answer, long enough for a loaded CI machine.
TEST_TIMEOUT = (1.0, 2.0)

AdapterFactory = Callable[..., Provider]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for the whole run, on a free loopback port; tests keep apart by using fresh refund ids."""
    with Sandbox(port=0, profiles_dir=tmp_path_factory.mktemp("sandbox-profiles")) as running:
        yield running


@pytest.fixture(scope="session")
def sandbox_profiles_dir(sandbox: Sandbox) -> Path:
    """The directory holding the sandbox's merchant profiles (antom.json, antom-live.json, …)."""
    return sandbox.profiles_dir


@pytest.fixture
def make_adapter(sandbox: Sandbox) -> AdapterFactory:
    """Build an adapter from one of the sandbox's profiles, with profile fields overridden as needed."""

    def make(profile_name: str, *, timeout: tuple[float, float] = TEST_TIMEOUT, **overrides: Any) -> Provider:
        data = json.loads(sandbox.profiles[profile_name].read_text()) | overrides
        return provider_for(parse_profile(data, allow_plain_http=True), timeout=timeout)

    return make


@pytest.fixture(params=PROVIDER_NAMES)
def provider_name(request: pytest.FixtureRequest) -> str:
    """Each provider in turn: a test using it (or ``adapter``) runs once per provider."""
    return str(request.param)


@pytest.fixture
def adapter(make_adapter: AdapterFactory, provider_name: str) -> Provider:
    """The adapter for ``provider_name``, talking to the sandbox."""
    return make_adapter(provider_name)


@pytest.fixture
def new_refund_id() -> Callable[[str], str]:
    """A fresh refund id carrying ``script`` (``processing2-success`` → ``processing2-success--1a2b…``)."""

    def make(script: str) -> str:
        return f"{script}--{uuid.uuid4().hex[:12]}"

    return make
