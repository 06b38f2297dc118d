"""What one long-tail attempt costs in requests and Lambda time, on one local stack with the tail time-compressed.

Refunds ``processing6-success`` are sent with a 1 s window (the starter's first inquiry closes it), so each then
makes six tail attempts (five PROCESSING, then SUCCESS), each fired by the local EventBridge Scheduler firer into
the queue and handled by StartInquiry. The StartInquiry REPORT lines give the Lambda durations (nearly all of
its invocations are tail attempts); a replay of one tail attempt of the same service code in this process, with
counting hooks on its boto3 clients, gives the AWS requests per attempt. Writes bench/results/long_tail.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import RESULTS, dynamodb_item_size, log, write_json
from bench.stack_flows import reports, scan
from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.scheduler import SchedulerSettings
from refund_poller.local.server import FAKE_CREDENTIALS, REGION

RUN = str(int(time.time()))[-6:]
REFUNDS = [f"processing6-success--lt{n}-{RUN}" for n in range(10)]
ONE_POLL_WINDOW = FAST_POLICY | {f"{p}WindowSeconds": "1" for p in ("Antom", "AlipayPlus", "AlphaPay")}


def count_attempt_requests(stack: DevStack) -> dict[str, Any]:
    """One tail attempt replayed here (the deployed starter's environment), counting its AWS requests."""
    import os

    config = stack.client("lambda").get_function_configuration(
        FunctionName=stack.cloud.function_name("StartInquiryFunction")
    )
    os.environ.update(config["Environment"]["Variables"])
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": stack.cloud.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        }
    )
    from refund_core.aws.wiring import service_from_environment
    from refund_core.validation import parse_message

    service = service_from_environment()
    calls: Counter[str] = Counter()

    def hook(**kwargs: Any) -> None:
        calls[kwargs["event_name"].split(".", 1)[1]] += 1

    scheduler = service.tail_scheduler
    assert scheduler is not None
    clients = [service.store._client, service.events._client, scheduler._client()]  # type: ignore[attr-defined]
    for client in clients:
        client.meta.events.register("before-call.*.*", hook)
    stack.cloud.scheduler.time_scale = 1.0  # the replayed attempt's next schedule stays pending
    refund = f"processing6-success--count-{RUN}"
    body = {"provider": "antom", "refundRequestId": refund}
    service.adapters.adapter("antom", "default")  # profile cached, as in a warm container
    service.start(parse_message(json.dumps(body)), message_id=f"first-{RUN}", executions=_NoExecutions())
    item = service.store.get(f"antom#default#rr:{refund}")
    assert item is not None and item["pollingState"] == "TAIL", item
    attempt = {**body, "tailAttempt": {"windowId": item["windowId"], "attempt": item["tailAttempt"]}}
    calls.clear()
    result = service.start(parse_message(json.dumps(attempt)), message_id=f"attempt-{RUN}", executions=_NoExecutions())
    assert result.action == "tail", result
    counted = dict(calls)
    raw = scan(stack)[f"antom#default#rr:{refund}"]
    return {"attempt": counted, "itemBytes": dynamodb_item_size(raw)}


class _NoExecutions:
    def start(self, name: str, state: Any) -> str:
        raise AssertionError("a 1 s window starts no execution")


def main() -> None:
    settings = SchedulerSettings(time_scale=100_000.0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevStack(Path(tmp), parameter_overrides=ONE_POLL_WINDOW, scheduler=settings, tail=True) as stack,
    ):
        started = time.time()
        sqs = stack.client("sqs")
        for refund in REFUNDS:
            body = json.dumps({"provider": "antom", "refundRequestId": refund})
            sqs.send_message(QueueUrl=str(stack.outputs["InquiryQueueUrl"]), MessageBody=body)
        keys = {f"antom#default#rr:{refund}" for refund in REFUNDS}
        items: dict[str, dict[str, Any]] = {}
        while time.time() - started < 180:
            items = scan(stack)
            if all(items.get(k, {}).get("pollingState", {}).get("S") == "IDLE" for k in keys):
                break
            time.sleep(0.2)
        attempts = sum(len(items[k].get("tailHistory", {}).get("L", [])) for k in keys if k in items)
        log(f"long tail: {len(REFUNDS)} refunds, {attempts} tail attempts in {time.time() - started:.1f} s")
        starter = reports(stack, "StartInquiryFunction")
        requests = count_attempt_requests(stack)
    result = {
        "refunds": len(REFUNDS),
        "tailAttempts": attempts,
        "starterInvocations": starter["invocations"],
        "lambda": {"StartInquiryFunction": starter},
        "requests": requests,
    }
    write_json(RESULTS / "long_tail.json", result)


if __name__ == "__main__":
    main()
