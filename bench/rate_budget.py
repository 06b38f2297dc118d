"""The provider rate budget at scale, and what the cheap Express mode (RecordEveryPoll=false) asks of AWS.

``python -m bench.rate_budget`` starts a fresh local stack with ``ProviderRateLimit=20`` and the sandbox refusing
more than 20 inquiries a second per merchant (the provider's limit set to the budget), sends N refunds at once
(``BENCH_RATE_N``, default 1,000; ``processing1-success``: two inquiries each; interval 1 s, window 900 s) and waits
until every window is closed. The sandbox counts every inquiry at arrival: ``provider_rate_max_observed_per_s`` is
the most in one second of the clock (beside it the most in any sliding one-second span, which also holds the
sandbox's own lateness in taking requests in: it shares a process with moto), ``refused`` what it had to refuse.

Then the service code is replayed here with counting hooks (as ``stack_flows`` does) with RECORD_EVERY_POLL=false,
with and without the rate budget, for the cost model's ``express_12_polls_cheap``.
Writes bench/results/rate_budget.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bench.common import RESULTS, error_reasons, log, write_json
from bench.scale import TERMINAL
from bench.stack_flows import count_requests
from refund_poller.devstack import DevStack
from refund_poller.sandbox.traffic import TrafficConfig

# The budget under test (BENCH_RATE_BUDGET; 0 runs the same load without one, for comparison).
BUDGET = int(os.environ.get("BENCH_RATE_BUDGET", "20"))


def closed_items(stack: DevStack) -> dict[str, dict[str, Any]]:
    ddb, table = stack.client("dynamodb"), str(stack.outputs["ResultsTableName"])
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for raw in page["Items"]:
            items[raw["pk"]["S"]] = raw
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main() -> None:
    n = int(os.environ.get("BENCH_RATE_N", "1000"))
    run = str(int(time.time()))[-6:]
    refunds = [f"processing1-success--rate{i}-{run}" for i in range(n)]
    keys = {f"antom#default#rr:{refund}" for refund in refunds}
    # The budget alone needs 2 N / 20 s; the local stack's own pace (bench.scale) and the budget's DynamoDB round
    # trips (moto answers in hundreds of milliseconds under this load) come on top.
    time_limit = 300 + n * 1.2
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevStack(Path(tmp), parameter_overrides={"ProviderRateLimit": str(BUDGET)}) as stack,
    ):
        stack.sandbox.set_traffic(TrafficConfig(limit_per_second=BUDGET or None))
        sqs, url = stack.client("sqs"), str(stack.outputs["InquiryQueueUrl"])
        started = time.time()
        polling = {"intervalSeconds": 1, "maxDurationSeconds": 900}
        for first in range(0, n, 10):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"provider": "antom", "refundRequestId": r, "polling": polling}),
                }
                for i, r in enumerate(refunds[first : first + 10])
            ]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        items: dict[str, dict[str, Any]] = {}
        while time.time() - started < time_limit:
            try:
                items = {k: v for k, v in closed_items(stack).items() if k in keys}
            except ClientError:  # moto's Scan can trip over items written meanwhile (HTTP 500): read again
                time.sleep(0.5)
                continue
            if sum(1 for i in items.values() if i.get("pollingState", {}).get("S") == "IDLE") >= n:
                break
            time.sleep(1.0)
        completion_s = time.time() - started
        logs = stack.cloud.function_logs("InquireFunction") + stack.cloud.function_logs("StartInquiryFunction")
        deferred = logs.count("over the provider rate budget")
        [(caller, traffic)] = [(k, v) for k, v in stack.sandbox.traffic()["callers"].items() if k.startswith("antom/")]
        cheap = count_requests(stack, {"RECORD_EVERY_POLL": "false"}, tag="cheap")
        cheap_free = count_requests(stack, {"RECORD_EVERY_POLL": "false", "PROVIDER_RATE_LIMIT": "0"}, tag="cheapfree")
    statuses: dict[str, int] = {}
    for item in items.values():
        status = item.get("status", {}).get("S", "?")
        statuses[status] = statuses.get(status, 0) + 1
    done = sum(
        1 for i in items.values() if i.get("pollingState", {}).get("S") == "IDLE" and i["status"]["S"] in TERMINAL
    )
    result = {
        "n": n,
        "provider_rate_budget_per_s": BUDGET,
        "provider_rate_max_observed_per_s": traffic["maxPerCalendarSecond"],
        "detail": {
            "caller": caller,
            "maxPerSlidingSecond": traffic["maxPerSecond"],
            "inquiries": traffic["requests"],
            "refused": traffic["refused"],
            "deferredPolls": deferred,
            "completionS": round(completion_s, 1),
            "lost": n - done,
            "statuses": statuses,
            "errorReasons": error_reasons(items.values()),
            "cheapRequests": cheap,
            "cheapNoRateBudgetRequests": cheap_free,
        },
    }
    write_json(RESULTS / "rate_budget.json", result)
    log(
        f"rate budget {BUDGET}/s, N = {n}: max {traffic['maxPerCalendarSecond']}/s per clock second "
        f"({traffic['maxPerSecond']} sliding), {traffic['refused']} refused, {deferred} polls deferred,"
        f" lost {n - done}, {completion_s:.0f} s"
    )


if __name__ == "__main__":
    main()
