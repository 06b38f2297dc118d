"""N refunds sent at once through one local stack (interval 1 s): starter throughput, completion, memory, losses.

``python -m bench.scale N`` starts a fresh local stack in this process, sends N messages (a mix of lifecycles)
with SendMessageBatch as fast as it can, then scans the table until every item's window is closed or a time
limit passes. The whole stack's RSS (this process, which runs moto, the sandbox and the Step Functions
interpreter, plus every function worker process) is sampled from /proc every 0.25 s.
Writes bench/results/scale_<N>.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bench.common import RESULTS, log, process_tree_rss_mb, write_json
from refund_poller.devstack import DevStack

MIX = ("processing2-success", "success", "processing1-fail", "notfound1-success", "processing2s-success")
TERMINAL = {"SUCCESS", "FAIL", "UNRESOLVED", "NOT_FOUND"}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> None:
    n = int(sys.argv[1])
    time_limit = 60 + n * 0.5
    run = str(int(time.time()))[-6:]
    refunds = [f"{MIX[i % len(MIX)]}--s{n}-{i}-{run}" for i in range(n)]
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process_tree_rss_mb())
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp, DevStack(Path(tmp)) as stack:
        sqs, url = stack.client("sqs"), str(stack.outputs["InquiryQueueUrl"])
        ddb, table = stack.client("dynamodb"), str(stack.outputs["ResultsTableName"])
        started = time.time()
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
        items: dict[str, dict[str, Any]] = {}
        while time.time() - started < time_limit:
            items = {}
            kwargs: dict[str, Any] = {"TableName": table}
            while True:
                try:
                    page = ddb.scan(**kwargs)
                except ClientError:  # moto's Scan can trip over items written meanwhile (HTTP 500): read again
                    time.sleep(0.2)
                    continue
                for raw in page["Items"]:
                    items[raw["pk"]["S"]] = raw
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            closed = [i for i in items.values() if i.get("pollingState", {}).get("S") == "IDLE"]
            if len(closed) >= n:
                break
            time.sleep(0.5)
        completion_s = time.time() - started
        dlq = sqs.get_queue_attributes(
            QueueUrl=str(stack.outputs.get("InquiryDLQUrl", "")) or url.replace("-inquiries", "-inquiries-dlq"),
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]["ApproximateNumberOfMessages"]
        inquire_logs = stack.cloud.function_logs("InquireFunction")
        starter_logs = stack.cloud.function_logs("StartInquiryFunction")
    stop.set()
    sampler.join()
    done = [
        i
        for i in items.values()
        if i.get("pollingState", {}).get("S") == "IDLE" and i.get("status", {}).get("S") in TERMINAL
    ]
    first_polls = [epoch(i["firstPollAt"]["S"]) for i in items.values() if "firstPollAt" in i]
    starter_s = (max(first_polls) - started) if len(first_polls) >= n else float("nan")
    polls = sum(int(i.get("polls", {}).get("N", 0)) for i in items.values())
    result = {
        "n": n,
        "starter_msgs_per_s": round(n / starter_s, 1) if starter_s == starter_s else 0.0,
        "completion_s": round(completion_s, 1),
        "peak_rss_mb": round(peak[0]),
        "lost": n - len(done),
        "detail": {
            "sendS": round(sent_s, 2),
            "starterS": round(starter_s, 2),
            "polls": polls,
            "executionPolls": polls - len(first_polls),
            "inquireInvocations": inquire_logs.count("REPORT RequestId"),
            "starterInvocations": starter_logs.count("REPORT RequestId"),
            "dlqMessages": int(dlq),
            "statuses": {
                s: sum(1 for i in items.values() if i.get("status", {}).get("S") == s)
                for s in sorted({i.get("status", {}).get("S", "?") for i in items.values()})
            },
            "timeLimitS": time_limit,
        },
    }
    write_json(RESULTS / f"scale_{n}.json", result)
    log(f"scale {n}: {result['starter_msgs_per_s']} msg/s, done in {completion_s:.1f} s, lost {result['lost']}")


if __name__ == "__main__":
    main()
