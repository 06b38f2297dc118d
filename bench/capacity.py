"""Capacity model: what 100k, 1M and 10M refunds a day need from each AWS service, and what they cost.

``python -m bench.capacity`` reads the bench's measured per-poll figures (bench/results/stack_flows.json:
transitions per poll, Lambda durations, requests per poll and per message) and, for each daily volume:

1. works out the peak-hour demand on every quota in closed form (rates by Little's law), and
2. checks it with a second-by-second simulation of that hour: arrivals, the first inquiry, every later poll at
   its interval, StartExecution and state transitions drawn from token buckets (what cannot be served waits
   for the next second, as a throttled retry would), Lambda concurrency as polls in flight;

then writes bench/results/capacity.json and the table between the markers of docs/capacity.md. The quotas are the
us-east-1 defaults cited there; every assumption is a named constant below.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import REPO, RESULTS, read_json, write_json
from bench.run import refund_cost

DAILY_VOLUMES = (100_000, 1_000_000, 10_000_000)
PEAK_FACTOR = 10  # the peak hour runs at 10x the day's average rate (a settlement run, a sale-day refund wave)
PEAK_SECONDS = 3600
POLLS_PER_REFUND = 12  # the dearest common case: still PROCESSING for the whole 60 s window at the 5 s interval
INTERVAL_S = 5  # AntomIntervalSeconds default
PROVIDER_ROUND_TRIP_S = 0.25  # a provider call from an AWS Region (the bench's provider is on loopback)
BATCH_SIZE = 10  # InquiryMessages BatchSize
HEADROOM = 1.2  # parameters are set 20 % above the peak need

# us-east-1 default quotas (docs/capacity.md cites each page).
QUOTAS = {
    "standardStartExecutionRefillPerS": 300,
    "standardStartExecutionBucket": 1300,
    "expressStartExecutionRefillPerS": 6000,
    "standardStateTransitionRefillPerS": 1500,
    "standardStateTransitionBucket": 5000,
    "standardOpenExecutions": 1_000_000,
    "lambdaAccountConcurrency": 1000,
    "lambdaScalingPer10s": 1000,
    "putEventsPerS": 10_000,
    "dynamodbTableWruPerS": 40_000,
    "dynamodbNewTableWruPerS": 4000,
    "sqsInFlightMessages": 120_000,
}
DOC = REPO / "docs" / "capacity.md"
DEFAULTS = {"StartInquiryMaxConcurrency": 5, "InquireReservedConcurrency": 50}


@dataclass(frozen=True)
class PerPoll:
    """What one refund costs the services, from the bench's measurements."""

    transitions_per_poll: float  # Standard: states entered per execution poll
    inquire_s: float  # one poll's Lambda duration (measured, loopback provider) + PROVIDER_ROUND_TRIP_S
    starter_batch_s: float  # one StartInquiry batch of BATCH_SIZE messages (measured) + PROVIDER_ROUND_TRIP_S
    writes_per_refund: float  # DynamoDB writes (WRU, items < 1 KB) over the refund's polls
    standard_usd: float  # per refund at POLLS_PER_REFUND
    express_usd: float

    @classmethod
    def from_flows(cls, flows: dict[str, Any], polls: int = POLLS_PER_REFUND) -> PerPoll:
        lam = flows["detail"]["lambda"]
        per_poll = float(flows["transitions_per_poll"])
        cost = refund_cost(flows, polls, transitions(per_poll, polls))
        return cls(
            transitions_per_poll=per_poll,
            inquire_s=lam["InquireFunction"]["durationMsMedian"] / 1000 + PROVIDER_ROUND_TRIP_S,
            starter_batch_s=lam["StartInquiryFunction"]["durationMsMedian"] / 1000 + PROVIDER_ROUND_TRIP_S,
            writes_per_refund=float(cost["dynamodbWrites"]) * int(cost["dynamodbWruPerWrite"]),
            standard_usd=float(cost["standardUsd"]),
            express_usd=float(cost["expressUsd"]),
        )


def transitions(per_poll: float, polls: int) -> int:
    """States entered by one execution: per_poll for each poll after the starter's, plus the final state."""
    return round(per_poll * (polls - 1)) + 1


@dataclass
class Demand:
    """Peak-second demand on each quota (closed form)."""

    refunds_per_day: int
    arrivals_per_s: float
    polls_per_s: float
    start_executions_per_s: float
    state_transitions_per_s: float
    open_executions: float
    inquire_concurrency: float
    starter_concurrency: float
    put_events_per_s: float
    dynamodb_wru_per_s: float
    standard_usd_per_day: float
    express_usd_per_day: float


def closed_form(refunds_per_day: int, per: PerPoll, polls: int = POLLS_PER_REFUND) -> Demand:
    rate = refunds_per_day / 86_400 * PEAK_FACTOR
    execution_polls = polls - 1
    window_s = execution_polls * (INTERVAL_S + per.inquire_s)
    return Demand(
        refunds_per_day=refunds_per_day,
        arrivals_per_s=rate,
        polls_per_s=rate * polls,
        start_executions_per_s=rate,
        state_transitions_per_s=rate * transitions(per.transitions_per_poll, polls),
        open_executions=rate * window_s,  # Little's law: arrival rate x time in the system
        inquire_concurrency=rate * execution_polls * per.inquire_s,
        starter_concurrency=rate / BATCH_SIZE * per.starter_batch_s,
        put_events_per_s=rate,
        dynamodb_wru_per_s=rate * per.writes_per_refund,
        standard_usd_per_day=refunds_per_day * per.standard_usd,
        express_usd_per_day=refunds_per_day * per.express_usd,
    )


class TokenBucket:
    """Step Functions' throttling: ``size`` tokens at most, ``refill`` added each second; a request that finds
    no token waits (a throttled call retried), so demand carries over as ``backlog``."""

    def __init__(self, size: float, refill: float) -> None:
        self.size = size
        self.refill = refill
        self.tokens = size
        self.backlog = 0.0
        self.throttled_seconds = 0

    def second(self, demand: float) -> float:
        """One second: refill, then serve the backlog and ``demand``; returns how many were served."""
        self.tokens = min(self.size, self.tokens + self.refill)
        wanted = self.backlog + demand
        served = min(wanted, self.tokens)
        self.tokens -= served
        self.backlog = wanted - served
        if self.backlog > 1e-9:
            self.throttled_seconds += 1
        return served


@dataclass
class Simulated:
    """The peak hour second by second (Standard, default quotas)."""

    max_polls_per_s: float = 0.0
    max_inquire_concurrency: float = 0.0
    max_state_transitions_per_s: float = 0.0
    start_execution_throttled_s: int = 0
    state_transition_throttled_s: int = 0
    max_start_delay_s: float = 0.0
    polls_served: float = 0.0
    notes: list[str] = field(default_factory=list)


def simulate(
    refunds_per_day: int, per: PerPoll, polls: int = POLLS_PER_REFUND, seconds: int = PEAK_SECONDS
) -> Simulated:
    """Refunds arrive at the peak rate for ``seconds``; each starts an execution (StartExecution bucket) whose
    polls come every INTERVAL_S + inquire_s and each enters ``transitions_per_poll`` states (StateTransition
    bucket). Fractional refunds per second keep it exact for small volumes."""
    rate = refunds_per_day / 86_400 * PEAK_FACTOR
    step = INTERVAL_S + per.inquire_s
    horizon = seconds + math.ceil((polls - 1) * step) + 2
    execution_polls = [0.0] * horizon
    starts = TokenBucket(QUOTAS["standardStartExecutionBucket"], QUOTAS["standardStartExecutionRefillPerS"])
    states = TokenBucket(QUOTAS["standardStateTransitionBucket"], QUOTAS["standardStateTransitionRefillPerS"])
    result = Simulated()
    per_poll = per.transitions_per_poll
    for now in range(horizon):
        arrivals = rate if now < seconds else 0.0
        started = starts.second(arrivals)
        if starts.backlog > 0 and started > 0:
            result.max_start_delay_s = max(result.max_start_delay_s, starts.backlog / started)
        for k in range(1, polls):  # each started execution's polls, at their due seconds
            due = now + math.floor(k * step)
            if due < horizon:
                execution_polls[due] += started
        # The polls due now need their states entered; throttled ones wait (the loop slows down).
        wanted_states = execution_polls[now] * per_poll + started  # + 1 state entered per new execution
        served_states = states.second(wanted_states)
        served_polls = min(execution_polls[now], served_states / per_poll) if per_poll else execution_polls[now]
        result.polls_served += served_polls + arrivals  # + the starter's first poll
        polls_now = served_polls + arrivals
        result.max_polls_per_s = max(result.max_polls_per_s, polls_now)
        result.max_inquire_concurrency = max(result.max_inquire_concurrency, served_polls * per.inquire_s)
        result.max_state_transitions_per_s = max(result.max_state_transitions_per_s, served_states)
    result.start_execution_throttled_s = starts.throttled_seconds
    result.state_transition_throttled_s = states.throttled_seconds
    if starts.backlog > 0:
        result.notes.append(f"{starts.backlog:.0f} StartExecution calls still waiting when the hour's tail ended")
    return result


def binding(demand: Demand, per: PerPoll) -> dict[str, dict[str, Any]]:
    """Each quota: its limit, the peak need, and whether the need passes it (Standard and Express)."""
    q = QUOTAS
    rows = {
        "StartExecution (Standard) /s": (q["standardStartExecutionRefillPerS"], demand.start_executions_per_s),
        "StartExecution (Express) /s": (q["expressStartExecutionRefillPerS"], demand.start_executions_per_s),
        "State transitions (Standard) /s": (
            q["standardStateTransitionRefillPerS"],
            demand.state_transitions_per_s,
        ),
        "Open executions (Standard)": (q["standardOpenExecutions"], demand.open_executions),
        "Lambda concurrency (account)": (
            q["lambdaAccountConcurrency"],
            demand.inquire_concurrency + demand.starter_concurrency,
        ),
        "Inquire concurrency (InquireReservedConcurrency)": (
            DEFAULTS["InquireReservedConcurrency"],
            demand.inquire_concurrency,
        ),
        "StartInquiry batches (StartInquiryMaxConcurrency)": (
            DEFAULTS["StartInquiryMaxConcurrency"],
            demand.starter_concurrency,
        ),
        "PutEvents /s": (q["putEventsPerS"], demand.put_events_per_s),
        "DynamoDB WRU/s (table quota)": (q["dynamodbTableWruPerS"], demand.dynamodb_wru_per_s),
        "DynamoDB WRU/s (new on-demand table)": (q["dynamodbNewTableWruPerS"], demand.dynamodb_wru_per_s),
    }
    return {
        name: {"limit": limit, "need": round(need, 1), "binds": need > limit} for name, (limit, need) in rows.items()
    }


def parameters(demand: Demand) -> dict[str, Any]:
    """The stack parameters (and quota requests) this volume needs."""
    inquire = math.ceil(demand.inquire_concurrency * HEADROOM)
    starter = max(2, math.ceil(demand.starter_concurrency * HEADROOM))
    standard_ok = (
        demand.state_transitions_per_s <= QUOTAS["standardStateTransitionRefillPerS"]
        and demand.start_executions_per_s <= QUOTAS["standardStartExecutionRefillPerS"]
    )
    return {
        "InquireReservedConcurrency": inquire,
        "StartInquiryMaxConcurrency": min(1000, starter),
        "WorkflowType": "STANDARD or EXPRESS" if standard_ok else "EXPRESS (or raise the Standard quotas)",
        "lambdaAccountConcurrencyNeeded": math.ceil((demand.inquire_concurrency + demand.starter_concurrency) * 1.2)
        + 100,  # Lambda keeps 100 unreserved
    }


def model(flows: dict[str, Any]) -> dict[str, Any]:
    per = PerPoll.from_flows(flows)
    scenarios = []
    for volume in DAILY_VOLUMES:
        demand = closed_form(volume, per)
        simulated = simulate(volume, per)
        scenarios.append(
            {
                "refundsPerDay": volume,
                "demand": {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(demand).items()},
                "simulated": {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(simulated).items()},
                "quotas": binding(demand, per),
                "parameters": parameters(demand),
            }
        )
    return {
        "assumptions": {
            "peakFactor": PEAK_FACTOR,
            "peakSeconds": PEAK_SECONDS,
            "pollsPerRefund": POLLS_PER_REFUND,
            "intervalS": INTERVAL_S,
            "providerRoundTripS": PROVIDER_ROUND_TRIP_S,
            "batchSize": BATCH_SIZE,
            "headroom": HEADROOM,
        },
        "perPoll": asdict(per),
        "quotas": QUOTAS,
        "scenarios": scenarios,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = []
    header = "| | " + " | ".join(f"{s['refundsPerDay']:,}/day" for s in result["scenarios"]) + " |"
    lines += [header, "|---|" + "---|" * len(result["scenarios"])]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    sc = result["scenarios"]
    row("peak arrivals /s", [f"{s['demand']['arrivals_per_s']:.1f}" for s in sc])
    row(
        "polls /s (closed form / simulated max)",
        [f"{s['demand']['polls_per_s']:.0f} / {s['simulated']['max_polls_per_s']:.0f}" for s in sc],
    )
    for name in sc[0]["quotas"]:
        row(
            name,
            [
                f"{s['quotas'][name]['need']:,} of {s['quotas'][name]['limit']:,}"
                + (" **binds**" if s["quotas"][name]["binds"] else "")
                for s in sc
            ],
        )
    row(
        "simulated: seconds StartExecution throttled (Standard)",
        [str(s["simulated"]["start_execution_throttled_s"]) for s in sc],
    )
    row(
        "simulated: seconds state transitions throttled (Standard)",
        [str(s["simulated"]["state_transition_throttled_s"]) for s in sc],
    )
    row("cost per day, Standard", [f"${s['demand']['standard_usd_per_day']:,.0f}" for s in sc])
    row("cost per day, Express", [f"${s['demand']['express_usd_per_day']:,.0f}" for s in sc])
    for name in sc[0]["parameters"]:
        row(f"set {name}", [str(s["parameters"][name]) for s in sc])
    return "\n".join(lines)


def update_doc(table: str) -> None:
    """Put the table between the markers of docs/capacity.md, so the doc quotes the last run."""
    begin, end = "<!-- capacity:begin -->", "<!-- capacity:end -->"
    text = DOC.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    DOC.write_text(pattern.sub(lambda _: f"{begin}\n{table}\n{end}", text), encoding="utf-8")


def main() -> None:
    flows = read_json(RESULTS / "stack_flows.json")
    result = model(flows)
    write_json(RESULTS / "capacity.json", result)
    table = markdown(result)
    update_doc(table)
    print(table)
    print()
    print(json.dumps(result["perPoll"], indent=2))


if __name__ == "__main__":
    main()
