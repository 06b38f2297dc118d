"""``refund-poller trace`` on an EXPRESS stack reads the execution's history from CloudWatch Logs, as it must on
AWS, where DescribeExecution and GetExecutionHistory refuse an Express execution. ``STEPFUNCTIONS_RULES_OFF=1``
runs the stack on moto's own forgiving Step Functions, and the test fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.stepfunctions_rules import StepFunctionsRules
from tests.integration.stack_support import send, wait_closed
from tests.integration.test_cli_inquire import run_cli

RULES = StepFunctionsRules(strict=not os.environ.get("STEPFUNCTIONS_RULES_OFF"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    overrides = {**FAST_POLICY, "WorkflowType": "EXPRESS"}
    with DevStack(
        tmp_path_factory.mktemp("express-trace"), parameter_overrides=overrides, stepfunctions_rules=RULES
    ) as running:
        yield running


def test_trace_shows_an_express_execution_poll_by_poll_from_its_log_records(stack: DevStack) -> None:
    refund_id = "processing2-fail--express-trace"
    send(stack, {"provider": "alphapay", "refundId": refund_id})
    item = wait_closed(stack, [f"alphapay#default#r:{refund_id}"])[f"alphapay#default#r:{refund_id}"]
    assert ":express:" in item["executionArn"]
    args = ("trace", "--provider", "alphapay", "--refund-id", refund_id, "--endpoint-url", stack.cloud.endpoint_url)

    answer = run_cli(*args, "--json")

    assert answer.returncode == 0, answer.stderr
    trace = json.loads(answer.stdout)
    execution = trace["execution"]
    assert execution["executionArn"] == item["executionArn"] and execution["status"] == "SUCCEEDED"
    assert execution["historySource"].startswith("CloudWatch Logs /aws/vendedlogs/states/")
    assert execution["notes"] == [] and execution["consoleUrl"] is None
    polls = [step for step in trace["steps"] if step["poll"] is not None]
    # The starter's first inquiry, then the loop's two polls: PROCESSING, PROCESSING, FAIL (the script's answers).
    assert [step["poll"] for step in polls] == [1, 2, 3]
    assert [step["status"] for step in polls] == ["PROCESSING", "PROCESSING", "FAIL"]
    assert trace["steps"][-1]["decision"] == "succeeded"

    table = run_cli(*args)
    assert table.returncode == 0 and "history   CloudWatch Logs /aws/vendedlogs/states/" in table.stdout


def test_trace_says_what_it_cannot_show_when_an_express_state_machine_logs_nothing(stack: DevStack) -> None:
    refund_id = "processing2-success--express-unlogged"
    send(stack, {"provider": "alphapay", "refundId": refund_id})
    wait_closed(stack, [f"alphapay#default#r:{refund_id}"])
    sfn = stack.client("stepfunctions")
    sfn.update_state_machine(
        stateMachineArn=str(stack.outputs["StateMachineArn"]), loggingConfiguration={"level": "OFF"}
    )

    answer = run_cli(
        "trace", "--provider", "alphapay", "--refund-id", refund_id, "--endpoint-url", stack.cloud.endpoint_url
    )

    assert answer.returncode == 1
    assert "is an EXPRESS execution: Step Functions keeps no history of it" in answer.stderr
    assert "hint: deploy the template's Logging (Level ALL, IncludeExecutionData true)" in answer.stderr
