"""The Docker-free local runtime on its own small stack (tests/fixtures/local_runtime), over real HTTP:
deployment, invocation as Lambda reports it, SQS polling with partial batch failures, a state machine that
really executes, and restarting in the same process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from refund_poller.local import DeploymentError, LocalCloud, LocalCloudError
from tests.integration.waiting import eventually

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

TEMPLATE = Path(__file__).parents[1] / "fixtures" / "local_runtime" / "template.yaml"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with LocalCloud(TEMPLATE, state_dir=tmp_path_factory.mktemp("local-cloud")) as running:
        yield running


def test_deploy_resolves_the_outputs_and_lists_what_it_skips(cloud: LocalCloud) -> None:
    outputs = cloud.deployment.outputs
    assert outputs["QueueUrl"] == f"{cloud.endpoint_url}/123456789012/local-WorkQueue"
    assert outputs["DlqUrl"] == f"{cloud.endpoint_url}/123456789012/local-WorkDLQ"
    assert outputs["TableName"] == "local-ItemsTable"
    assert outputs["EchoFunctionName"] == "local-EchoFunction"
    assert outputs["StateMachineArn"] == "arn:aws:states:us-east-1:123456789012:stateMachine:local-LoopStateMachine"
    assert outputs["LayerArn"] == "arn:aws:lambda:us-east-1:123456789012:layer:SharedLayer:1"
    assert outputs["BusName"] == "local-bus"
    assert outputs["AlarmName"] == "local-dlq-not-empty"
    assert outputs["StageLabel"] == "y-dev"
    assert outputs["NotProd"] == "dev is ${NotAVariable}"
    assert "ProdQueueUrl" not in outputs
    skipped = {skip.logical_id for skip in cloud.deployment.skipped}
    assert skipped == {"ProdOnlyQueue", "LoopLogGroup", "DlqAlarm", "BatchFunction.Events.Nightly"}
    state = json.loads((cloud.state_dir / "deployment.json").read_text())
    assert state["endpointUrl"] == cloud.endpoint_url
    assert state["outputs"] == outputs


def test_queues_table_secret_and_bus_are_configured_as_the_template_says(cloud: LocalCloud) -> None:
    sqs: SQSClient = cloud.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=cloud.deployment.outputs["QueueUrl"], AttributeNames=["All"])
    assert attributes["Attributes"]["VisibilityTimeout"] == "4"
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:local-WorkDLQ", "maxReceiveCount": 2}
    dynamodb: DynamoDBClient = cloud.client("dynamodb")
    table = dynamodb.describe_table(TableName="local-ItemsTable")["Table"]
    assert [index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])] == ["group-index"]
    ttl = dynamodb.describe_time_to_live(TableName="local-ItemsTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    secrets: SecretsManagerClient = cloud.client("secretsmanager")
    secret = json.loads(secrets.get_secret_value(SecretId=cloud.deployment.outputs["SecretArn"])["SecretString"])
    assert secret["user"] == "local" and len(secret["password"]) == 16
    events: EventBridgeClient = cloud.client("events")
    assert events.describe_event_bus(Name="local-bus")["Name"] == "local-bus"


def test_the_state_machine_gets_its_definition_substitutions(cloud: LocalCloud) -> None:
    stepfunctions: SFNClient = cloud.client("stepfunctions")
    machine = stepfunctions.describe_state_machine(stateMachineArn=cloud.deployment.outputs["StateMachineArn"])
    definition = json.loads(machine["definition"])
    assert machine["type"] == "STANDARD"
    counter_arn = cloud.deployment.functions["CounterFunction"].arn
    assert definition["States"]["Count"]["Parameters"]["FunctionName"] == counter_arn
    assert definition["States"]["Enough?"]["Choices"][0]["Next"] == "Done"


def test_invoke_returns_the_handlers_value_with_its_environment_context_and_layer(cloud: LocalCloud) -> None:
    payload, function_error, logs = cloud.invoke("EchoFunction", {"hello": "world"})
    assert function_error is None
    assert payload["event"] == {"hello": "world"}
    assert payload["stage"] == "dev"
    assert payload["greeting"] == "hello from local in us-east-1"
    assert payload["firstLetter"] == "a"
    assert payload["prodOnly"] is None  # Fn::If chose AWS::NoValue
    assert payload["tableName"] == "local-ItemsTable"
    assert payload["endpoint"] == cloud.endpoint_url
    assert payload["layer"] == "from the layer"
    assert payload["functionName"] == "local-EchoFunction"
    assert payload["memoryLimitInMb"] == "256"
    assert 0 < payload["remainingMillis"] <= 2000
    assert f"START RequestId: {payload['requestId']}" in logs
    assert "echo: invoked with {'hello': 'world'}" in logs


def test_a_warm_worker_is_reused_and_logs_are_kept_per_function(cloud: LocalCloud) -> None:
    first = cloud.invoke("EchoFunction", {"n": 1})
    second = cloud.invoke("EchoFunction", {"n": 2})
    assert first.payload["pid"] == second.payload["pid"]
    assert "INIT_START" not in second.logs and "Init Duration" not in second.logs
    kept = cloud.function_logs("EchoFunction")
    assert "echo: invoked with {'n': 1}" in kept and "echo: invoked with {'n': 2}" in kept
    assert "echo: invoked with {'n': 1}" in (cloud.state_dir / "logs" / "local-EchoFunction.log").read_text()


def test_a_handler_exception_is_an_unhandled_function_error_with_its_type(cloud: LocalCloud) -> None:
    payload, function_error, logs = cloud.invoke("FailingFunction")
    assert function_error == "Unhandled"
    assert payload["errorType"] == "PaymentDeclinedError"
    assert payload["errorMessage"] == "card declined"
    assert any("failing.py" in frame for frame in payload["stackTrace"])
    assert "[ERROR] PaymentDeclinedError: card declined" in logs


def test_an_import_error_is_reported_as_lambda_reports_it(cloud: LocalCloud) -> None:
    for _ in range(2):  # and again on the next invoke: Lambda retries the init each time
        payload, function_error, _logs = cloud.invoke("BrokenImportFunction")
        assert function_error == "Unhandled"
        assert payload["errorType"] == "Runtime.ImportModuleError"
        assert payload["errorMessage"] == (
            "Unable to import module 'broken': No module named 'module_that_is_not_installed'"
        )


def test_a_worker_that_overruns_the_timeout_is_killed_and_replaced(cloud: LocalCloud) -> None:
    before = cloud.invoke("SlowFunction", {"seconds": 0}).payload["pid"]
    payload, function_error, logs = cloud.invoke("SlowFunction", {"seconds": 5})
    assert function_error == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert payload["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert "slow: sleeping 5" in logs and "Status: timeout" in logs
    after = cloud.invoke("SlowFunction", {"seconds": 0})
    assert after.function_error is None
    assert after.payload["pid"] != before


def test_a_worker_that_crashes_is_reported_and_replaced(cloud: LocalCloud) -> None:
    payload, function_error, _logs = cloud.invoke("SlowFunction", {"exitCode": 3})
    assert function_error == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert payload["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert cloud.invoke("SlowFunction", {"seconds": 0}).function_error is None


def test_an_asynchronous_invoke_is_accepted_at_once_and_runs_in_the_background(cloud: LocalCloud) -> None:
    lambda_client: LambdaClient = cloud.client("lambda")
    response = lambda_client.invoke(
        FunctionName=cloud.function_name("EchoFunction"), InvocationType="Event", Payload=b'{"async": "yes"}'
    )
    assert response["StatusCode"] == 202
    eventually(lambda: "echo: invoked with {'async': 'yes'}" in cloud.function_logs("EchoFunction"))


def test_concurrent_invokes_get_workers_of_their_own(cloud: LocalCloud) -> None:
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: cloud.invoke("SlowFunction", {"seconds": 0.3}), range(3)))
    assert all(result.function_error is None for result in results)
    assert len({result.payload["pid"] for result in results}) == 3


def test_sqs_batches_reach_the_function_and_reported_failures_end_in_the_dlq(cloud: LocalCloud) -> None:
    sqs: SQSClient = cloud.client("sqs")
    dynamodb: DynamoDBClient = cloud.client("dynamodb")
    outputs = cloud.deployment.outputs
    bodies = [{"id": f"m{n}", "fail": n == 3} for n in range(7)]
    entries = [{"Id": str(n), "MessageBody": json.dumps(body)} for n, body in enumerate(bodies)]
    sqs.send_message_batch(QueueUrl=outputs["QueueUrl"], Entries=entries)  # type: ignore[arg-type]  # typed dicts

    def dead_letter() -> list[Any]:
        return sqs.receive_message(QueueUrl=outputs["DlqUrl"], WaitTimeSeconds=1).get("Messages", [])

    dead = eventually(dead_letter)
    assert [json.loads(message["Body"])["id"] for message in dead] == ["m3"]
    items = {
        item["pk"]["S"]: item for item in dynamodb.scan(TableName=outputs["TableName"])["Items"] if "attempts" in item
    }
    attempts = {key: int(item["attempts"]["N"]) for key, item in items.items()}
    assert attempts == {f"m{n}": 2 if n == 3 else 1 for n in range(7)}  # maxReceiveCount, and no redelivery
    batch_sizes = [int(size["N"]) for item in items.values() for size in item["batchSizes"]["L"]]
    assert max(batch_sizes) > 1 and max(batch_sizes) <= 5
    left = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    assert left["ApproximateNumberOfMessages"] == "0" and left["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_the_state_machine_loops_through_wait_task_and_choice_until_done(cloud: LocalCloud) -> None:
    stepfunctions: SFNClient = cloud.client("stepfunctions")
    execution_arn = stepfunctions.start_execution(
        stateMachineArn=cloud.deployment.outputs["StateMachineArn"],
        name="count-to-three",
        input=json.dumps({"count": 0, "target": 3, "waitSeconds": 0}),
    )["executionArn"]
    execution = cloud.wait_for_execution(execution_arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["count"] == 3
    types = [event["type"] for event in stepfunctions.get_execution_history(executionArn=execution_arn)["events"]]
    assert types.count("WaitStateEntered") == 3
    assert types.count("TaskSucceeded") == 3
    assert types.count("ChoiceStateEntered") == 3
    assert types[-1] == "ExecutionSucceeded"


def test_a_function_error_fails_the_execution_with_the_functions_error_type(cloud: LocalCloud) -> None:
    stepfunctions: SFNClient = cloud.client("stepfunctions")
    execution_arn = stepfunctions.start_execution(
        stateMachineArn=cloud.deployment.outputs["StateMachineArn"],
        name="explode",
        input=json.dumps({"count": 0, "target": 3, "waitSeconds": 0, "explode": True}),
    )["executionArn"]
    execution = cloud.wait_for_execution(execution_arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "CounterError"
    assert json.loads(execution["cause"])["errorMessage"] == "asked to explode"


def test_only_one_local_stack_runs_per_process(cloud: LocalCloud, tmp_path: Path) -> None:
    with pytest.raises(LocalCloudError, match="already running"):
        LocalCloud(TEMPLATE, state_dir=tmp_path).start()
    assert cloud.invoke("EchoFunction").function_error is None


def test_a_queue_whose_visibility_timeout_is_below_the_function_timeout_is_refused(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    cloud.stop()
    try:
        with pytest.raises(DeploymentError, match="visibility timeout: 4 seconds is less than Function timeout: 5"):
            LocalCloud(TEMPLATE, {"BatchTimeout": 5}, state_dir=tmp_path).start()
    finally:
        cloud.start()


def test_a_second_start_in_the_same_process_begins_from_an_empty_moto(cloud: LocalCloud) -> None:
    sqs: SQSClient = cloud.client("sqs")
    sqs.create_queue(QueueName="left-over")
    cloud.stop()
    cloud.start()
    sqs = cloud.client("sqs")
    assert sqs.list_queues(QueueNamePrefix="left-over").get("QueueUrls", []) == []
    assert cloud.invoke("EchoFunction", {"again": True}).payload["event"] == {"again": True}
