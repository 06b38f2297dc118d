"""`make bench`: run every benchmark in its own process, compute the cost model, write summary.json and README tables.

Each stack-based benchmark gets its own process (one local stack per process). ``--skip-scale`` and
``--scale 100,1000`` shorten a run while working on the benchmarks.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import BENCH, PYTHON, REPO, RESULTS, log, machine, read_json, write_json

# Public prices, us-east-1 (bench/README.md cites the pages).
PRICES = {
    "sfnStandardPerTransition": 0.025 / 1000,
    "sfnExpressPerRequest": 1.00 / 1_000_000,
    "sfnExpressPerGbSecond": 0.00001667,
    "lambdaArmPerRequest": 0.20 / 1_000_000,
    "lambdaArmPerGbSecond": 0.0000133334,
    "dynamodbPerWru": 0.625 / 1_000_000,
    "dynamodbPerRru": 0.125 / 1_000_000,
    "eventbridgePerEvent": 1.00 / 1_000_000,
    "sqsPerRequest": 0.40 / 1_000_000,
    "logsPerGbIngested": 0.50,
    "schedulerPerInvocation": 1.00 / 1_000_000,
}
# The default long-tail schedule (template.yaml, refund_core/domain/tail.py): a refund final after 24 h is asked
# at +2, +12, +42, +102, +222, +582, +1302 minutes (all within 24 h) and final at the next, +2742 minutes.
TAIL_ATTEMPTS_FINAL_AFTER_24H = 8
# Per attempt: the schedule's SendMessage, the event source's ReceiveMessage and DeleteMessageBatch.
SQS_REQUESTS_PER_TAIL_ATTEMPT = 3
LAMBDA_GB = 256 / 1024
EXPRESS_GB = 64 / 1024
DEFAULT_INTERVAL_S = 5
SQS_REQUESTS_PER_REFUND = 3  # SendMessage, ReceiveMessage, DeleteMessageBatch: a batch of one, the dearest case


DATE = "%Y-%m-%d %H:%M UTC"
RUNTIMES = RESULTS / "runtimes.json"  # each part's last run time: a summary rebuilt with --skip says what it cost


def run_module(module: str, *args: str) -> None:
    started = time.monotonic()
    log(f"running {module} {' '.join(args)}")
    subprocess.run([str(PYTHON), "-m", f"bench.{module}", *args], cwd=REPO, check=True)
    seconds = time.monotonic() - started
    log(f"{module} took {seconds:.0f} s")
    runtimes = read_json(RUNTIMES) if RUNTIMES.exists() else {}
    runtimes[" ".join((module, *args))] = {
        "seconds": round(seconds),
        "date": datetime.now(UTC).strftime(DATE),
        "cpu": machine()["cpu"],
    }
    write_json(RUNTIMES, runtimes)


def parts_runtime(skip: set[str], sizes: list[int]) -> dict[str, Any]:
    """When parts were skipped (their results reused), what every part of this summary took when it last ran."""
    if not skip:
        return {}
    parts = ["init_time", "inquiry_overhead", "stack_flows", "notifications"]
    parts += [f"scale {n}" for n in sizes] + ["rate_budget", "long_tail"]
    runtimes = read_json(RUNTIMES) if RUNTIMES.exists() else {}
    known = {part: runtimes[part] for part in parts if part in runtimes}
    return {"skipped": sorted(skip), "partsRuntimeS": {part: entry["seconds"] for part, entry in known.items()}}


def runtime_sentence(summary: dict[str, Any]) -> str:
    if "skipped" not in summary:
        return f"`make bench` took {summary['runtimeS']:.0f} s."
    parts = summary["partsRuntimeS"]
    timed = f"; the {len(parts)} parts whose run time is recorded took {sum(parts.values()):,} s" if parts else ""
    return (
        f"from parts run separately (reused: {', '.join(summary['skipped'])}; bench/results/runtimes.json has each "
        f"part's date, machine and run time where recorded){timed}."
    )


def refund_cost(flows: dict[str, Any], polls: int, transitions: int) -> dict[str, Any]:
    """What one refund with ``polls`` polls (the starter's first one included) costs, by service."""
    detail = flows["detail"]
    requests = detail["requests"]
    inquire = detail["lambda"]["InquireFunction"]
    starter = detail["lambda"]["StartInquiryFunction"]
    execution_polls = polls - 1
    wru_per_write = max(1, math.ceil(requests.get("largestItemBytes", requests["itemBytes"]) / 1024))

    def count(name: str) -> float:
        """Per refund: the starter's, the middle polls' (averaged) and the last poll's."""
        middle = sum(p.get(name, 0) for p in requests["polls"][:-1]) / max(1, len(requests["polls"]) - 1)
        return float(
            requests["starter"].get(name, 0) + middle * (execution_polls - 1) + requests["polls"][-1].get(name, 0)
        )

    # The rate budget's turns write its own small item: 1 WRU each; the other writes are the refund's.
    rate_writes = count("dynamodb.UpdateItem.rateBudget")
    writes = count("dynamodb.UpdateItem") - rate_writes
    if "largestItemBytes" in requests:
        # Counted as billed (bench/stack_flows.py, WriteUnits): each write's units by the item's size before and
        # after it, the rate budget's turns included, plus the GSI entries the writes add and remove.
        write_units = count("dynamodb.WRU.table") + count("dynamodb.WRU.index")
    else:  # results from before the replay counted units: every refund write at the final item's size
        write_units = writes * wru_per_write + rate_writes
    # Every strongly consistent read (< 4 KB: 1 RRU): the starter's and each poll's read of the item.
    reads = count("dynamodb.GetItem")
    # The starter's batch duration is shared by the messages of its batch; per message, as measured.
    starter_ms = starter["durationMsMedian"] * max(1, starter["invocations"]) / max(1, flows["detail"]["messages"])
    lambda_gb_s = (math.ceil(starter_ms) + execution_polls * math.ceil(inquire["durationMsMedian"])) / 1000 * LAMBDA_GB
    common = {
        "lambdaRequests": (1 + execution_polls) * PRICES["lambdaArmPerRequest"],
        "lambdaGbSeconds": lambda_gb_s * PRICES["lambdaArmPerGbSecond"],
        "dynamodbWrites": write_units * PRICES["dynamodbPerWru"],
        "dynamodbReads": reads * PRICES["dynamodbPerRru"],
        "events": PRICES["eventbridgePerEvent"],
        "sqs": SQS_REQUESTS_PER_REFUND * PRICES["sqsPerRequest"],
    }
    express_s = math.ceil(execution_polls * (DEFAULT_INTERVAL_S + inquire["durationMsMedian"] / 1000) * 10) / 10
    standard = {"stateTransitions": transitions * PRICES["sfnStandardPerTransition"], **common}
    express = {
        "expressRequest": PRICES["sfnExpressPerRequest"],
        "expressDuration": express_s * EXPRESS_GB * PRICES["sfnExpressPerGbSecond"],
        **common,
    }
    # Not in the headline (the list): CloudWatch Logs ingestion of the function logs and, with the
    # template's Logging Level ALL, the execution log (about the size of the execution history).
    history_bytes_per_poll = (
        detail["transitions"]["12_polls"]["historyBytes"] / detail["transitions"]["12_polls"]["polls"]
    )
    logs = {
        "functionLogs": (1 + execution_polls) * inquire["logBytesPerInvocation"] / 1e9 * PRICES["logsPerGbIngested"],
        "executionLogs": polls * history_bytes_per_poll / 1e9 * PRICES["logsPerGbIngested"],
    }
    return {
        "polls": polls,
        "stateTransitions": transitions,
        "lambdaInvocations": 1 + execution_polls,
        "lambdaGbSeconds": round(lambda_gb_s, 5),
        "dynamodbWrites": writes,
        "dynamodbWruPerWrite": wru_per_write,
        "dynamodbWriteUnits": write_units,
        "dynamodbReads": reads,
        "rateBudgetWrites": rate_writes,
        "expressDurationS": express_s,
        "standardUsd": sum(standard.values()),
        "expressUsd": sum(express.values()),
        "standardBreakdown": standard,
        "expressBreakdown": express,
        "logsUsdNotInHeadline": logs,
    }


def tail_attempt_cost(tail: dict[str, Any]) -> dict[str, Any]:
    """What one long-tail attempt costs, all charges included (docs/internals.md, "Long tail")."""
    starter = tail["lambda"]["StartInquiryFunction"]
    requests = tail["requests"]["attempt"]
    # A batch's duration and request are shared by the messages of its batch; per message, as measured.
    per_message = starter["invocations"] / max(1, tail["refunds"] + tail["tailAttempts"])
    attempt_ms = starter["durationMsMedian"] * per_message
    wru_per_write = max(1, math.ceil(tail["requests"]["itemBytes"] / 1024))
    rru_per_read = max(1, math.ceil(tail["requests"]["itemBytes"] / 4096))
    writes = requests.get("dynamodb.UpdateItem", 0) + requests.get("dynamodb.PutItem", 0)
    reads = requests.get("dynamodb.GetItem", 0)
    breakdown = {
        "schedulerInvocation": PRICES["schedulerPerInvocation"],
        "sqs": SQS_REQUESTS_PER_TAIL_ATTEMPT * PRICES["sqsPerRequest"],
        "lambdaRequest": per_message * PRICES["lambdaArmPerRequest"],
        "lambdaGbSeconds": math.ceil(attempt_ms) / 1000 * LAMBDA_GB * PRICES["lambdaArmPerGbSecond"],
        "dynamodbWrites": writes * wru_per_write * PRICES["dynamodbPerWru"],
        "dynamodbReads": reads * rru_per_read * PRICES["dynamodbPerRru"],
        "functionLogs": per_message * starter["logBytesPerInvocation"] / 1e9 * PRICES["logsPerGbIngested"],
    }
    return {
        "usd": sum(breakdown.values()),
        "breakdown": breakdown,
        "requests": requests,
        "dynamodbWruPerWrite": wru_per_write,
        "starterMsPerAttempt": round(attempt_ms, 1),
        "notIncluded": "GetSecretValue ($0.05 per 10,000) only when a container's 5-minute profile cache is cold",
    }


def cost_per_refund(
    flows: dict[str, Any], rate: dict[str, Any] | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    t3, t12 = flows["transitions_3_polls"], flows["transitions_12_polls"]
    three, twelve = refund_cost(flows, 3, t3), refund_cost(flows, 12, t12)
    headline = {
        "standard_3_polls": round(three["standardUsd"], 8),
        "standard_12_polls": round(twelve["standardUsd"], 8),
        "express_3_polls": round(three["expressUsd"], 8),
        "express_12_polls": round(twelve["expressUsd"], 8),
    }
    detail = {"3_polls": three, "12_polls": twelve, "prices": PRICES}
    if rate is not None:  # RecordEveryPoll=false: the same refund with the requests the replay counted in that mode
        for name, requests in (
            ("express_12_polls_cheap", rate["detail"]["cheapRequests"]),
            ("express_12_polls_cheap_no_rate_budget", rate["detail"]["cheapNoRateBudgetRequests"]),
        ):
            cheap = refund_cost({**flows, "detail": {**flows["detail"], "requests": requests}}, 12, t12)
            headline[name] = round(cheap["expressUsd"], 8)
            detail[f"12_polls_{name.removeprefix('express_12_polls_')}"] = cheap
    return headline, detail


def scale_cost(entry: dict[str, Any], flows: dict[str, Any]) -> float:
    """Standard cost per refund at this N from the counts of the run (linearity check)."""
    detail: dict[str, Any] = entry["detail"]
    n = int(entry["n"])
    executions = max(0, detail["polls"] - detail["executionPolls"])  # = refunds that were polled at least once
    transitions = 3 * detail["executionPolls"] + executions
    per_refund = {
        "transitions": transitions * PRICES["sfnStandardPerTransition"],
        "lambda": (detail["inquireInvocations"] + detail["starterInvocations"]) * PRICES["lambdaArmPerRequest"],
        "dynamodb": (detail["polls"] + 3 * n) * PRICES["dynamodbPerWru"],
    }
    total: float = sum(per_refund.values())
    return round(total / n, 8)


def table(rows: list[list[str]]) -> str:
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def scale_target_rows(scale: list[dict[str, Any]]) -> list[list[str]]:
    """The local stack's targets (ISSUE-14 item 4), for the sizes that ran."""
    by_n = {int(s["n"]): s for s in scale}
    rows = [
        [f"starter ≥ 50 msg/s (N = {n})", str(s["starter_msgs_per_s"]), verdict(s["starter_msgs_per_s"] >= 50)]
        for n, s in sorted(by_n.items())
    ]
    rows += [
        [f"peak RSS ≤ 800 MB (N = {n})", f"{s['peak_rss_mb']} MB", verdict(s["peak_rss_mb"] <= 800)]
        for n, s in sorted(by_n.items())
    ]
    if 1000 in by_n:
        done = by_n[1000]["completion_s"]
        rows.append(["N = 1,000 completes ≤ 150 s (interval 1 s)", f"{done} s", verdict(done <= 150)])
        if 100 in by_n:
            ratio = (done / 1000) / (by_n[100]["completion_s"] / 100)
            # A refund that ended ERROR (missed polls) closed early: a faster figure that is no success.
            lost = by_n[1000]["lost"] + by_n[100]["lost"]
            shown = f"{ratio:.2f}x" + (f" ({lost} lost)" if lost else "")
            rows.append(["per-refund completion N = 1,000 ≤ 1.1x N = 100", shown, verdict(ratio <= 1.1 and not lost)])
    return rows


def readme_tables(summary: dict[str, Any]) -> str:
    d = summary["detail"]
    init, ovh, flows, cost = d["init"], d["inquiry"], d["flows"], d["cost"]
    ratios = summary["init_ratio_vs_import_floor"]
    det = summary["detection_latency_s"]
    c = summary["cost_per_refund_usd"]
    m = summary["machine"]
    parts = [
        ("Measured" if "skipped" not in summary else "Summary rebuilt")
        + f" {summary['date']} on {m['cpu']}, {m['cores']} cores, {m['memoryGb']} GB, Python {m['python']}, "
        f"Linux {m['kernel']}; " + runtime_sentence(summary),
        "",
        "### Targets",
        "",
        table(
            [
                ["target", "measured", "verdict"],
                *[
                    [
                        f"{fn} init ≤ 1.2x import floor",
                        f"{ratios[fn]}x ({init[fn]['initMs']} ms / {init['floorMs']} ms)",
                        verdict(ratios[fn] <= 1.2),
                    ]
                    for fn in ratios
                ],
                [
                    "per-inquiry overhead ≤ 0.05x official SDK",
                    f"{summary['inquiry_overhead_ratio_vs_sdk']}x ({summary['inquiry_overhead_ms']} ms"
                    f" / {summary['sdk_inquiry_overhead_ms']} ms CPU)",
                    verdict(summary["inquiry_overhead_ratio_vs_sdk"] <= 0.05),
                ],
                [
                    "≤ 3 transitions per poll",
                    str(summary["transitions_per_poll"]),
                    verdict(summary["transitions_per_poll"] <= 3),
                ],
                [
                    "Standard ≤ $0.00095 per refund at 12 polls",
                    f"${c['standard_12_polls']:.6f}",
                    verdict(c["standard_12_polls"] <= 0.00095),
                ],
                [
                    "Express ≤ $0.00007 per refund at 12 polls (5 s interval)",
                    f"${c['express_12_polls']:.6f}",
                    verdict(c["express_12_polls"] <= 0.00007),
                ],
                [
                    "detection ≤ interval + 0.5 s (5 s)",
                    f"median {det['interval_5s']} s, max {flows['detection']['interval_5s']['maxS']} s",
                    verdict(det["interval_5s"] <= 5.5),
                ],
                [
                    "detection ≤ interval + 0.5 s (1 s)",
                    f"median {det['interval_1s']} s, max {flows['detection']['interval_1s']['maxS']} s",
                    verdict(det["interval_1s"] <= 1.5),
                ],
                [
                    "notification detection ≤ 1.0 s (push → final, median)",
                    f"{summary['notification_detection_s']} s",
                    verdict(summary["notification_detection_s"] <= 1.0),
                ],
                [
                    "no poll after the notification (refund final 20 s after its first poll)",
                    f"{summary['polls_after_notification']} polls after; {summary['polls_saved_per_refund']:g} saved",
                    verdict(summary["polls_after_notification"] == 0),
                ],
                *[[f"lost = 0 at N = {s['n']}", str(s["lost"]), verdict(s["lost"] == 0)] for s in summary["scale"]],
                *scale_target_rows(summary["scale"]),
                *[
                    [f"N = {f['n']:,} completes with 0 lost", f"did not complete: {f['outcome']}", verdict(False)]
                    for f in summary.get("scale_not_completed", [])
                ],
                *rate_rows(summary),
            ]
        ),
        "",
        "### Cold init (median of fresh processes)",
        "",
        table(
            [
                ["", "import", "first use (profile + keys)", "init", "÷ floor"],
                ["floor: boto3 + requests + cryptography", f"{init['floorMs']} ms", "-", f"{init['floorMs']} ms", "1"],
                *[
                    [
                        fn,
                        f"{init[fn]['importMs']} ms",
                        f"{init[fn]['firstUseMs']} ms",
                        f"{init[fn]['initMs']} ms",
                        f"{ratios[fn]}",
                    ]
                    for fn in ratios
                ],
            ]
        ),
        "",
        "Self import time by package, `-X importtime`, one process"
        " (ms; `app` includes the boto3 clients its module creates):",
        "",
        table(
            [["process", "packages"]]
            + [[k, ", ".join(f"{p} {ms}" for p, ms in v.items())] for k, v in init["importtimeSelfMsByPackage"].items()]
        ),
        "",
        "### Per-inquiry CPU (client process only; sandbox in another process)",
        "",
        table(
            [
                ["client", "calls", "CPU median", "CPU p90", "wall median"],
                *[
                    [name, str(v["calls"]), f"{v['cpuMsMedian']} ms", f"{v['cpuMsP90']} ms", f"{v['wallMsMedian']} ms"]
                    for name, v in (("ours (refund_core Antom)", ovh["ours"]), ("official SDK 1.7.1", ovh["sdk"]))
                ],
            ]
        ),
        "",
        "### State transitions (execution histories)",
        "",
        table(
            [
                ["refund", "polls (starter + execution)", "states entered", "by state"],
                *[
                    [
                        name,
                        f"{t['polls']} (1 + {t['executionPolls']})",
                        str(t["statesEntered"]),
                        ", ".join(f"{k} {v}" for k, v in t["enteredByState"].items()),
                    ]
                    for name, t in (
                        ("3 polls", flows["transitions"]["3_polls"]),
                        ("12 polls", flows["transitions"]["12_polls"]),
                    )
                ],
            ]
        ),
        "",
        "### Cost per refund (USD)",
        "",
        table(
            [
                [
                    "",
                    "Standard",
                    "Express",
                    "Lambda inv.",
                    "DynamoDB writes (write units, rate turns and GSI entries in)",
                    "Express billed s",
                    "logs (not in headline)",
                ],
                *[
                    [
                        k.replace("_polls", " polls").replace("_", " "),
                        f"{v['standardUsd']:.7f}",
                        f"{v['expressUsd']:.7f}",
                        str(v["lambdaInvocations"]),
                        f"{v['dynamodbWrites']:g} ({v.get('dynamodbWriteUnits', 0):g} WRU)",
                        f"{v['expressDurationS']}",
                        f"{sum(v['logsUsdNotInHeadline'].values()):.7f}",
                    ]
                    for k, v in cost.items()
                    if k not in ("prices", "long_tail")
                ],
            ]
        ),
        "",
        "### Long tail (docs/long-tail.md)",
        "",
        f"{cost['long_tail']['tailAttempts']} tail attempts of {cost['long_tail']['refunds']} refunds"
        " (`bench/long_tail.py`, time-compressed); USD, all charges but a cold profile cache's GetSecretValue.",
        "",
        table(
            [
                ["per tail attempt", "refund final after 24 h, Standard", "Express", "attempt's requests"],
                [
                    f"{summary['long_tail_cost_per_attempt_usd']:.7f}",
                    f"{summary['cost_per_refund_usd']['standard_tail_24h']:.7f}",
                    f"{summary['cost_per_refund_usd']['express_tail_24h']:.7f}",
                    ", ".join(f"{k} {v}" for k, v in sorted(cost["long_tail"]["requests"].items())),
                ],
            ]
        ),
        "",
        "### Detection latency (flip at the sandbox → stored item final)",
        "",
        table(
            [
                ["interval", "median", "max", "of which recording (median)", "refunds"],
                *[
                    [
                        k.split("_")[1],
                        f"{v['medianS']} s",
                        f"{v['maxS']} s",
                        f"{v['recordMedianS']} s",
                        str(len(v["rows"])),
                    ]
                    for k, v in flows["detection"].items()
                ],
            ]
        ),
        "",
        "### Scale (interval 1 s, one local stack, sent at once)",
        "",
        table(
            [
                ["N", "starter msg/s", "completion", "peak RSS", "lost", "polls", "Standard $/refund (counts)"],
                *[
                    [
                        str(s["n"]),
                        str(s["starter_msgs_per_s"]),
                        f"{s['completion_s']} s",
                        f"{s['peak_rss_mb']} MB",
                        str(s["lost"]),
                        str(s["detail"]["polls"]),
                        f"{s['detail']['standardUsdPerRefund']:.7f}",
                    ]
                    for s in summary["scale"]
                ],
            ]
        ),
    ]
    return "\n".join(parts)


def rate_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Target rows of the rate budget and the cheap Express mode (when bench.rate_budget ran)."""
    c, rate = summary["cost_per_refund_usd"], summary["detail"].get("rate")
    if "express_12_polls_cheap" not in c or rate is None:
        return []
    observed, budget = summary["provider_rate_max_observed_per_s"], summary["provider_rate_budget_per_s"]
    return [
        [
            f"provider inquiries ≤ budget {budget}/s ({summary['provider_rate_refunds']} refunds at once)",
            f"{observed}/s per clock second ({rate['maxPerSlidingSecond']} sliding), {rate['refused']} refused by"
            f" the provider, {rate['deferredPolls']} polls deferred",
            verdict(observed <= budget and rate["refused"] == 0),
        ],
        [
            f"every refund final with the budget on ({summary['provider_rate_refunds']} refunds at once)",
            f"{rate['lost']} not final"
            + "".join(f"; {count} ERROR: {reason}" for reason, count in list(rate.get("errorReasons", {}).items())[:2]),
            verdict(rate["lost"] == 0),
        ],
        [
            "Express ≤ $0.00007 per refund at 12 polls, RecordEveryPoll=false (rate budget on)",
            f"${c['express_12_polls_cheap']:.7f}"
            f" (without the rate budget ${c['express_12_polls_cheap_no_rate_budget']:.7f})",
            verdict(c["express_12_polls_cheap"] <= 0.00007),
        ],
    ]


def update_readme(text: str) -> None:
    path = BENCH / "README.md"
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    current = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{begin}\n{text}\n{end}", current), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="100,1000,5000")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated: init,inquiry,flows,notifications,scale,longtail,rate (reuse old results)",
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    started = time.monotonic()
    sizes = [int(n) for n in args.scale.split(",") if n]
    if "init" not in skip:
        run_module("init_time")
    if "inquiry" not in skip:
        run_module("inquiry_overhead")
    if "flows" not in skip:
        run_module("stack_flows")
    if "notifications" not in skip:
        run_module("notifications")
    if "scale" not in skip:
        for n in sizes:
            run_module("scale", str(n))
    if "rate" not in skip:
        run_module("rate_budget")  # BENCH_RATE_N refunds (default 1,000) within a 20/s provider rate budget
    if "longtail" not in skip:
        run_module("long_tail")
    init = read_json(RESULTS / "init_time.json")
    inquiry = read_json(RESULTS / "inquiry_overhead.json")
    flows = read_json(RESULTS / "stack_flows.json")
    notifications = read_json(RESULTS / "notifications.json")
    rate_path = RESULTS / "rate_budget.json"
    rate = read_json(rate_path) if rate_path.exists() else None
    headline, cost_detail = cost_per_refund(flows, rate)
    attempt = tail_attempt_cost(read_json(RESULTS / "long_tail.json"))
    tail_24h = TAIL_ATTEMPTS_FINAL_AFTER_24H * attempt["usd"]
    twelve = cost_detail["12_polls"]
    headline["standard_tail_24h"] = round(twelve["standardUsd"] + tail_24h, 8)
    headline["express_tail_24h"] = round(twelve["expressUsd"] + tail_24h, 8)
    measured = read_json(RESULTS / "long_tail.json")
    cost_detail["long_tail"] = {
        **attempt,
        "attemptsFinalAfter24h": TAIL_ATTEMPTS_FINAL_AFTER_24H,
        "tailAttempts": measured["tailAttempts"],
        "refunds": measured["refunds"],
    }
    scale, not_completed = [], []
    for n in sizes:
        if not (RESULTS / f"scale_{n}.json").exists() and (RESULTS / f"scale_{n}.failed.json").exists():
            not_completed.append(read_json(RESULTS / f"scale_{n}.failed.json"))  # a run that wrote no figures
            continue
        entry = read_json(RESULTS / f"scale_{n}.json")
        entry["detail"]["standardUsdPerRefund"] = scale_cost(entry, flows)
        scale.append(entry)
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).strftime(DATE),
        "machine": machine(),
        "runtimeS": round(time.monotonic() - started),
        **parts_runtime(skip, sizes),
        **({"scale_not_completed": not_completed} if not_completed else {}),
        "init_ratio_vs_import_floor": init["init_ratio_vs_import_floor"],
        "inquiry_overhead_ms": inquiry["inquiry_overhead_ms"],
        "sdk_inquiry_overhead_ms": inquiry["sdk_inquiry_overhead_ms"],
        "inquiry_overhead_ratio_vs_sdk": inquiry["inquiry_overhead_ratio_vs_sdk"],
        "transitions_per_poll": flows["transitions_per_poll"],
        "transitions_3_polls": flows["transitions_3_polls"],
        "transitions_12_polls": flows["transitions_12_polls"],
        "cost_per_refund_usd": headline,
        "long_tail_cost_per_attempt_usd": round(attempt["usd"], 9),
        "detection_latency_s": flows["detection_latency_s"],
        "notification_detection_s": notifications["notification_detection_s"],
        "polls_saved_per_refund": notifications["polls_saved_per_refund"],
        "polls_after_notification": notifications["polls_after_notification"],
        "scale": [{k: v for k, v in s.items() if k != "detail"} for s in scale],
        **(
            {
                "provider_rate_max_observed_per_s": rate["provider_rate_max_observed_per_s"],
                "provider_rate_budget_per_s": rate["provider_rate_budget_per_s"],
                "provider_rate_refunds": rate["n"],
            }
            if rate
            else {}
        ),
        "detail": {
            "init": init["detail"],
            "inquiry": inquiry["detail"],
            "flows": flows["detail"],
            "cost": cost_detail,
            "notifications": notifications["detail"],
            "scale": {str(s["n"]): s["detail"] for s in scale},
            "rate": rate["detail"] if rate else None,
        },
    }
    write_json(RESULTS / "summary.json", summary)
    readme_summary = {**summary, "scale": scale}
    update_readme(readme_tables(readme_summary))
    log(f"summary written to {RESULTS / 'summary.json'}")


if __name__ == "__main__":
    main()
