"""A load driver for the reliability tests and `make soak`: send refunds with known scripts under faults, then account
for every one of them (nothing lost, right final status, no regression, no forged answer stored, one event per
closed window, no refund split over two items, never two loops per refund, none stranded).

Every refund gets a random id from the full range a merchant may send and a random merchant (names with "-");
a share is sent in mixed id forms (first ``refundRequestId`` only, then, once the provider revealed the
``refundId``, ``refundId`` only and both, concurrently and in random order); with a hostile provider, a share
is answered by it (replays of another refund's answer, drips, gzip bombs, huge bodies, FAIL after SUCCESS on a
``force`` re-poll).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refund_core.aws.profiles import secret_name
from refund_core.domain.claim import EVENT_PENDING
from refund_core.domain.inquiry import REFUND_ID, REQUEST_ID, RefundRef, item_key, key_digest
from refund_poller.devstack import DevStack
from refund_poller.local.fault_proxy import FaultProxy
from refund_poller.sandbox import PROFILE_SPECS, ChaosConfig
from refund_poller.sandbox.notifications import NotifyTarget
from tests.integration.hostile_provider import HostileProvider
from tests.integration.stack_support import send, store
from tests.reliability.accounting import (
    LoopWatcher,
    inquiries_after_final,
    name_digest,
    peak_memory_mb,
    stranded,
    window_event_problems,
)
from tests.reliability.ids import MERCHANTS, provision_merchants, random_id, random_plain_id
from tests.reliability.kills import KillingProxy
from tests.reliability.support import FINAL, items, sandbox_amount, scripted_final

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
# Scripts never final at the first inquiry: the starter then never publishes, so a publish that fails is retried
# by the workflow within seconds (a starter's failed publish waits for SQS's 180 s visibility timeout).
LOOP_SCRIPTS = tuple(script for script in SCRIPTS if script not in ("success", "fail"))
ALL_CHAOS = ("http500", "http429", "reset", "garbage", "badsig", "nosig", "unknown", "ratelimit", "slow")
HOSTILE_MERCHANT = "hostile-net"
# What the hostile provider does, by the scenario an id carries (tests/integration/hostile_provider.py):
# replay: another refund's genuine SUCCESS; drip: a genuine answer a byte every 0.5 s; bomb.nolength: 1.1 GB
# of gzip without Content-Length; huge: a 300 MB body; flip: SUCCESS, then FAIL on the force re-poll.
HOSTILE_SCENARIOS = ("replay", "drip", "bomb.nolength", "huge", "flip")
REPLAYED_IDS = (("r", "someone-else-4711"), ("rr", "someone-else-rr"))  # the ids a replayed answer is about
PUBLISH_FAILED = "result event not published"
NOTIFY_SPEEDUP = 60
# What the stack's scheduled rule (template.yaml, rate(5 minutes)) sends the starter: the outbox sweep.
SWEEP_EVENT = json.loads((Path(__file__).parents[2] / "events" / "scheduled_outbox_sweep.json").read_text())


@dataclass
class Faults:
    """What to spoil: provider answers (sandbox chaos), Inquire invocations, DynamoDB UpdateItem calls, PutEvents
    (refused entries, as ``FailedEntryCount``), and processes killed at PutEvents (after the close, before the
    publish)."""

    chaos_rate: float = 0.0
    chaos_faults: tuple[str, ...] = ALL_CHAOS
    slow_ms: int = 11_000  # longer than PROVIDER_READ_TIMEOUT (10 s): a real client timeout
    inquire_failure_rate: float = 0.0
    update_item_throttle: float = 0.0
    put_events_failure_rate: float = 0.0
    kill_at_publish_rate: float = 0.0
    seed: int = 1


@dataclass
class Mix:
    """What to send: scripts, merchants, the share sent in mixed id forms, the share answered by a hostile
    provider (a :class:`HostileProvider` must be given then)."""

    scripts: tuple[str, ...] = SCRIPTS
    merchants: tuple[str, ...] = MERCHANTS
    mixed_share: float = 0.0
    hostile_share: float = 0.0
    hostile_scenarios: tuple[str, ...] = HOSTILE_SCENARIOS
    seed: int = 1
    # The sandbox also pushes each refund's final result to the stack (per refund: its merchant's endpoint), and
    # with probability ``notify_rate`` spoils the push with one of ``notify_faults`` (sandbox/notifications.py).
    notify: bool = False
    notify_faults: tuple[str, ...] = ("dropped", "duplicated", "delayed", "forged")
    notify_rate: float = 0.3
    interval: int | None = None  # the messages' own polling interval (the stack's policy when None)


@dataclass
class Planned:
    """One refund of the load: how it is first sent, what follows, and what it must end as."""

    provider: str
    merchant: str
    key: str
    first: dict[str, Any]
    expected: str | None  # the scripted final status; None: must close without one (hostile answers)
    sandbox_id: str | None = None  # the id the sandbox knows it by (None: not a sandbox refund)
    kind: str = "plain"
    forms: tuple[tuple[str, str], ...] = ()
    followups: list[dict[str, Any]] = field(default_factory=list)
    windows: int = 1
    followed: bool = False


@dataclass
class LoadReport:
    sent: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    regressions: dict[str, list[str]] = field(default_factory=dict)
    silent_regressions: list[str] = field(default_factory=list)
    event_problems: list[str] = field(default_factory=list)
    conflict_event_problems: list[str] = field(default_factory=list)
    duplicate_loops: dict[str, list[str]] = field(default_factory=dict)
    two_pending_attempts: dict[str, list[str]] = field(default_factory=dict)
    inquiries_after_final: list[str] = field(default_factory=list)
    stranded: dict[str, str] = field(default_factory=dict)
    split_refunds: list[str] = field(default_factory=list)
    followups_not_sent: list[str] = field(default_factory=list)
    notification_problems: list[str] = field(default_factory=list)
    notifications: dict[str, int] = field(default_factory=dict)
    polls: int = 0
    chaos_injected: int = 0
    inquire_failures: int = 0
    throttled: int = 0
    put_events_refused: int = 0
    killed_at_publish: int = 0
    kill_misses: int = 0
    executions: int = 0
    loop_samples: int = 0
    tail_samples: int = 0
    tail_attempts: int = 0
    final_in_tail: int = 0
    gave_up: int = 0
    sweeps: int = 0
    most_loops_running: int = 0
    conflicts_recorded: int = 0
    peak_memory_mb: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return json.dumps(
            {
                "refunds": self.sent,
                "seconds": round(self.seconds),
                "kinds": self.kinds,
                "statuses": self.statuses,
                "polls": self.polls,
                "providerFaultsInjected": self.chaos_injected,
                "inquireCrashes": self.inquire_failures,
                "updateItemThrottled": self.throttled,
                "putEventsRefused": self.put_events_refused,
                "killedAtPublish": self.killed_at_publish,
                "killMisses": self.kill_misses,
                "executions": self.executions,
                "loopSamples": self.loop_samples,
                "mostLoopsRunning": self.most_loops_running,
                "conflictsRecorded": self.conflicts_recorded,
                "peakMemoryMB": self.peak_memory_mb,
                "lost": len(self.lost),
                "wrong": len(self.wrong),
                "regressions": len(self.regressions),
                "silentRegressions": len(self.silent_regressions),
                "closedWindowsWithout1Event": len(self.event_problems),
                "conflictEventProblems": len(self.conflict_event_problems),
                "duplicateLoops": len(self.duplicate_loops),
                "tailSamples": self.tail_samples,
                "tailAttempts": self.tail_attempts,
                "finalInTail": self.final_in_tail,
                "gaveUp": self.gave_up,
                "outboxSweeps": self.sweeps,
                "twoPendingAttempts": len(self.two_pending_attempts),
                "inquiriesAfterFinal": len(self.inquiries_after_final),
                "strandedPolling": len(self.stranded),
                "splitRefunds": len(self.split_refunds),
                "followupsNotSent": len(self.followups_not_sent),
                "notifications": self.notifications,
                "notificationProblems": len(self.notification_problems),
            },
            ensure_ascii=False,
        )

    def problems(self) -> dict[str, Any]:
        found = {
            "lost": self.lost,
            "wrong": self.wrong,
            "regressions": self.regressions,
            "silent regressions": self.silent_regressions,
            "closed windows with != 1 event": self.event_problems,
            "conflicts with != 1 conflict event": self.conflict_event_problems,
            "duplicate loops": self.duplicate_loops,
            "two pending tail attempts": self.two_pending_attempts,
            "inquiries after a final status": self.inquiries_after_final,
            "stranded POLLING with no running loop": self.stranded,
            "split refunds": self.split_refunds,
            "follow-ups not sent": self.followups_not_sent,
            "notifications": self.notification_problems,
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
    mix: Mix | None = None,
    hostile: HostileProvider | None = None,
    settle_seconds: float = 120,
    sweep_every: float | None = 10.0,
) -> LoadReport:
    """Send ``refunds`` refunds, at most ``per_second`` a second, under ``faults``; send their follow-ups; wait for
    every window to close; account for each. The load is a count, not a duration: a slow machine sends the same
    refunds, only later. ``sweep_every``: run the outbox sweep that often (seconds), as the stack's scheduled rule
    does every 5 minutes on AWS (the local stack fires no rate() schedules; None: never). An event whose publish
    failed at every retry of its closer (a loop's three attempts, a tail attempt whose redelivery found nothing to
    take) is published by the sweep once its 60 s grace is over; one never published still fails the accounting."""
    mix = mix or Mix()
    provision_merchants(stack, mix.merchants)
    if hostile is not None:
        _provision_hostile(stack, hostile)
    plan = _plan(stack, tag, refunds, window, mix, hostile is not None)
    if mix.notify:  # Antom's retries 60 times sooner (2 min → 2 s): a push that timed out comes again in the window
        stack.sandbox.set_notify_speedup(NOTIFY_SPEEDUP)
    proxy = _start_faults(stack, faults)
    report = LoadReport(sent=len(plan), kinds=_kinds(plan))
    started = time.monotonic()
    try:
        with LoopWatcher(stack) as watcher:
            watcher.expect(p.key for p in plan)
            pending, sent = list(plan), list[Planned]()
            deadline: float | None = None
            swept = time.monotonic()
            while True:
                tick = time.monotonic()
                if sweep_every is not None and tick - swept >= sweep_every:
                    stack.cloud.invoke("StartInquiryFunction", SWEEP_EVENT)
                    report.sweeps, swept = report.sweeps + 1, tick
                batch, pending = pending[: max(1, round(per_second))], pending[max(1, round(per_second)) :]
                if batch:
                    send(stack, *(p.first for p in batch))
                    sent += batch
                elif deadline is None:
                    deadline = time.monotonic() + window * max(p.windows for p in plan) + settle_seconds
                # While sending, read only the items awaiting follow-ups (a scan grows with the run: the soak's
                # rate would fall with it); once all is sent, the whole table, to see everything closed.
                table = items(stack) if deadline is not None else _awaiting(stack, sent)
                _send_followups(stack, sent, table)
                if deadline is not None and (_all_closed(plan, table) or time.monotonic() > deadline):
                    break
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            # Loops that run on although their item closed would still show as duplicates: watch a little longer.
            time.sleep(2)
    finally:
        report.chaos_injected = int(stack.sandbox.state.chaos.to_dict()["injected"])
        report.inquire_failures = stack.cloud.injected_failures("InquireFunction")
        _stop_faults(stack, proxy)
        if proxy is not None:
            report.throttled = sum(proxy.throttled.values())
        if isinstance(proxy, KillingProxy):
            report.killed_at_publish, report.kill_misses = proxy.kills, proxy.kill_misses
    report.seconds = time.monotonic() - started
    report.regressions = watcher.regressions()
    report.duplicate_loops = watcher.duplicate_loops
    report.two_pending_attempts = watcher.two_pending_attempts
    report.tail_samples = watcher.tail_samples
    report.loop_samples, report.most_loops_running = watcher.samples, watcher.most_running
    report.executions = watcher.loops.started
    _account(stack, plan, watcher, report)
    if mix.notify:
        _account_notifications(stack, plan, items(stack), report)
    return report


# -- the plan ----------------------------------------------------------------------------------------------------


def _plan(stack: DevStack, tag: str, refunds: int, window: int, mix: Mix, hostile: bool) -> list[Planned]:
    rng = random.Random(f"{tag}/{mix.seed}")
    polling = {"maxDurationSeconds": window} | ({"intervalSeconds": mix.interval} if mix.interval else {})
    plan: list[Planned] = []
    for n in range(refunds):
        provider = PROVIDERS[n % len(PROVIDERS)]
        script = mix.scripts[(n // len(PROVIDERS)) % len(mix.scripts)]
        merchant = rng.choice(mix.merchants)
        label = f"{tag}{n}"
        draw = rng.random()
        if hostile and provider != "alphapay" and draw < mix.hostile_share:
            scenario = mix.hostile_scenarios[
                sum(p.merchant == HOSTILE_MERCHANT for p in plan) % len(mix.hostile_scenarios)
            ]
            plan.append(_hostile(rng, provider, scenario, label, window))
        elif provider != "alphapay" and draw < mix.hostile_share + mix.mixed_share:
            plan.append(_mixed(stack, rng, provider, merchant, script, label, polling))
        else:
            refund_id = random_id(rng, script, label)
            # AlphaPay needs refundId; the others are sent with the merchant's refundRequestId.
            kind, field_name = (REFUND_ID, "refundId") if provider == "alphapay" else (REQUEST_ID, "refundRequestId")
            message = {"provider": provider, "merchant": merchant, field_name: refund_id, "polling": polling}
            if mix.notify:
                _notify_refund(stack, mix, provider, merchant, refund_id, seed=rng.randrange(2**31))
            plan.append(
                Planned(
                    provider,
                    merchant,
                    RefundRef(provider, merchant, kind, refund_id).item_key,
                    message,
                    scripted_final(refund_id),
                    sandbox_id=refund_id,
                    forms=((kind, refund_id),),
                )
            )
    return plan


def _notify_refund(stack: DevStack, mix: Mix, provider: str, merchant: str, refund_id: str, *, seed: int) -> None:
    """Script the refund with its own notification target: its merchant's endpoint, signed for the profile the
    merchant was provisioned with (every load merchant shares the sandbox's caller id, so a per-merchant target
    could not tell them apart). Its own seed: the sandbox draws a target's faults from a generator per target."""
    caller = next(spec.caller_id for spec in PROFILE_SPECS if spec.name == provider)
    target = NotifyTarget(
        url=stack.notify_url(provider, merchant),
        merchant=merchant,
        client_id=caller,
        faults=mix.notify_faults,
        rate=mix.notify_rate,
        seed=seed,
    )
    stack.sandbox.set_script_with_notify(provider, refund_id, refund_id.split("--", 1)[0], target)


def _mixed(
    stack: DevStack, rng: random.Random, provider: str, merchant: str, script: str, label: str, polling: dict[str, int]
) -> Planned:
    """One refund the sandbox knows by both ids (the refundId carries the script), sent first by its
    refundRequestId only; the follow-ups (refundId only, both ids; each twice) wait until the provider revealed
    the refundId (docs/internals.md "Identity": before that, nothing links a refundId-only message to it)."""
    refund_id, request_id = random_id(rng, script, label), random_plain_id(rng, f"rq{label}")
    stack.sandbox.state.refunds.find_or_create(provider, refund_id, request_id)
    base = {"provider": provider, "merchant": merchant, "polling": polling}
    followups = [{**base, "refundId": refund_id}, {**base, "refundId": refund_id, "refundRequestId": request_id}] * 2
    rng.shuffle(followups)
    return Planned(
        provider,
        merchant,
        item_key(provider, merchant, refund_request_id=request_id),
        {**base, "refundRequestId": request_id},
        scripted_final(refund_id),
        sandbox_id=refund_id,
        kind="mixed",
        forms=((REFUND_ID, refund_id), (REQUEST_ID, request_id)),
        followups=followups,
    )


def _hostile(rng: random.Random, provider: str, scenario: str, label: str, window: int) -> Planned:
    refund_request_id = random_id(rng, scenario, label)
    message = {
        "provider": provider,
        "merchant": HOSTILE_MERCHANT,
        "refundRequestId": refund_request_id,
        "polling": {"maxDurationSeconds": window},
    }
    flip = scenario == "flip"
    return Planned(
        provider,
        HOSTILE_MERCHANT,
        item_key(provider, HOSTILE_MERCHANT, refund_request_id=refund_request_id),
        message,
        "SUCCESS" if flip else None,
        kind=f"hostile {scenario}",
        forms=((REQUEST_ID, refund_request_id),),
        followups=[{**message, "force": True}] if flip else [],
        windows=2 if flip else 1,
    )


def _kinds(plan: list[Planned]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for planned in plan:
        kinds[planned.kind] = kinds.get(planned.kind, 0) + 1
    return dict(sorted(kinds.items()))


def _provision_hostile(stack: DevStack, hostile: HostileProvider) -> None:
    prefix = str(stack.outputs["ProfileSecretPrefix"])
    for provider in ("antom", "alipayplus"):
        stack.cloud.put_secret(secret_name(prefix, provider, HOSTILE_MERCHANT), hostile.profile(provider))


# -- sending follow-ups, waiting ---------------------------------------------------------------------------------


def _awaiting(stack: DevStack, sent: list[Planned]) -> dict[str, dict[str, Any]]:
    results = store(stack)
    found = {p.key: results.get(p.key) for p in sent if p.followups and not p.followed}
    return {key: item for key, item in found.items() if item is not None}


def _send_followups(stack: DevStack, plan: list[Planned], table: dict[str, dict[str, Any]]) -> None:
    """Send the follow-ups whose refund is ready, all of them at once from two threads (random order)."""
    ready = [p for p in plan if p.followups and not p.followed and _ready(stack, p, table.get(p.key))]
    if not ready:
        return
    messages = [message for p in ready for message in p.followups]
    for p in ready:
        p.followed = True
    halves = (messages[0::2], messages[1::2])
    senders = [threading.Thread(target=send, args=(stack, *half)) for half in halves if half]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()


def _ready(stack: DevStack, planned: Planned, item: dict[str, Any] | None) -> bool:
    if item is None:
        return False
    if planned.kind == "mixed":  # the provider's answer revealed the refundId: its alias names this item
        refund_id = dict(planned.forms)[REFUND_ID]
        return store(stack).key_for_refund_id(planned.provider, planned.merchant, refund_id) == planned.key
    # A force re-poll of a closed final window whose event is out.
    return item.get("pollingState") == "IDLE" and bool(item.get("final")) and not item.get(EVENT_PENDING)


def _all_closed(plan: list[Planned], table: dict[str, dict[str, Any]]) -> bool:
    return all(_closed(p, table.get(p.key)) for p in plan)


def _closed(planned: Planned, item: dict[str, Any] | None) -> bool:
    """Its windows all closed and their events out (a publish that failed is retried after the close)."""
    if item is None or item.get("pollingState") != "IDLE" or int(item.get("generation", 0)) < planned.windows:
        return False
    if item.get(EVENT_PENDING) or item.get("conflictEventPending"):
        return False
    return planned.followed or not planned.followups


def _start_faults(stack: DevStack, faults: Faults) -> FaultProxy | None:
    if faults.chaos_rate:
        stack.sandbox.set_chaos(
            ChaosConfig(rate=faults.chaos_rate, faults=faults.chaos_faults, seed=faults.seed, slow_ms=faults.slow_ms)
        )
    if faults.inquire_failure_rate:
        stack.cloud.inject_failures("InquireFunction", rate=faults.inquire_failure_rate, seed=faults.seed)
    if faults.put_events_failure_rate:
        stack.cloud.strict.put_events_seed = faults.seed
        stack.cloud.strict.put_events_failure_rate = faults.put_events_failure_rate
    if not (faults.update_item_throttle or faults.kill_at_publish_rate):
        return None
    upstream = stack.cloud.endpoint_url
    proxy = KillingProxy(upstream, kill_rate=faults.kill_at_publish_rate, seed=faults.seed).start()
    stack.cloud.route_functions_through(proxy.url)
    if faults.update_item_throttle:
        proxy.throttle({"DynamoDB_20120810.UpdateItem": faults.update_item_throttle})
    return proxy


def _stop_faults(stack: DevStack, proxy: FaultProxy | None) -> None:
    stack.sandbox.set_chaos(ChaosConfig(rate=0.0))
    stack.cloud.inject_failures("InquireFunction", rate=0.0)
    stack.cloud.strict.put_events_failure_rate = 0.0
    if proxy is not None:
        stack.cloud.route_functions_through(stack.cloud.endpoint_url)
        proxy.stop()


# -- accounting --------------------------------------------------------------------------------------------------


def _print_story(watcher: LoopWatcher, key: str) -> None:
    """The execution log records of a lost refund's loops (EXPRESS), so a failure explains itself."""
    digest = key_digest(RefundRef.from_item_key(key))
    for arn, records in watcher.loops.records.items():
        if digest in arn:
            for record in records:
                print("story", arn.rsplit(":", 1)[-1], json.dumps(record, ensure_ascii=False, default=str)[:600])


def _dlq_depth(stack: DevStack) -> dict[str, str]:
    """The DLQ's message counts, for a lost refund's story (a tail attempt's message that failed every delivery)."""
    url = str(stack.outputs["InquiryDLQUrl"])
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    return dict(stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"])


def _account(stack: DevStack, plan: list[Planned], watcher: LoopWatcher, report: LoadReport) -> None:
    table = items(stack)
    statuses: dict[str, int] = {}
    for planned in plan:
        item = table.get(planned.key)
        if planned.followups and not planned.followed:
            report.followups_not_sent.append(f"{planned.key}: its follow-ups were never ready")
        if not _closed(planned, item):
            state = "never stored" if item is None else f"{item.get('pollingState')} gen {item.get('generation')}"
            pending = " event pending" if item and item.get(EVENT_PENDING) else ""
            report.lost.append(f"{planned.key}: not closed ({state}{pending})")
            _print_story(watcher, planned.key)
            if item is not None:  # a refund waiting in its tail: its attempt, its schedule, or a message in the DLQ
                tail = {k: item.get(k) for k in ("tailAttempt", "nextPollAt", "tailHistory", "reason")}
                print("lost item", planned.key, json.dumps(tail, ensure_ascii=False, default=str)[:1500])
                print("DLQ", json.dumps(_dlq_depth(stack)))
            continue
        assert item is not None
        status = str(item["status"])
        statuses[status] = statuses.get(status, 0) + 1
        report.polls += int(item.get("polls", 0))
        _account_tail(stack, planned, item, report)
        _check_outcome(stack, planned, item, report)
    report.statuses = dict(sorted(statuses.items()))
    report.split_refunds = _splits(plan, table)
    now = time.time()
    running = {watcher.digests.get(name_digest(name) or "", name) for name in watcher.loops.names()}
    report.stranded = dict(watcher.stranded)
    for key, item in table.items():
        if stranded(item, key in running, now):
            report.stranded.setdefault(key, "POLLING with no running loop at the end")
    expected_events = sum(p.windows for p in plan) + report.conflicts_recorded
    report.events = _drain_events(stack, expected_events, timeout=30)
    report.event_problems, report.conflict_event_problems = window_event_problems(table, report.events)
    report.peak_memory_mb = peak_memory_mb(stack)
    logs = stack.cloud.function_logs("InquireFunction") + stack.cloud.function_logs("StartInquiryFunction")
    report.put_events_refused = logs.count("EventBridge refused the event")


def _account_tail(stack: DevStack, planned: Planned, item: dict[str, Any], report: LoadReport) -> None:
    history = item.get("tailHistory") or []
    report.tail_attempts += len(history)
    report.gave_up += bool(item.get("gaveUp"))
    if history and history[-1].get("status") in FINAL:
        report.final_in_tail += 1
    after_final = [entry["attempt"] for entry in history[:-1] if entry.get("status") in FINAL]
    if after_final:
        report.inquiries_after_final.append(f"{planned.key}: tail attempts after the final one {history}")
    if planned.sandbox_id and inquiries_after_final(stack, planned.provider, planned.sandbox_id, item):
        record = stack.sandbox.refund(planned.provider, planned.sandbox_id)
        report.inquiries_after_final.append(f"{planned.key}: asked after finalAt {item.get('finalAt')}: {record}")


def _check_outcome(stack: DevStack, planned: Planned, item: dict[str, Any], report: LoadReport) -> None:
    key, status = planned.key, str(item["status"])
    if planned.expected is None:  # a hostile answer proves nothing: never final, never another refund's amount
        if status in FINAL or (item.get("amount") or {}).get("value") == "999999":
            report.wrong.append(f"{key}: stored {status} {item.get('amount')} from an answer that proves nothing")
        for kind, value in REPLAYED_IDS:
            alias = store(stack).get(RefundRef(planned.provider, planned.merchant, kind, value).alias_key)
            if alias is not None:
                report.wrong.append(f"{key}: another refund's id {kind}:{value} was bound to {alias.get('target')}")
        return
    if status != planned.expected:
        sandbox = stack.sandbox.refund(planned.provider, planned.sandbox_id) if planned.sandbox_id else None
        report.wrong.append(f"{key}: stored {status} ({item.get('reason')}), expected {planned.expected}, {sandbox}")
    elif (
        planned.sandbox_id
        and item.get("amount")
        and item["amount"] != sandbox_amount(planned.provider, str(item["refundId"]))
    ):
        report.wrong.append(f"{key}: amount {item['amount']} is not the provider's")
    conflicts = int(item.get("finalConflictCount", 0))
    report.conflicts_recorded += conflicts
    if planned.kind == "hostile flip" and conflicts < 1:
        report.silent_regressions.append(f"{key}: a FAIL after SUCCESS left no conflict ({status})")


def _account_notifications(
    stack: DevStack, plan: list[Planned], table: dict[str, dict[str, Any]], report: LoadReport
) -> None:
    """Every item against the sandbox's truth and its push log: the status is the one the provider turned final
    with; an item final by notification had a genuine push of that status acknowledged; a forged push was refused
    (401) and never left a trace (no conflict); a dropped notification left the refund to its polls."""
    pushes = stack.sandbox.pushes()
    counts: dict[str, int] = {"notifications": len({e["notification"] for e in pushes})}
    for fault in {(e["notification"], e["fault"]) for e in pushes if e["fault"]}:
        counts[f"fault {fault[1]}"] = counts.get(f"fault {fault[1]}", 0) + 1
    for entry in pushes:
        kind = "forgery" if entry["forgery"] else entry["outcome"]
        counts[kind] = counts.get(kind, 0) + 1
        if entry["forgery"] and entry["replyStatus"] not in (401, None):  # None: the sender gave up waiting
            report.notification_problems.append(f"forged push answered {entry['replyStatus']}: {entry}")
    for planned in plan:
        item, truth = table.get(planned.key), stack.sandbox.refund(planned.provider, planned.sandbox_id or "")
        if item is None or truth is None:
            continue  # lost: reported as such
        own = [e for e in pushes if planned.sandbox_id in (e["refundId"], e["refundRequestId"])]
        genuine = [e for e in own if not e["forgery"] and e["outcome"] in ("acknowledged", "rejected", "unreachable")]
        if item.get("status") in FINAL and item["status"] != truth["finalStatus"]:
            report.notification_problems.append(f"{planned.key}: {item['status']}, the sandbox says {truth}")
        if item.get("source") == "notification":
            counts["final by notification"] = counts.get("final by notification", 0) + 1
            # Genuine and sent (an attempt the sender gave up on may still have been recorded: AlphaPay's once).
            if not any(e["status"] in (item["status"], "FAILED" if item["status"] == "FAIL" else "") for e in genuine):
                report.notification_problems.append(f"{planned.key}: final by notification, no genuine push {own}")
        if any(e["outcome"] == "dropped" for e in own) and item.get("source") == "notification":
            report.notification_problems.append(f"{planned.key}: a dropped notification was recorded")
        if item.get("finalConflictCount"):
            report.notification_problems.append(f"{planned.key}: a conflict was recorded {item['finalConflict']}")
    for function in ("InquireFunction", "NotifyFunction"):  # under overload: a retried close may publish twice
        counts[f"{function} timed out"] = stack.cloud.function_logs(function).count("Task timed out")
    report.notifications = dict(sorted(counts.items()))


def _splits(plan: list[Planned], table: dict[str, dict[str, Any]]) -> list[str]:
    """Refunds whose ids ended up on more than one refund item (one refund = one item)."""
    holders: dict[tuple[str, str, str, str], set[str]] = {}
    for key, item in table.items():
        for kind, value in ((REQUEST_ID, item.get("refundRequestId")), (REFUND_ID, item.get("refundId"))):
            if value:
                holders.setdefault((str(item["provider"]), str(item["merchant"]), kind, str(value)), set()).add(key)
        ref = RefundRef.from_item_key(key)
        holders.setdefault((ref.provider, ref.merchant, ref.kind, ref.value), set()).add(key)
    splits = []
    for planned in plan:
        keys = set().union(*(holders.get((planned.provider, planned.merchant, k, v), set()) for k, v in planned.forms))
        if keys - {planned.key}:
            splits.append(f"{planned.key}: also {sorted(keys - {planned.key})}")
    return splits


def _drain_events(stack: DevStack, expected: int, timeout: float) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        found.extend(stack.result_events(wait_seconds=1))
    found.extend(stack.result_events())  # strays beyond the expected count too
    return found
