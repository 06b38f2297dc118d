"""N refunds sent at once through one local stack (interval 1 s): starter throughput, completion, memory, losses.

``python -m bench.scale N`` starts a fresh local stack in this process, sends N messages (a mix of lifecycles)
with SendMessageBatch as fast as it can, then scans the table until every item's window is closed or a time
limit passes. The provider rate budget is off (``ProviderRateLimit=0``): every refund here is one merchant's,
and a budget of 20 inquiries/s would cap the stack at 20 polls/s by design (bench/rate_budget.py measures the
budget). The whole stack's RSS (this process, which runs moto, the sandbox and the Step Functions
interpreter, plus every function worker process) is sampled from /proc every 0.25 s by a process of its own.
Writes bench/results/scale_<N>.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, PeakRss, error_reasons, log, scan_pages, write_json
from refund_poller.devstack import DevStack

MIX = ("processing2-success", "success", "processing1-fail", "notfound1-success", "processing2s-success")
TERMINAL = {"SUCCESS", "FAIL", "UNRESOLVED", "NOT_FOUND"}
# A Scan costs moto a copy of every item: the watcher scans every WATCH_SECONDS_PER_ITEM x N seconds (at least
# every 0.5 s), a steady share of the stack whatever N; completion is read from the items' closing writes.
WATCH_SECONDS_PER_ITEM = 0.005


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def scan_all(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    """Every item of the table by key."""
    return {raw["pk"]["S"]: raw for page in scan_pages(ddb, TableName=table) for raw in page["Items"]}


def closed_count(ddb: Any, table: str) -> int:
    """How many items have their polling window closed. Select COUNT: the watcher should not cost the stack
    it watches the serialisation of thousands of items twice a second."""
    pages = scan_pages(
        ddb,
        TableName=table,
        Select="COUNT",
        FilterExpression="pollingState = :idle",
        ExpressionAttributeValues={":idle": {"S": "IDLE"}},
    )
    return sum(int(page["Count"]) for page in pages)


def cpu_seconds() -> tuple[float, float]:
    """CPU time (user + system) of this process and of its reaped children (the function workers)."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def threads_and_maps() -> tuple[int, int]:
    """This process's OS threads and memory maps (moto's interpreter runs executions on threads here)."""
    with open("/proc/self/status", encoding="ascii") as status:
        threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    with open("/proc/self/maps", encoding="ascii") as maps:
        return threads, sum(1 for _ in maps)


def main() -> None:
    n = int(sys.argv[1])
    time_limit = 60 + n * 0.5
    run = str(int(time.time()))[-6:]
    refunds = [f"{MIX[i % len(MIX)]}--s{n}-{i}-{run}" for i in range(n)]
    watch_every = max(0.5, n * WATCH_SECONDS_PER_ITEM)
    overrides = {"ProviderRateLimit": "0"}
    with (
        PeakRss() as peak,
        tempfile.TemporaryDirectory() as tmp,
        DevStack(Path(tmp), parameter_overrides=overrides) as stack,
    ):
        sqs, url = stack.client("sqs"), str(stack.outputs["InquiryQueueUrl"])
        ddb, table = stack.client("dynamodb"), str(stack.outputs["ResultsTableName"])
        started = time.time()
        cpu_before = cpu_seconds()
        for first in range(0, n, 10):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps(
                        {
                            "provider": "antom",
                            "refundRequestId": refund,
                            "polling": {"intervalSeconds": 1, "maxDurationSeconds": 60},
                        }
                    ),
                }
                for i, refund in enumerate(refunds[first : first + 10])
            ]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        sent_s = time.time() - started
        most_threads, most_maps = threads_and_maps()
        while time.time() - started < time_limit:
            if closed_count(ddb, table) >= n:
                break
            threads, maps = threads_and_maps()
            most_threads, most_maps = max(most_threads, threads), max(most_maps, maps)
            time.sleep(watch_every)
        watched_s = time.time() - started
        items = scan_all(ddb, table)
        dlq = sqs.get_queue_attributes(
            QueueUrl=str(stack.outputs.get("InquiryDLQUrl", "")) or url.replace("-inquiries", "-inquiries-dlq"),
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]["ApproximateNumberOfMessages"]
        inquire_logs = stack.cloud.function_logs("InquireFunction")
        starter_logs = stack.cloud.function_logs("StartInquiryFunction")
    cpu_after = cpu_seconds()  # the workers are reaped once the stack has stopped (and so is the RSS sampler)
    workers_cpu_s = cpu_after[1] - cpu_before[1] - peak.cpu_s
    done = [
        i
        for i in items.values()
        if i.get("pollingState", {}).get("S") == "IDLE" and i.get("status", {}).get("S") in TERMINAL
    ]
    first_polls = [epoch(i["firstPollAt"]["S"]) for i in items.values() if "firstPollAt" in i]
    # Every refund of the mix closes at a poll: its last poll's write is the closing one.
    closes = [epoch(i["lastPollAt"]["S"]) for i in done if "lastPollAt" in i]
    completion_s = (max(closes) - started) if len(done) == n and len(closes) == n else watched_s
    starter_s = (max(first_polls) - started) if len(first_polls) >= n else float("nan")
    polls = sum(int(i.get("polls", {}).get("N", 0)) for i in items.values())
    result = {
        "n": n,
        "starter_msgs_per_s": round(n / starter_s, 1) if starter_s == starter_s else 0.0,
        "completion_s": round(completion_s, 1),
        "peak_rss_mb": round(peak.mb),
        "lost": n - len(done),
        "detail": {
            "sendS": round(sent_s, 2),
            "watchedS": round(watched_s, 1),
            "watchEveryS": watch_every,
            "providerRateLimit": overrides["ProviderRateLimit"],
            "starterS": round(starter_s, 2),
            "polls": polls,
            "executionPolls": polls - len(first_polls),
            "inquireInvocations": inquire_logs.count("REPORT RequestId"),
            "starterInvocations": starter_logs.count("REPORT RequestId"),
            "inquireColdStarts": inquire_logs.count("INIT_START"),
            "starterColdStarts": starter_logs.count("INIT_START"),
            "timeouts": (inquire_logs + starter_logs).count("Status: timeout"),
            "dlqMessages": int(dlq),
            "statuses": {
                s: sum(1 for i in items.values() if i.get("status", {}).get("S") == s)
                for s in sorted({i.get("status", {}).get("S", "?") for i in items.values()})
            },
            "errorReasons": error_reasons(items.values()),
            "timeLimitS": time_limit,
            # CPU is a steadier yardstick than wall time on a shared machine: the stack's own process (moto,
            # Step Functions interpreter, sandbox, SQS pollers) and the function workers, per poll.
            "stackCpuMsPerPoll": round((cpu_after[0] - cpu_before[0]) * 1000 / max(polls, 1), 2),
            "workersCpuMsPerPoll": round(workers_cpu_s * 1000 / max(polls, 1), 2),
            "loadAverage1m": round(os.getloadavg()[0], 1),
            "stackPeakRssMb": round(peak.root_mb),
            # A thread moto's interpreter kept would hold two maps for good (local/moto_threads.py); Linux allows
            # 65,530 per process by default.
            "stackMostThreads": most_threads,
            "stackMostMemoryMaps": most_maps,
        },
    }
    write_json(RESULTS / f"scale_{n}.json", result)
    log(f"scale {n}: {result['starter_msgs_per_s']} msg/s, done in {completion_s:.1f} s, lost {result['lost']}")


if __name__ == "__main__":
    main()
