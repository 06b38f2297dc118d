"""A load driver for the reliability tests and `make soak`: send refunds with known scripts under faults, then account
for every one of them (nothing lost, right final status, no regression, no forged answer stored, one event each)."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from refund_poller.devstack import DevStack
from refund_poller.local.fault_proxy import FaultProxy
from refund_poller.sandbox import ChaosConfig
from tests.integration.stack_support import events_by_key, executions, send, store
from tests.reliability.support import FINAL, StatusWatcher, items, sandbox_amount, scripted_final

PROVIDERS = ("antom", "alipayplus", "alphapay")
# Multi-poll scripts ending in both final statuses; FAIL ones are where a forged SUCCESS would show.
SCRIPTS = (
    "processing2-success",
    "processing2-fail",
    "processing4-fail",
    "unknown1-processing1-success",
    "processing1-fail",
    "success",
    "fail",
    "processing3s-success",
)
ALL_CHAOS = ("http500", "http429", "reset", "garbage", "badsig", "nosig", "unknown", "ratelimit", "slow")


@dataclass
class Faults:
    """What to spoil: provider answers (sandbox chaos), Inquire invocations, DynamoDB UpdateItem calls."""

    chaos_rate: float = 0.0
    chaos_faults: tuple[str, ...] = ALL_CHAOS
    slow_ms: int = 11_000  # longer than PROVIDER_READ_TIMEOUT (10 s): a real client timeout
    inquire_failure_rate: float = 0.0
    update_item_throttle: float = 0.0
    seed: int = 1


@dataclass
class LoadReport:
    sent: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    regressions: dict[str, list[str]] = field(default_factory=dict)
    event_problems: list[str] = field(default_factory=list)
    duplicate_loops: list[str] = field(default_factory=list)
    polls: int = 0
    chaos_injected: int = 0
    inquire_failures: int = 0
    throttled: int = 0
    executions: int = 0
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> str:
        return json.dumps(
            {
                "refunds": self.sent,
                "seconds": round(self.seconds),
                "statuses": self.statuses,
                "polls": self.polls,
                "providerFaultsInjected": self.chaos_injected,
                "inquireCrashes": self.inquire_failures,
                "updateItemThrottled": self.throttled,
                "executions": self.executions,
                "lost": len(self.lost),
                "wrong": len(self.wrong),
                "regressions": len(self.regressions),
                "eventProblems": len(self.event_problems),
                "duplicateLoops": len(self.duplicate_loops),
            }
        )

    def problems(self) -> dict[str, Any]:
        found = {
            "lost": self.lost,
            "wrong": self.wrong,
            "regressions": self.regressions,
            "events": self.event_problems,
            "duplicate loops": self.duplicate_loops,
        }
        return {name: value for name, value in found.items() if value}


def run_load(
    stack: DevStack,
    *,
    tag: str,
    refunds: int,
    per_second: float,
    window: int,
    faults: Faults,
    settle_seconds: float = 120,
) -> LoadReport:
    """Send ``refunds`` refunds, at most ``per_second`` a second, under ``faults``; wait for every window to close;
    account for each. The load is a count, not a duration: a slow machine sends the same refunds, only later."""
    proxy = _start_faults(stack, faults)
    messages: dict[str, tuple[str, str, dict[str, Any]]] = {}
    report = LoadReport()
    started = time.monotonic()
    counter = itertools.count()
    try:
        with StatusWatcher(stack) as watcher:
            while len(messages) < refunds:
                tick = time.monotonic()
                batch = []
                for _ in range(min(max(1, round(per_second)), refunds - len(messages))):
                    n = next(counter)
                    provider = PROVIDERS[n % len(PROVIDERS)]
                    refund_id = f"{SCRIPTS[(n // len(PROVIDERS)) % len(SCRIPTS)]}--{tag}-{n}"
                    id_field = "refundId" if provider == "alphapay" else "refundRequestId"
                    message = {"provider": provider, id_field: refund_id, "polling": {"maxDurationSeconds": window}}
                    messages[f"{provider}#default#{'r' if id_field == 'refundId' else 'rr'}:{refund_id}"] = (
                        provider,
                        refund_id,
                        message,
                    )
                    batch.append(message)
                send(stack, *batch)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            closed = _wait_all_closed(stack, list(messages), timeout=window + settle_seconds)
    finally:
        report.chaos_injected = _chaos_injected(stack)
        report.inquire_failures = stack.cloud.injected_failures("InquireFunction")
        _stop_faults(stack, proxy)
        if proxy is not None:
            report.throttled = sum(proxy.throttled.values())
    report.seconds = time.monotonic() - started
    report.sent = len(messages)
    report.regressions = watcher.regressions()
    _account(stack, messages, closed, report)
    return report


def _start_faults(stack: DevStack, faults: Faults) -> FaultProxy | None:
    if faults.chaos_rate:
        stack.sandbox.set_chaos(
            ChaosConfig(rate=faults.chaos_rate, faults=faults.chaos_faults, seed=faults.seed, slow_ms=faults.slow_ms)
        )
    if faults.inquire_failure_rate:
        stack.cloud.inject_failures("InquireFunction", rate=faults.inquire_failure_rate, seed=faults.seed)
    if not faults.update_item_throttle:
        return None
    proxy = FaultProxy(stack.cloud.endpoint_url, seed=faults.seed).start()
    stack.cloud.route_functions_through(proxy.url)
    proxy.throttle({"DynamoDB_20120810.UpdateItem": faults.update_item_throttle})
    return proxy


def _stop_faults(stack: DevStack, proxy: FaultProxy | None) -> None:
    stack.sandbox.set_chaos(ChaosConfig(rate=0.0))
    stack.cloud.inject_failures("InquireFunction", rate=0.0)
    if proxy is not None:
        stack.cloud.route_functions_through(stack.cloud.endpoint_url)
        proxy.stop()


def _chaos_injected(stack: DevStack) -> int:
    """Faults the sandbox injected since chaos was configured (read before it is switched off)."""
    return int(stack.sandbox.state.chaos.to_dict()["injected"])


def _wait_all_closed(stack: DevStack, keys: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Like stack_support.wait_closed, but returns what closed instead of failing: the report says what did not."""
    results = store(stack)
    pending, done = set(keys), dict[str, dict[str, Any]]()
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, item in items(stack).items():
            if key in pending and item.get("pollingState") == "IDLE":
                done[key] = item
                pending.discard(key)
        if pending:
            time.sleep(0.5)
    for key in pending:  # one last look, item by item
        last = results.get(key)
        if last and last.get("pollingState") == "IDLE":
            done[key] = last
    return done


def _account(
    stack: DevStack,
    messages: dict[str, tuple[str, str, dict[str, Any]]],
    closed: dict[str, dict[str, Any]],
    report: LoadReport,
) -> None:
    statuses: dict[str, int] = {}
    for key, (provider, refund_id, _) in messages.items():
        item = closed.get(key)
        if item is None:
            report.lost.append(f"{key}: still polling or never stored")
            continue
        status = str(item["status"])
        statuses[status] = statuses.get(status, 0) + 1
        report.polls += int(item.get("polls", 0))
        expected = scripted_final(refund_id)
        sandbox = stack.sandbox.refund(provider, refund_id) or {}
        if status in FINAL or sandbox.get("finalStatus"):
            # A final status must be the scripted one (a forged SUCCESS on a FAIL script shows here), and a refund
            # the sandbox did answer final within its window must be recorded final.
            if status != expected:
                report.wrong.append(f"{key}: stored {status}, script says {expected}, sandbox {sandbox}")
            elif item.get("amount") and item["amount"] != sandbox_amount(provider, item["refundId"]):
                report.wrong.append(f"{key}: amount {item['amount']} is not the provider's")
        else:
            report.lost.append(f"{key}: ended {status} ({item.get('reason')}) without a final answer")
    report.statuses = dict(sorted(statuses.items()))
    grouped = report.events = events_by_key(stack, expected=len(closed), timeout=30)
    for key, (_, refund_id, _) in messages.items():
        events = grouped.get(refund_id, [])
        if key in closed and [e["status"] for e in events] != [closed[key]["status"]]:
            report.event_problems.append(f"{key}: events {[e['status'] for e in events]}")
    loops: dict[str, int] = {}
    all_executions = executions(stack)
    report.executions = len(all_executions)
    for execution in all_executions:
        loops[execution["name"]] = loops.get(execution["name"], 0) + 1
    report.duplicate_loops = [name for name, count in loops.items() if count > 1]
