"""The strict local stack's data and event behaviours, through real boto3 clients against a running LocalCloud
(tests/fixtures/local_runtime): DynamoDB TTL deletion, GSI propagation lag, SQS message size, PutEvents
failures. Each is something AWS does and moto forgives.

``LOCAL_CLOUD_FORGIVING=1 pytest tests/integration/test_strict_local_data.py`` runs them on moto as it is
(``StrictSettings.forgiving()``): every test here then fails, which is what shows it tests the emulation.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from refund_poller.local import LocalCloud
from refund_poller.local.strict import StrictSettings
from tests.integration.waiting import eventually as wait_for

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_sqs import SQSClient

TEMPLATE = Path(__file__).parents[1] / "fixtures" / "local_runtime" / "template.yaml"
TABLE = "local-ItemsTable"
INDEX = "group-index"
LAG = 2.0  # long enough that a loaded machine still reads right after the write, inside the lag
# What a merchant may send as an id: CJK, spaces, "/", ".", ":", up to 64 characters.
ID_ALPHABET = "AZaz09-_ /.:退款號碼テスト한국어€"
T = TypeVar("T")


def merchant_id(draw: random.Random) -> str:
    return "".join(draw.choice(ID_ALPHABET) for _ in range(draw.randint(1, 64)))


def strict_settings() -> StrictSettings:
    if os.environ.get("LOCAL_CLOUD_FORGIVING") == "1":
        return StrictSettings.forgiving()
    return StrictSettings(ttl_sweep_seconds=0.2, index_lag_seconds=LAG)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with LocalCloud(TEMPLATE, state_dir=tmp_path_factory.mktemp("strict-data"), strict=strict_settings()) as running:
        yield running


@pytest.fixture
def draw(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(request.node.name)  # test data, reproducible per test


def eventually(probe: Callable[[], T | None], timeout: float = 8.0) -> T:
    return wait_for(probe, timeout, interval=0.05)


def group_keys(dynamodb: DynamoDBClient, group: str) -> set[str]:
    answer = dynamodb.query(
        TableName=TABLE,
        IndexName=INDEX,
        KeyConditionExpression="#g = :g",
        ExpressionAttributeNames={"#g": "group"},
        ExpressionAttributeValues={":g": {"S": group}},
    )
    return {item["pk"]["S"] for item in answer["Items"]}


def put(dynamodb: DynamoDBClient, pk: str, group: str, expires_at: Any = None) -> None:
    item: dict[str, Any] = {"pk": {"S": pk}, "group": {"S": group}}
    if expires_at is not None:
        item["expiresAt"] = expires_at
    dynamodb.put_item(TableName=TABLE, Item=item)


def exists(dynamodb: DynamoDBClient, pk: str) -> bool:
    return "Item" in dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True)


# --- DynamoDB TTL -------------------------------------------------------------------------------------------


def test_ttl_deletes_expired_items_from_the_table_and_its_index(cloud: LocalCloud, draw: random.Random) -> None:
    dynamodb: DynamoDBClient = cloud.client("dynamodb")
    group = merchant_id(draw)
    expiring, lasting, text_ttl = (merchant_id(draw) + suffix for suffix in ("/e", "/l", "/t"))
    put(dynamodb, expiring, group, {"N": str(int(time.time()) + 1)})
    put(dynamodb, lasting, group, {"N": str(int(time.time()) + 3600)})
    put(dynamodb, text_ttl, group, {"S": "0"})  # not a Number: DynamoDB ignores it
    eventually(lambda: group_keys(dynamodb, group) == {expiring, lasting, text_ttl})

    eventually(lambda: not exists(dynamodb, expiring))
    eventually(lambda: group_keys(dynamodb, group) == {lasting, text_ttl})  # gone from the index too
    assert exists(dynamodb, lasting) and exists(dynamodb, text_ttl)


def test_ttl_time_can_be_moved_ahead_and_old_values_are_ignored(cloud: LocalCloud, draw: random.Random) -> None:
    dynamodb: DynamoDBClient = cloud.client("dynamodb")
    group = merchant_id(draw)
    tomorrow, next_week, ancient = (merchant_id(draw) + suffix for suffix in ("/t", "/w", "/a"))
    put(dynamodb, tomorrow, group, {"N": str(int(time.time()) + 86_400)})
    put(dynamodb, next_week, group, {"N": str(int(time.time()) + 7 * 86_400)})
    put(dynamodb, ancient, group, {"N": str(int(time.time()) - 6 * 365 * 86_400)})  # > 5 years: never deleted
    cloud.strict.ttl_clock = lambda: time.time() + 2 * 86_400  # the sweeper now lives two days ahead
    try:
        eventually(lambda: not exists(dynamodb, tomorrow))
    finally:
        cloud.strict.ttl_clock = time.time
    assert exists(dynamodb, next_week)
    assert cloud.expire_items(now=time.time() + 8 * 86_400) >= 1  # or one sweep, at a time of the test's choice
    assert not exists(dynamodb, next_week)
    assert exists(dynamodb, ancient)


# --- GSI propagation lag ------------------------------------------------------------------------------------


def test_a_global_index_sees_writes_only_after_the_lag(cloud: LocalCloud, draw: random.Random) -> None:
    dynamodb: DynamoDBClient = cloud.client("dynamodb")
    pk, old_group, new_group = merchant_id(draw), merchant_id(draw) + ":old", merchant_id(draw) + ":new"
    put(dynamodb, pk, old_group)
    written = time.monotonic()
    assert group_keys(dynamodb, old_group) == set()  # the table has it, the index not yet
    assert exists(dynamodb, pk)
    eventually(lambda: group_keys(dynamodb, old_group) == {pk})
    assert time.monotonic() - written >= LAG * 0.9

    dynamodb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET #g = :g",
        ExpressionAttributeNames={"#g": "group"},
        ExpressionAttributeValues={":g": {"S": new_group}},
    )
    assert group_keys(dynamodb, old_group) == {pk}  # the index still has the old key
    assert group_keys(dynamodb, new_group) == set()
    eventually(lambda: group_keys(dynamodb, new_group) == {pk} and not group_keys(dynamodb, old_group))

    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": pk}})
    assert group_keys(dynamodb, new_group) == {pk}  # deletes propagate late too
    eventually(lambda: not group_keys(dynamodb, new_group))


def test_a_global_index_scan_lags_and_consistent_reads_are_refused(cloud: LocalCloud, draw: random.Random) -> None:
    dynamodb: DynamoDBClient = cloud.client("dynamodb")
    pk, group = merchant_id(draw), merchant_id(draw)
    put(dynamodb, pk, group)

    def scanned() -> set[str]:
        return {item["pk"]["S"] for item in dynamodb.scan(TableName=TABLE, IndexName=INDEX)["Items"]}

    assert pk not in scanned()
    eventually(lambda: pk in scanned())
    with pytest.raises(ClientError) as refused:
        dynamodb.query(
            TableName=TABLE,
            IndexName=INDEX,
            ConsistentRead=True,
            KeyConditionExpression="#g = :g",
            ExpressionAttributeNames={"#g": "group"},
            ExpressionAttributeValues={":g": {"S": group}},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"


# --- SQS message size ---------------------------------------------------------------------------------------


def test_sqs_refuses_a_message_over_the_default_size_counting_bytes_and_attributes(cloud: LocalCloud) -> None:
    sqs: SQSClient = cloud.client("sqs")
    url = cloud.deployment.outputs["DlqUrl"]  # created without MaximumMessageSize: SQS's default applies
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])["Attributes"]
    assert attributes["MaximumMessageSize"] == "262144"
    cjk = "退" * (262_144 // 3)  # 87,381 characters, 262,143 bytes: fits
    sqs.send_message(QueueUrl=url, MessageBody=cjk)
    with pytest.raises(ClientError) as refused:
        sqs.send_message(QueueUrl=url, MessageBody=cjk + "退")
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "Message must be shorter than 262144 bytes" in refused.value.response["Error"]["Message"]

    # Name, type and value of an attribute count: 262,138 + "reason" (6) + "String" (6) + "x" > 262,144.
    body = "a" * 262_138
    with pytest.raises(ClientError):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": "x"}},
        )
    with pytest.raises(ClientError):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": "ok", "MessageBody": "{}"}, {"Id": "big", "MessageBody": cjk + "退"}]
        )
    sqs.purge_queue(QueueUrl=url)


def test_sqs_accepts_up_to_the_size_a_queue_sets(cloud: LocalCloud, draw: random.Random) -> None:
    sqs: SQSClient = cloud.client("sqs")
    name = f"big-{draw.randrange(10**9)}"
    url = sqs.create_queue(QueueName=name, Attributes={"MaximumMessageSize": "1048576"})["QueueUrl"]
    small = sqs.create_queue(QueueName=f"small-{draw.randrange(10**9)}", Attributes={"MaximumMessageSize": "1024"})
    sqs.send_message(QueueUrl=url, MessageBody="a" * 1_048_576)
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=url, MessageBody="a" * 1_048_577)
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=small["QueueUrl"], MessageBody="é" * 513)  # 1,026 bytes in 513 characters


# --- EventBridge PutEvents failures -------------------------------------------------------------------------


@pytest.fixture
def bus_to_queue(cloud: LocalCloud, draw: random.Random) -> Iterator[str]:
    """A rule on the stack's bus that copies every event to a fresh queue; yields that queue's URL."""
    sqs: SQSClient = cloud.client("sqs")
    events: EventBridgeClient = cloud.client("events")
    name = f"captured-{draw.randrange(10**9)}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = cloud.deployment.outputs["BusName"]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": ["strict-test"]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    yield url
    events.remove_targets(Rule=name, EventBusName=bus, Ids=["queue"])
    events.delete_rule(Name=name, EventBusName=bus)
    cloud.strict.put_events_failed_entries = cloud.strict.put_events_errors = 0
    cloud.strict.put_events_failure_rate = cloud.strict.put_events_delay_seconds = 0.0


def captured(sqs: SQSClient, url: str) -> list[str]:
    found: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return found
        found.extend(json.loads(message["Body"])["detail"]["refund"] for message in messages)


def entry(cloud: LocalCloud, refund: str) -> PutEventsRequestEntryTypeDef:
    bus = cloud.deployment.outputs["BusName"]
    detail = json.dumps({"refund": refund})
    return {"EventBusName": bus, "Source": "strict-test", "DetailType": "result", "Detail": detail}


def test_put_events_reports_failed_entries_without_raising(
    cloud: LocalCloud, bus_to_queue: str, draw: random.Random
) -> None:
    events: EventBridgeClient = cloud.client("events")
    first, second, third = (merchant_id(draw) for _ in range(3))
    cloud.strict.put_events_failed_entries = 2
    answer = events.put_events(Entries=[entry(cloud, first), entry(cloud, second), entry(cloud, third)])
    assert answer["FailedEntryCount"] == 2
    assert [item.get("ErrorCode") for item in answer["Entries"]] == ["InternalFailure", "InternalFailure", None]
    assert "EventId" in answer["Entries"][2]
    assert captured(cloud.client("sqs"), bus_to_queue) == [third]  # failed entries were not delivered

    cloud.strict.put_events_failure_rate, cloud.strict.put_events_seed = 0.5, 7
    answers = [events.put_events(Entries=[entry(cloud, str(n))])["FailedEntryCount"] for n in range(40)]
    assert 5 < sum(answers) < 35


def test_put_events_can_fail_as_a_whole_or_time_out(cloud: LocalCloud, bus_to_queue: str, draw: random.Random) -> None:
    events: EventBridgeClient = cloud.client("events")
    refund = merchant_id(draw)
    cloud.strict.put_events_errors = 1
    with pytest.raises(ClientError) as failed:
        events.put_events(Entries=[entry(cloud, refund)])
    assert failed.value.response["Error"]["Code"] == "InternalException"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert events.put_events(Entries=[entry(cloud, refund)])["FailedEntryCount"] == 0  # the next one passes

    cloud.strict.put_events_delay_seconds = 1.5
    impatient: EventBridgeClient = cloud.client("events", Config(read_timeout=0.5))
    with pytest.raises(ReadTimeoutError):
        impatient.put_events(Entries=[entry(cloud, refund + "/late")])
    # The caller saw a timeout, yet the event went out: a retry publishes it twice.
    assert sorted(captured(cloud.client("sqs"), bus_to_queue)) == sorted([refund, refund + "/late"])
