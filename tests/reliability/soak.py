"""`make soak`: load for RELIABILITY_SOAK_SECONDS (600 by default there) under 30 % provider chaos, with Inquire
crashes, throttled DynamoDB writes, refused PutEvents entries and workers killed at PutEvents besides; random ids
and merchants, a third of the Antom/Alipay+ refunds in mixed id forms; nothing may be lost, split, stranded or
doubled. RELIABILITY_SOAK_WORKFLOW=EXPRESS soaks an EXPRESS stack. Not collected by `make test` (its file name
does not start with test_); `make soak` runs it by path."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.reliability.load import Faults, Mix, run_load
from tests.reliability.support import key_needles, leaks, stack_texts

SECONDS = int(os.environ.get("RELIABILITY_SOAK_SECONDS", "600"))
WORKFLOW = os.environ.get("RELIABILITY_SOAK_WORKFLOW", "STANDARD")
PER_SECOND = 2  # refunds sent a second: the soak sends SECONDS * PER_SECOND refunds, for at least SECONDS
REPORT = Path(__file__).resolve().parents[2] / "build" / "soak" / "report.json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    overrides = {**FAST_POLICY, "WorkflowType": WORKFLOW}
    with DevStack(tmp_path_factory.mktemp("soak"), parameter_overrides=overrides) as running:
        yield running


def test_soak_loses_nothing(stack: DevStack) -> None:
    faults = Faults(
        chaos_rate=0.3,
        inquire_failure_rate=0.05,
        update_item_throttle=0.1,
        put_events_failure_rate=0.05,
        kill_at_publish_rate=0.05,
        seed=11,
    )
    # A starter's failed publish (a refund final at its first inquiry) waits for SQS's 180 s visibility timeout:
    # the settling time covers it.
    report = run_load(
        stack,
        tag="soak",
        refunds=SECONDS * PER_SECOND,
        per_second=PER_SECOND,
        window=60,
        faults=faults,
        mix=Mix(mixed_share=0.3, seed=11),
        settle_seconds=300,
    )
    leaked: dict[str, list[str]] = {}
    if WORKFLOW == "STANDARD":  # stack_texts reads execution histories, which EXPRESS does not keep
        leaked = leaks(stack_texts(stack, {"events": report.events}), key_needles(stack.state_dir / "profiles"))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {**json.loads(report.summary()), "workflow": WORKFLOW, "problems": report.problems(), "leaks": leaked},
            indent=1,
            ensure_ascii=False,
        )
    )
    print("soak:", report.summary())
    assert report.problems() == {}
    assert leaked == {}
    assert report.chaos_injected > 0
