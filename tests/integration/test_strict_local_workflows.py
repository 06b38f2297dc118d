"""The local stack runs Step Functions as AWS does, where moto 5.2.5 is more forgiving (stepfunctions_rules.py).

Each test drives real boto3 clients against a LocalCloud. Run with ``STEPFUNCTIONS_RULES_OFF=1`` to see each one
fail on moto's own behaviour.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from refund_poller.local import LocalCloud
from refund_poller.local.stepfunctions_rules import StepFunctionsRules

EXPRESS_LIMIT_SECONDS = 2
RULES = StepFunctionsRules(
    strict=not os.environ.get("STEPFUNCTIONS_RULES_OFF"), express_max_seconds=EXPRESS_LIMIT_SECONDS
)
LOG_GROUP = "/aws/vendedlogs/states/strict-rules"
# A wait as long as the input says, inside a Parallel whose Catch would record the failure: the Express limit must
# end the execution without it.
DEFINITION = {
    "StartAt": "Nap",
    "States": {
        "Nap": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "SecondsPath": "$.seconds", "End": True}}}
            ],
            "ResultPath": None,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            "Next": "Done",
        },
        "Caught": {"Type": "Pass", "End": True},
        "Done": {"Type": "Pass", "End": True},
    },
}


def _state_machine(name: str, kind: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::StateMachine",
        "Properties": {
            "Name": name,
            "Type": kind,
            "Definition": DEFINITION,
            "Logging": {
                "Level": "ALL",
                "IncludeExecutionData": True,
                "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": ["Logs", "Arn"]}}}],
            },
        },
    }


TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Transform": "AWS::Serverless-2016-10-31",
    "Resources": {
        "Standard": _state_machine("strict-standard", "STANDARD"),
        "Express": _state_machine("strict-express", "EXPRESS"),
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": LOG_GROUP}},
    },
}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    folder = tmp_path_factory.mktemp("strict-workflows")
    template = folder / "template.json"
    template.write_text(json.dumps(TEMPLATE), encoding="utf-8")
    with LocalCloud(template, state_dir=folder / "state", stepfunctions_rules=RULES) as running:
        yield running


def _arn(cloud: LocalCloud, logical_id: str) -> str:
    return str(cloud.deployment.physical_id(logical_id))


def _start(cloud: LocalCloud, machine: str, name: str, seconds: float) -> str:
    answer = cloud.client("stepfunctions").start_execution(
        stateMachineArn=machine, name=name, input=json.dumps({"seconds": seconds})
    )
    return str(answer["executionArn"])


def _error_code(call: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return str(raised.value.response["Error"]["Code"])


def _log_records(cloud: LocalCloud, execution_arn: str) -> list[dict[str, Any]]:
    events = cloud.client("logs").filter_log_events(logGroupName=LOG_GROUP)["events"]
    records = [json.loads(event["message"]) for event in events]
    return [record for record in records if record["execution_arn"] == execution_arn]


def _wait_for_log_record(cloud: LocalCloud, execution_arn: str, kind: str, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        types = [str(record["type"]) for record in _log_records(cloud, execution_arn)]
        if kind in types or time.monotonic() > deadline:
            return types
        time.sleep(0.1)


def test_standard_names_follow_aws_start_execution_rules_and_outlive_the_state_machine(cloud: LocalCloud) -> None:
    sfn, machine = cloud.client("stepfunctions"), _arn(cloud, "Standard")
    first = _start(cloud, machine, "payer-1", 1)
    assert _start(cloud, machine, "payer-1", 1) == first  # same name, same input, still RUNNING: the same execution
    assert _error_code(lambda: _start(cloud, machine, "payer-1", 2)) == "ExecutionAlreadyExists"
    assert cloud.wait_for_execution(first)["status"] == "SUCCEEDED"
    assert _error_code(lambda: _start(cloud, machine, "payer-1", 1)) == "ExecutionAlreadyExists"
    # A stack update that replaces the named state machine (a changed WorkflowType) creates it again under the same
    # name and ARN; its closed executions' names stay taken for their 90 days.
    definition = sfn.describe_state_machine(stateMachineArn=machine)
    sfn.delete_state_machine(stateMachineArn=machine)
    again = sfn.create_state_machine(
        name=definition["name"],
        definition=definition["definition"],
        roleArn=definition["roleArn"],
        type="STANDARD",
        loggingConfiguration=definition["loggingConfiguration"],
    )
    assert again["stateMachineArn"] == machine
    assert _error_code(lambda: _start(cloud, machine, "payer-1", 1)) == "ExecutionAlreadyExists"


@pytest.mark.parametrize("name", ["R 1", "R/1", "R:1", "a#b", "x" * 81, "tab\tname", "brace{"])
def test_names_aws_refuses_are_refused(cloud: LocalCloud, name: str) -> None:
    code = _error_code(lambda: _start(cloud, _arn(cloud, "Standard"), name, 0))
    assert code in ("InvalidName", "ValidationException")


def test_an_unnamed_start_gets_a_uuid_name(cloud: LocalCloud) -> None:
    sfn = cloud.client("stepfunctions")
    arns = [sfn.start_execution(stateMachineArn=_arn(cloud, "Standard"), input='{"seconds": 0}') for _ in range(2)]
    names = [answer["executionArn"].rsplit(":", 1)[1] for answer in arns]
    assert names[0] != names[1] and all(len(name) == 36 and name.count("-") == 4 for name in names)


def test_express_starts_are_not_idempotent(cloud: LocalCloud) -> None:
    machine = _arn(cloud, "Express")
    first, second = (_start(cloud, machine, "payer-2", 0) for _ in range(2))
    assert first != second
    for arn in (first, second):
        prefix, name, run = arn.rsplit(":", 2)
        assert prefix == machine.replace(":stateMachine:", ":express:") and name == "payer-2" and len(run) == 36
        assert "ExecutionSucceeded" in _wait_for_log_record(cloud, arn, "ExecutionSucceeded")


def test_express_stops_at_its_maximum_duration_without_running_the_catch(cloud: LocalCloud) -> None:
    arn = _start(cloud, _arn(cloud, "Express"), "payer-3", EXPRESS_LIMIT_SECONDS + 3)
    started = time.monotonic()
    types = _wait_for_log_record(cloud, arn, "ExecutionTimedOut", timeout=EXPRESS_LIMIT_SECONDS + 2)
    assert types[-1] == "ExecutionTimedOut", types
    assert time.monotonic() - started < EXPRESS_LIMIT_SECONDS + 2
    entered = [r["details"].get("name") for r in _log_records(cloud, arn) if str(r["type"]).endswith("StateEntered")]
    assert "Caught" not in entered and "Done" not in entered


def test_express_executions_have_no_describe_history_stop_or_list(cloud: LocalCloud) -> None:
    sfn, machine = cloud.client("stepfunctions"), _arn(cloud, "Express")
    arn = _start(cloud, machine, "payer-4", 0)
    assert _error_code(lambda: sfn.describe_execution(executionArn=arn)) == "InvalidArn"
    assert _error_code(lambda: sfn.get_execution_history(executionArn=arn)) == "InvalidArn"
    assert _error_code(lambda: sfn.stop_execution(executionArn=arn)) == "InvalidArn"
    assert _error_code(lambda: sfn.describe_state_machine_for_execution(executionArn=arn)) == "InvalidArn"
    assert _error_code(lambda: sfn.list_executions(stateMachineArn=machine)) == "StateMachineTypeNotSupported"


def test_execution_history_is_delivered_to_the_log_group_as_aws_log_records(cloud: LocalCloud) -> None:
    arn = _start(cloud, _arn(cloud, "Express"), "payer-5", 0)
    _wait_for_log_record(cloud, arn, "ExecutionSucceeded")
    records = _log_records(cloud, arn)
    assert (records[0]["type"], records[-1]["type"]) == ("ExecutionStarted", "ExecutionSucceeded")
    for record in records:
        assert set(record) == {"id", "type", "details", "previous_event_id", "event_timestamp", "execution_arn"}
        assert record["id"].isdigit() and record["previous_event_id"].isdigit()
        assert record["event_timestamp"].isdigit() and abs(int(record["event_timestamp"]) / 1000 - time.time()) < 60
    assert json.loads(records[0]["details"]["input"]) == {"seconds": 0}  # IncludeExecutionData: true
    assert json.loads(records[-1]["details"]["output"]) == {"seconds": 0}


# A DynamoDB write that outlives its Task's TimeoutSeconds: AWS fails it with States.Timeout, which the Retry and
# the first Catch name; anything else ends in "Other error".
SLOW_TABLE = "strict-slow-writes"
TIMED_WRITE = {
    "StartAt": "Write",
    "States": {
        "Write": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:updateItem",
            "Parameters": {
                "TableName": SLOW_TABLE,
                "Key": {"pk": {"S.$": "$.pk"}},
                "UpdateExpression": "SET #n = :n",
                "ExpressionAttributeNames": {"#n": "n"},
                "ExpressionAttributeValues": {":n": {"N": "1"}},
            },
            "TimeoutSeconds": 1,
            "Retry": [{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 1, "MaxAttempts": 1}],
            "Catch": [
                {"ErrorEquals": ["States.Timeout"], "Next": "Timed out"},
                {"ErrorEquals": ["States.ALL"], "Next": "Other error"},
            ],
            "End": True,
        },
        "Timed out": {"Type": "Succeed"},
        "Other error": {"Type": "Fail", "Error": "NotATimeout"},
    },
}


def test_a_dynamodb_task_past_its_timeout_fails_with_states_timeout_and_is_retried(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    dynamodb, sfn = cloud.client("dynamodb"), cloud.client("stepfunctions")
    dynamodb.create_table(
        TableName=SLOW_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    update_item = DynamoDBBackend.update_item

    def slow_update_item(backend: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        if table_name == SLOW_TABLE:
            time.sleep(1.5)  # moto answers after the Task's 1 s: a DynamoDB under load
        return update_item(backend, table_name, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", slow_update_item)
    machine = sfn.create_state_machine(
        name="strict-timed-write",
        definition=json.dumps(TIMED_WRITE),
        roleArn="arn:aws:iam::123456789012:role/strict-timed-write",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="slow-write", input='{"pk": "r/退款 1"}')
    deadline = time.monotonic() + 30
    while (status := sfn.describe_execution(executionArn=execution["executionArn"])["status"]) == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end in 30 s"
        time.sleep(0.2)
    events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    timed_out = [e["taskTimedOutEventDetails"]["error"] for e in events if e["type"] == "TaskTimedOut"]
    failed = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
    assert (status, timed_out, failed) == ("SUCCEEDED", ["States.Timeout", "States.Timeout"], [])
