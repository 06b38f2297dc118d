"""Transitions per poll, what one refund costs in requests, and detection latency, on one local stack.

All refunds are sent at once (one stack, default template parameters, per-message polling overrides):

- ``processing2-success`` (3 polls) and ``processing`` refunds with interval 1 s and 12/13 s windows (the one that
  gave 12 polls is used; ``processing11-success`` is the fallback with exactly 12): their execution histories
  give the *StateEntered counts (Standard bills one transition per state entered) and the Express duration;
- ``processing<N>s-success`` refunds at interval 5 s and 1 s: the sandbox turns them final N seconds after their
  first poll (sandbox ``firstPollAt`` + N); the table is scanned every ~50 ms to see when the stored item turns
  final. Latency = seen final - flip. The sandbox's ``finalAt`` (its first final answer) splits it into waiting
  for the next poll and recording it.

The functions' REPORT lines give Lambda durations and memory; a replay of the same service code in this process,
with counting hooks on its boto3 clients, gives the AWS requests per starter and per poll (DynamoDB reads and
writes, events). Writes bench/results/stack_flows.json.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import RESULTS, dynamodb_item_size, log, median, scan_pages, write_json
from refund_core.store import RATE_PREFIX
from refund_poller.cli.timeline import history as execution_history
from refund_poller.devstack import DevStack
from refund_poller.local.server import FAKE_CREDENTIALS, REGION

RUN = str(int(time.time()))[-6:]
T3 = f"processing2-success--t3-{RUN}"
T12 = {12: f"processing--t12w12-{RUN}", 13: f"processing--t12w13-{RUN}"}
T12_FALLBACK = f"processing11-success--t12s-{RUN}"
DETECT = {
    5: [f"processing{n}s-success--d5-{n}-{RUN}" for n in (6, 7, 8, 9, 11, 12, 13, 14)],
    1: [f"processing{n}s-success--d1-{n}-{RUN}" for n in (2, 3, 4, 5, 6, 7, 8, 9)],
}
REPORT = re.compile(
    r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms\tBilled Duration: (\d+) ms.*?Max Memory Used: (\S+) MB"
)
INIT = re.compile(r"Init Duration: ([\d.]+) ms")


def message(refund: str, interval: int, window: int) -> dict[str, Any]:
    return {
        "provider": "antom",
        "refundRequestId": refund,
        "correlationId": f"bench-{refund}",
        "polling": {"intervalSeconds": interval, "maxDurationSeconds": window},
    }


def send(stack: DevStack, messages: list[dict[str, Any]]) -> None:
    sqs, url = stack.client("sqs"), str(stack.outputs["InquiryQueueUrl"])
    for start in range(0, len(messages), 10):
        entries = [{"Id": str(i), "MessageBody": json.dumps(m)} for i, m in enumerate(messages[start : start + 10])]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def scan(stack: DevStack) -> dict[str, dict[str, Any]]:
    ddb, table = stack.client("dynamodb"), str(stack.outputs["ResultsTableName"])
    pages = scan_pages(ddb, TableName=table, ConsistentRead=True)
    return {raw["pk"]["S"]: raw for page in pages for raw in page["Items"]}


def sandbox_refund(stack: DevStack, refund: str) -> dict[str, Any]:
    url = f"{stack.sandbox.base_url}/_sandbox/refunds/antom/{refund}"
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310  # loopback admin endpoint
        document: dict[str, Any] = json.loads(answer.read())
    return document


def history(stack: DevStack, arn: str) -> list[dict[str, Any]]:
    return execution_history(stack.client("stepfunctions"), arn)


def execution_facts(stack: DevStack, item: dict[str, Any]) -> dict[str, Any]:
    events = history(stack, item["executionArn"]["S"])
    entered = Counter(
        event["stateEnteredEventDetails"]["name"] for event in events if event["type"].endswith("StateEntered")
    )
    stamps = [event["timestamp"].timestamp() for event in events]
    history_bytes = len(json.dumps(events, default=str).encode())
    polls = int(item["polls"]["N"])
    return {
        "polls": polls,
        "executionPolls": polls - 1,
        "statesEntered": sum(entered.values()),
        "enteredByState": dict(entered),
        "durationS": round(max(stamps) - min(stamps), 3),
        "historyBytes": history_bytes,
        "status": item["status"]["S"],
    }


def reports(stack: DevStack, logical_id: str) -> dict[str, Any]:
    text = stack.cloud.function_logs(logical_id)
    durations: list[float] = []
    warm: list[float] = []
    billed: list[int] = []
    memory: list[int] = []
    inits: list[float] = []
    for line in text.splitlines():
        found = REPORT.search(line)
        if not found:
            continue
        durations.append(float(found.group(1)))
        billed.append(int(found.group(2)))
        if found.group(3) != "-":
            memory.append(int(found.group(3)))
        init = INIT.search(line)
        if init:
            inits.append(float(init.group(1)))
        else:
            warm.append(float(found.group(1)))
    return {
        "invocations": len(durations),
        "billedMsMedianWarm": median(b for b, d in zip(billed, durations, strict=True) if d in warm),
        "durationMsMedian": round(median(warm), 2),
        "durationMsP90": round(sorted(durations)[int(0.9 * (len(durations) - 1))], 2) if durations else None,
        "maxMemoryUsedMb": max(memory) if memory else None,
        "initDurationMsMedian": round(median(inits), 1) if inits else None,
        "coldStarts": len(inits),
        "logBytesPerInvocation": round(len(text.encode()) / max(1, len(durations))),
    }


# Among the UpdateItems counted: those on the rate budget's schedule item.
RATE_BUDGET_WRITES = "dynamodb.UpdateItem.rateBudget"
# Write request units billed, by DynamoDB's rules (see WriteUnits): the table's, and the secondary indexes'.
TABLE_WRUS = "dynamodb.WRU.table"
INDEX_WRUS = "dynamodb.WRU.index"
# The results table's sparse GSIs (template.yaml), by their key attributes: KEYS_ONLY, so an entry is < 1 KB.
INDEX_KEYS = (("refundIdKey",), ("pendingShard", "pendingSince"))


class WriteUnits:
    """Write request units of each UpdateItem, as DynamoDB bills them, from the item before and after the write.

    A write is billed per started 1 KB of the larger of the item's size before and after it (a failed condition
    included: it is billed on the item as it is), and each GSI whose entry the write adds or removes costs one
    more write (two when the entry's key changes)
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html,
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html, "Provisioned throughput
    considerations"). The item's images come from the writes' own answers (ALL_NEW, or ALL_OLD on a failed
    condition); a key's first image is read with a client of its own, not counted.
    """

    def __init__(self, reader: Any, table: str, calls: Counter[str]) -> None:
        self._reader, self._table, self._calls = reader, table, calls
        self._images: dict[str, dict[str, Any]] = {}
        self._pending: list[str] = []
        self.largest_item_bytes = 0

    def before(self, params: dict[str, Any], **_: Any) -> None:
        key = str(params["Key"]["pk"]["S"])
        if key not in self._images:
            answer = self._reader.get_item(TableName=self._table, Key=params["Key"], ConsistentRead=True)
            self._images[key] = answer.get("Item", {})
        self._pending.append(key)

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        key = self._pending.pop(0)
        old = self._images[key]
        failed = "Error" in parsed
        new = old if failed else parsed.get("Attributes", {})
        largest = max(dynamodb_item_size(old), dynamodb_item_size(new))
        self.largest_item_bytes = max(self.largest_item_bytes, largest)
        self._calls[TABLE_WRUS] += max(1, math.ceil(largest / 1024))
        for names in INDEX_KEYS:
            was = tuple(json.dumps(old.get(n), sort_keys=True) for n in names) if names[0] in old else None
            now = tuple(json.dumps(new.get(n), sort_keys=True) for n in names) if names[0] in new else None
            if was != now:
                self._calls[INDEX_WRUS] += (was is not None) + (now is not None)
        self._images[key] = new


def count_requests(stack: DevStack, settings: dict[str, str] | None = None, tag: str = "count") -> dict[str, Any]:
    """Replay the starter's and the poller's service code here, counting each AWS request it makes.

    ``settings``: environment variables that differ from the function's (e.g. RECORD_EVERY_POLL=false).
    """
    config = stack.client("lambda").get_function_configuration(
        FunctionName=stack.cloud.function_name("InquireFunction")
    )
    os.environ.update(config["Environment"]["Variables"])
    os.environ.update(settings or {})
    os.environ["AWS_ENDPOINT_URL"] = stack.cloud.endpoint_url
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_ACCESS_KEY_ID"] = FAKE_CREDENTIALS["aws_access_key_id"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = FAKE_CREDENTIALS["aws_secret_access_key"]
    from refund_core.aws.wiring import service_from_environment
    from refund_core.validation import parse_message

    service = service_from_environment()
    calls: Counter[str] = Counter()

    def hook(**kwargs: Any) -> None:
        calls[kwargs["event_name"].split(".", 1)[1]] += 1

    def rate_turn(params: dict[str, Any], **_: Any) -> None:
        # The rate budget's writes go to its own small item (1 WRU whatever the refund item's size).
        if str(params.get("Key", {}).get("pk", {}).get("S", "")).startswith(RATE_PREFIX):
            calls[RATE_BUDGET_WRITES] += 1

    for client in (service.store._client, service.events._client):  # type: ignore[attr-defined]
        client.meta.events.register("before-call.*.*", hook)
    service.store._client.meta.events.register("provide-client-params.dynamodb.UpdateItem", rate_turn)
    units = WriteUnits(stack.client("dynamodb"), str(stack.outputs["ResultsTableName"]), calls)
    service.store._client.meta.events.register("provide-client-params.dynamodb.UpdateItem", units.before)
    service.store._client.meta.events.register("after-call.dynamodb.UpdateItem", units.after)

    class Executions:
        def start(self, name: str, state: Any) -> str:
            calls["states.StartExecution"] += 1
            return f"arn:aws:states:local:000000000000:execution:bench:{name}"

    refund = f"processing2-success--{tag}-{RUN}"
    parsed = parse_message(json.dumps(message(refund, 1, 60)))
    service.adapters.adapter("antom", "default")  # profile fetched and cached, as in a warm container
    calls.clear()
    started = service.start(parsed, message_id=f"{tag}-{RUN}", executions=Executions())
    starter = dict(calls)
    assert started.poll is not None
    state = started.poll.state
    per_poll: list[dict[str, int]] = []
    while state["decision"]["next"] == "wait":
        calls.clear()
        poll = service.poll(state)
        state = poll.state
        per_poll.append(dict(calls))
    item = scan(stack)[f"antom#default#rr:{refund}"]
    return {
        "starter": starter,
        "polls": per_poll,
        "itemBytes": dynamodb_item_size(item),
        "largestItemBytes": units.largest_item_bytes,
    }


def recount_requests() -> None:
    """``--requests-only``: replay and count the AWS requests again (counts do not depend on the machine's load)
    and replace only ``detail.requests`` of the last results; the timings stay those of the last full run."""
    path = RESULTS / "stack_flows.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp, DevStack(Path(tmp)) as stack:
        result["detail"]["requests"] = count_requests(stack)
    write_json(path, result)
    log(f"stack flows: requests recounted: {result['detail']['requests']}")


def main() -> None:
    if "--requests-only" in sys.argv[1:]:
        recount_requests()
        return
    messages = [message(T3, 1, 30), message(T12_FALLBACK, 1, 60)]
    messages += [message(refund, 1, window) for window, refund in T12.items()]
    messages += [
        message(refund, interval, 60 if interval == 5 else 30) for interval, ids in DETECT.items() for refund in ids
    ]
    with tempfile.TemporaryDirectory() as tmp, DevStack(Path(tmp)) as stack:
        sent_at = time.time()
        send(stack, messages)
        keys = {f"antom#default#rr:{m['refundRequestId']}" for m in messages}
        seen_final: dict[str, float] = {}
        items: dict[str, dict[str, Any]] = {}
        while time.time() - sent_at < 120:
            items = scan(stack)
            now = time.time()
            for key, item in items.items():
                if key not in seen_final and item.get("final", {}).get("BOOL"):
                    seen_final[key] = now
            if all(key in items and items[key].get("pollingState", {}).get("S") == "IDLE" for key in keys):
                break
            time.sleep(0.03)
        log(f"stack flows: all closed after {time.time() - sent_at:.1f} s")
        detection: dict[str, Any] = {}
        for interval, refunds in DETECT.items():
            rows: list[dict[str, Any]] = []
            for refund in refunds:
                seconds = int(refund.split("s-", 1)[0].removeprefix("processing"))
                sandbox = sandbox_refund(stack, refund)
                flip = float(sandbox["firstPollAt"]) + seconds
                seen = seen_final.get(f"antom#default#rr:{refund}")
                final_at = sandbox.get("finalAt")
                rows.append(
                    {
                        "refund": refund,
                        "latencyS": None if seen is None else round(seen - flip, 3),
                        "waitForPollS": None if final_at is None else round(float(final_at) - flip, 3),
                        "recordS": None if seen is None or final_at is None else round(seen - float(final_at), 3),
                    }
                )
            latencies = [row["latencyS"] for row in rows if row["latencyS"] is not None]
            detection[f"interval_{interval}s"] = {
                "medianS": round(median(latencies), 3),
                "maxS": max(latencies) if latencies else None,
                "missed": len(rows) - len(latencies),
                "recordMedianS": round(median(r["recordS"] for r in rows if r["recordS"] is not None), 3),
                "rows": rows,
            }
        t3 = execution_facts(stack, items[f"antom#default#rr:{T3}"])
        t12_candidates = {w: execution_facts(stack, items[f"antom#default#rr:{r}"]) for w, r in T12.items()}
        t12_source = next((f"processing, window {w} s" for w, f in t12_candidates.items() if f["polls"] == 12), None)
        t12 = next((f for f in t12_candidates.values() if f["polls"] == 12), None)
        if t12 is None:
            t12 = execution_facts(stack, items[f"antom#default#rr:{T12_FALLBACK}"])
            t12_source = "processing11-success (window gave no exactly-12-poll run)"
        lambdas = {
            "StartInquiryFunction": reports(stack, "StartInquiryFunction"),
            "InquireFunction": reports(stack, "InquireFunction"),
        }
        requests = count_requests(stack)
    per_poll = round((t12["statesEntered"] - 1) / t12["executionPolls"], 3)
    result = {
        "transitions_per_poll": per_poll,
        "transitions_3_polls": t3["statesEntered"],
        "transitions_12_polls": t12["statesEntered"],
        "detection_latency_s": {name: value["medianS"] for name, value in detection.items()},
        "detail": {
            "transitions": {"3_polls": t3, "12_polls": t12, "12_polls_source": t12_source, "windows": t12_candidates},
            "detection": detection,
            "lambda": lambdas,
            "requests": requests,
            "messages": len(messages),
        },
    }
    write_json(RESULTS / "stack_flows.json", result)
    log(f"transitions/poll {per_poll}, 3 polls {t3['statesEntered']}, 12 polls {t12['statesEntered']}")


if __name__ == "__main__":
    main()
