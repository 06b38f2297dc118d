"""The long tail on an EXPRESS stack: executions stay within the fast window; the waiting between attempts is
EventBridge Scheduler's, so the tail runs for days without any long execution (docs/long-tail.md)."""

from __future__ import annotations

import json

import pytest

from refund_core.domain.inquiry import item_key
from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.scheduler import SchedulerSettings
from tests.integration.stack_support import send
from tests.integration.test_cli_inquire import run_cli
from tests.integration.test_long_tail import FAST, idle, provider_polls, wait_item


def test_an_express_stack_runs_the_tail_without_long_executions(tmp_path_factory: pytest.TempPathFactory) -> None:
    overrides = FAST_POLICY | {"WorkflowType": "EXPRESS", "AntomWindowSeconds": "3"}
    settings = SchedulerSettings(time_scale=FAST)
    with DevStack(
        tmp_path_factory.mktemp("tail-express"), parameter_overrides=overrides, scheduler=settings, tail=True
    ) as express:
        rid = "processing8-success--express"
        send(express, {"provider": "antom", "refundRequestId": rid})
        key = item_key("antom", "default", refund_request_id=rid)
        item = wait_item(express, key, idle, timeout=90)
        assert item["status"] == "SUCCESS" and item["tailHistory"][-1]["status"] == "SUCCESS"
        assert ":express:" in str(item.get("executionArn"))  # the fast window ran as an EXPRESS execution
        assert provider_polls(express, rid) == item["polls"] == 9
        # trace: the execution's polls, then every tail attempt, numbered on.
        args = (
            "trace",
            "--provider",
            "antom",
            "--refund-request-id",
            rid,
            "--endpoint-url",
            express.cloud.endpoint_url,
        )
        answer = run_cli(*args, "--json")
        assert answer.returncode == 0, answer.stderr
        polls = [step for step in json.loads(answer.stdout)["steps"] if step["poll"] is not None]
        assert [step["poll"] for step in polls] == list(range(1, 10))
        attempts = [step["decision"] for step in polls if step["decision"].startswith("tail attempt")]
        assert attempts == [f"tail attempt {n}" for n in range(1, len(item["tailHistory"]) + 1)]
