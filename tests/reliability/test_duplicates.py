"""Duplicates: every message delivered three times, concurrently → one polling loop and one final record per refund."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from refund_core.domain.inquiry import RefundRef, execution_name
from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import events_by_key, send, wait_closed
from tests.reliability.accounting import LoopWatcher
from tests.reliability.support import scripted_final, wait_executions_done

SCRIPTS = (
    "processing2-success",
    "processing1-fail",
    "unknown1-processing1-success",
    "http500x1-success",
    "processing3-fail",
)
PROVIDERS = ("antom", "alipayplus", "alphapay")
COPIES = 3
WINDOW = 60


def refunds() -> dict[str, dict[str, Any]]:
    """30 refunds: 10 per provider, each with a multi-poll script."""
    messages = {}
    for n in range(30):
        provider = PROVIDERS[n % 3]
        refund_id = f"{SCRIPTS[n % len(SCRIPTS)]}--dup-{n}"
        id_field = "refundId" if provider == "alphapay" else "refundRequestId"
        # A window that outlasts the spread of the three deliveries: a copy that arrives after a window closed
        # UNRESOLVED rightly starts a new loop (docs/architecture.md), which is not what this test is about.
        message = {"provider": provider, id_field: refund_id, "polling": {"maxDurationSeconds": WINDOW}}
        messages[f"{provider}#default#{'r' if id_field == 'refundId' else 'rr'}:{refund_id}"] = message
    return messages


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("duplicates"), parameter_overrides=FAST_POLICY) as running:
        yield running


@pytest.fixture(scope="module")
def outcome(stack: DevStack) -> dict[str, Any]:
    messages = refunds()
    errors: list[BaseException] = []

    def deliver(seed: int) -> None:
        order = list(messages.values())
        random.Random(seed).shuffle(order)
        try:
            send(stack, *order)
        except BaseException as exc:  # surfaced below: a thread's assertion would otherwise vanish
            errors.append(exc)

    senders = [threading.Thread(target=deliver, args=(seed,)) for seed in range(COPIES)]
    with LoopWatcher(stack) as watcher:
        watcher.expect(messages)
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert not errors
        stored = wait_closed(stack, messages, timeout=90)
        found = wait_executions_done(stack)
    return {"messages": messages, "stored": stored, "executions": found, "watcher": watcher}


def name_head(key: str) -> str:
    """An execution name of the refund's first window, up to its window id (docs/internals.md)."""
    ref = RefundRef.from_item_key(key)
    return execution_name(ref, 1, "0" * 16).rsplit("-", 1)[0]


def test_each_refund_has_exactly_one_polling_loop(outcome: dict[str, Any]) -> None:
    names = Counter(e["name"].rsplit("-", 1)[0] for e in outcome["executions"])  # without the window id
    expected = {name_head(key) for key in outcome["messages"]}
    assert set(names) == expected
    assert set(names.values()) == {1}
    assert {e["status"] for e in outcome["executions"]} == {"SUCCEEDED"}


def test_never_two_loops_running_for_one_item_and_none_stranded(outcome: dict[str, Any]) -> None:
    """Sampled while the copies arrive: RUNNING executions per item (by the key hash in their names), not names
    (which Step Functions Standard cannot duplicate, so counting them could never fail)."""
    watcher = outcome["watcher"]
    assert watcher.samples >= 5 and watcher.most_running >= 2
    assert (watcher.duplicate_loops, watcher.stranded) == ({}, {})


def test_each_refund_has_one_final_record_with_its_scripted_status(outcome: dict[str, Any]) -> None:
    for key, item in outcome["stored"].items():
        refund_id = RefundRef.from_item_key(key).value
        assert (item["status"], item["final"], item["generation"]) == (scripted_final(refund_id), True, 1), key


def test_each_refund_produced_one_result_event(stack: DevStack, outcome: dict[str, Any]) -> None:
    grouped = events_by_key(stack, expected=len(outcome["messages"]) + 5, timeout=5)  # wait for strays too
    for key in outcome["messages"]:
        events = grouped[RefundRef.from_item_key(key).value]
        assert len(events) == 1, (key, events)
        assert events[0]["status"] == outcome["stored"][key]["status"]
