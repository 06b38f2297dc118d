"""The strict local stack's Lambda concurrency, through real boto3 clients against a running LocalCloud
(tests/fixtures/strict_concurrency): reserved concurrency (0 throttles everything), the account limit,
SQS ScalingConfig.MaximumConcurrency, the throttling error Step Functions sees, and the vCPUs of a function.

``LOCAL_CLOUD_FORGIVING=1 pytest tests/integration/test_strict_local_concurrency.py`` runs them on moto as it
is (unlimited concurrency, one batch at a time, the host's CPU count): the tests of the emulation then fail.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from refund_poller.local import DeploymentError, LocalCloud
from refund_poller.local.strict import StrictSettings
from tests.integration.waiting import eventually

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

TEMPLATE = Path(__file__).parents[1] / "fixtures" / "strict_concurrency" / "template.yaml"
# Reserved: ReservedFunction 1, ThrottledFunction 0; so 2 left for the functions without a reservation.
ACCOUNT_CONCURRENCY = 3


def strict_settings() -> StrictSettings:
    if os.environ.get("LOCAL_CLOUD_FORGIVING") == "1":
        return StrictSettings.forgiving()
    return StrictSettings(account_concurrency=ACCOUNT_CONCURRENCY)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state_dir = tmp_path_factory.mktemp("strict-concurrency")
    with LocalCloud(TEMPLATE, state_dir=state_dir, strict=strict_settings()) as running:
        yield running


def invoke_at_once(cloud: LocalCloud, function: str, events: list[dict[str, Any]]) -> list[Any]:
    """Invoke ``function`` with every event at the same moment; each answer is a payload or a ClientError."""
    lambda_client: LambdaClient = cloud.client("lambda", Config(read_timeout=60))
    name = cloud.function_name(function)
    answers: list[Any] = [None] * len(events)
    start = threading.Barrier(len(events))

    def call(index: int) -> None:
        start.wait()
        try:
            answers[index] = json.loads(
                lambda_client.invoke(FunctionName=name, Payload=json.dumps(events[index]))["Payload"].read()
            )
        except ClientError as error:
            answers[index] = error

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def throttles(answers: list[Any]) -> list[str]:
    """The ``Reason`` of each TooManyRequestsException among ``answers``."""
    reasons = []
    for answer in answers:
        if isinstance(answer, ClientError):
            assert answer.response["Error"]["Code"] == "TooManyRequestsException"
            assert answer.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            reasons.append(str(answer.response.get("Reason")))
    return reasons


def warm(cloud: LocalCloud, function: str) -> None:
    """One invoke first, so that the overlapping ones below do not also wait for a cold start."""
    assert cloud.invoke(function, {"seconds": 0}).function_error is None


def test_maximum_concurrency_out_of_range_is_refused(tmp_path: Path) -> None:
    # First in the module: its stack must start before the module's own one (one stack per process).
    with pytest.raises(DeploymentError, match=r"MaximumConcurrency 1 is out of range"):
        LocalCloud(TEMPLATE, {"QueueConcurrency": 1}, state_dir=tmp_path, strict=strict_settings()).start()


def test_reserved_concurrency_throttles_the_invocations_over_it(cloud: LocalCloud) -> None:
    warm(cloud, "ReservedFunction")
    answers = invoke_at_once(cloud, "ReservedFunction", [{"seconds": 1.5}, {"seconds": 1.5}])
    assert throttles(answers) == ["ReservedFunctionConcurrentInvocationLimitExceeded"]
    assert {"ok": True} in answers


def test_reserved_concurrency_zero_throttles_every_invocation(cloud: LocalCloud) -> None:
    lambda_client: LambdaClient = cloud.client("lambda")
    with pytest.raises(ClientError) as throttled:
        lambda_client.invoke(FunctionName=cloud.function_name("ThrottledFunction"), Payload=b"{}")
    assert throttles([throttled.value]) == ["ReservedFunctionConcurrentInvocationLimitExceeded"]


def test_the_account_limit_less_reservations_is_shared_by_the_other_functions(cloud: LocalCloud) -> None:
    warm(cloud, "FreeFunction")
    answers = invoke_at_once(cloud, "FreeFunction", [{"seconds": 2.0}] * 3)
    assert throttles(answers) == ["ConcurrentInvocationLimitExceeded"]  # 3 - 1 reserved = 2 at once
    # The reserved function keeps its own: it runs while the others use up the shared pool.
    assert cloud.invoke("ReservedFunction", {"seconds": 0}).function_error is None


def test_step_functions_sees_lambda_too_many_requests_and_retries_it(cloud: LocalCloud) -> None:
    stepfunctions: SFNClient = cloud.client("stepfunctions")
    execution_arn = stepfunctions.start_execution(
        stateMachineArn=cloud.deployment.outputs["RetryMachineArn"], name="throttled", input="{}"
    )["executionArn"]
    execution = cloud.wait_for_execution(execution_arn, timeout=60)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["error"]["Error"] == "Lambda.TooManyRequestsException"
    history = stepfunctions.get_execution_history(executionArn=execution_arn)["events"]
    failures = [event for event in history if event["type"] == "TaskFailed"]
    assert len(failures) == 3  # the first attempt and the two retries the ASL asks for
    assert all(event["taskFailedEventDetails"]["error"] == "Lambda.TooManyRequestsException" for event in failures)


def test_an_sqs_event_source_runs_at_most_maximum_concurrency_batches(cloud: LocalCloud) -> None:
    sqs: SQSClient = cloud.client("sqs")
    dynamodb: DynamoDBClient = cloud.client("dynamodb")
    draw = random.Random(5)  # test data
    keys = [f"batch {n}/{draw.randrange(10**6)}:退款" for n in range(8)]
    for start in range(0, len(keys), 10):
        entries = [{"Id": str(n), "MessageBody": json.dumps({"id": key, "seconds": 0.8})} for n, key in enumerate(keys)]
        sqs.send_message_batch(QueueUrl=cloud.deployment.outputs["QueueUrl"], Entries=entries[start : start + 10])  # type: ignore[arg-type]  # typed dicts

    def spans() -> list[tuple[float, float]] | None:
        found = []
        for key in keys:
            item = dynamodb.get_item(TableName=cloud.deployment.outputs["TableName"], Key={"pk": {"S": key}})
            if "Item" not in item:
                return None
            found.append((float(item["Item"]["started"]["S"]), float(item["Item"]["ended"]["S"])))
        return found

    ran = eventually(spans, timeout=60)
    most_at_once = max(sum(1 for start, end in ran if start <= moment < end) for moment, _ in ran)
    assert most_at_once == 2  # MaximumConcurrency: batches ran side by side, never more than two


def test_a_function_sees_the_vcpus_of_its_memory_size(cloud: LocalCloud) -> None:
    big = cloud.invoke("BigFunction").payload  # 5400 MB: ceil(5400 / 1769) = 4 vCPUs
    assert big == {"cpuCount": 4, "poolSize": 8}


def test_a_throttled_sqs_batch_goes_back_to_the_queue_and_on_to_its_dlq(cloud: LocalCloud) -> None:
    sqs: SQSClient = cloud.client("sqs")
    body = json.dumps({"id": "never runs: reserved concurrency 0", "seconds": 0})
    sqs.send_message(QueueUrl=cloud.deployment.outputs["ThrottledQueueUrl"], MessageBody=body)

    def dead_letters() -> list[Any]:
        answer = sqs.receive_message(QueueUrl=cloud.deployment.outputs["ThrottledDlqUrl"], WaitTimeSeconds=1)
        return answer.get("Messages", [])

    dead = eventually(dead_letters, timeout=30)  # received once, throttled, visible again: maxReceiveCount 1
    assert [message["Body"] for message in dead] == [body]
