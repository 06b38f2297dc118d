"""`make soak`: load for RELIABILITY_SOAK_SECONDS (600 by default there) under 30 % provider chaos, with Inquire
crashes and throttled DynamoDB writes besides; nothing may be lost. Not collected by `make test` (its file name
does not start with test_); `make soak` runs it by path."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.reliability.load import Faults, run_load
from tests.reliability.support import key_needles, leaks, stack_texts

SECONDS = int(os.environ.get("RELIABILITY_SOAK_SECONDS", "600"))
PER_SECOND = 2  # refunds sent a second: the soak sends SECONDS * PER_SECOND refunds, for at least SECONDS
REPORT = Path(__file__).resolve().parents[2] / "build" / "soak" / "report.json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("soak"), parameter_overrides=FAST_POLICY) as running:
        yield running


def test_soak_loses_nothing(stack: DevStack) -> None:
    faults = Faults(chaos_rate=0.3, inquire_failure_rate=0.05, update_item_throttle=0.1, seed=11)
    report = run_load(stack, tag="soak", refunds=SECONDS * PER_SECOND, per_second=PER_SECOND, window=60, faults=faults)
    texts = stack_texts(stack, {"events": report.events})
    leaked = leaks(texts, key_needles(stack.state_dir / "profiles"))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps({**json.loads(report.summary()), "problems": report.problems(), "leaks": leaked}, indent=1)
    )
    print("soak:", report.summary())
    assert report.problems() == {}
    assert leaked == {}
    assert report.chaos_injected > 0
