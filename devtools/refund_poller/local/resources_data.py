"""Creators for the resources that hold data or carry messages: queues, tables, secrets, event buses, rules."""

from __future__ import annotations

import json
import re
from typing import Any

from refund_poller.local.deploy import Created, Creator, DeployContext
from refund_poller.local.intrinsics import scalar_text

QUEUE_PROPERTIES_NOT_ATTRIBUTES = frozenset({"QueueName", "Tags"})
TABLE_PROPERTIES_PASSED_AS_IS = (
    "AttributeDefinitions",
    "KeySchema",
    "LocalSecondaryIndexes",
    "BillingMode",
    "TableClass",
    "DeletionProtectionEnabled",
)
SIMPLE_TABLE_TYPES = {"String": "S", "Number": "N", "Binary": "B"}
PASSWORD_OPTIONS = (
    "PasswordLength",
    "ExcludeCharacters",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "ExcludeLowercase",
    "IncludeSpace",
    "RequireEachIncludedType",
)
TARGET_KEYS = ("Id", "Arn", "Input", "InputPath", "InputTransformer", "RoleArn", "SqsParameters", "DeadLetterConfig")


def create_queue(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    fifo = scalar_text(properties.get("FifoQueue", False)) == "true"
    name = properties.get("QueueName") or context.name(logical_id, 75) + (".fifo" if fifo else "")
    attributes = {
        key: _queue_attribute(key, value)
        for key, value in properties.items()
        if key not in QUEUE_PROPERTIES_NOT_ATTRIBUTES
    }
    url = context.client("sqs").create_queue(QueueName=name, Attributes=attributes, tags=_tag_map(properties))
    arn = f"arn:aws:sqs:{context.region}:{context.account_id}:{name}"
    return Created(url["QueueUrl"], {"Arn": arn, "QueueName": name, "QueueUrl": url["QueueUrl"]})


def _queue_attribute(key: str, value: Any) -> str:
    if isinstance(value, dict):
        if key == "RedrivePolicy" and "maxReceiveCount" in value:
            # Parameters arrive as strings; moto compares the count with a number.
            value = {**value, "maxReceiveCount": int(value["maxReceiveCount"])}
        return json.dumps(value)
    return scalar_text(value)


def create_table(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    name = properties.get("TableName") or context.name(logical_id, 255)
    request: dict[str, Any] = {key: properties[key] for key in TABLE_PROPERTIES_PASSED_AS_IS if key in properties}
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = _throughput(properties["ProvisionedThroughput"])
    if "GlobalSecondaryIndexes" in properties:
        request["GlobalSecondaryIndexes"] = [_index(index) for index in properties["GlobalSecondaryIndexes"]]
    if "StreamSpecification" in properties:  # CloudFormation has no StreamEnabled: the section implies it
        request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    if "SSESpecification" in properties:  # CloudFormation says SSEEnabled where the API says Enabled
        sse = dict(properties["SSESpecification"])
        request["SSESpecification"] = {"Enabled": scalar_text(sse.pop("SSEEnabled", False)) == "true", **sse}
    if properties.get("Tags"):
        request["Tags"] = properties["Tags"]
    dynamodb = context.client("dynamodb")
    table = dynamodb.create_table(TableName=name, **request)["TableDescription"]
    _configure_table(dynamodb, name, properties)
    attributes = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attributes["StreamArn"] = table["LatestStreamArn"]
    return Created(name, attributes)


def _configure_table(dynamodb: Any, name: str, properties: dict[str, Any]) -> None:
    """The settings CreateTable does not take: TTL and point-in-time recovery."""
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and scalar_text(ttl.get("Enabled")) == "true":
        specification = {"AttributeName": ttl["AttributeName"], "Enabled": True}
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=specification)
    recovery = properties.get("PointInTimeRecoverySpecification") or {}
    if scalar_text(recovery.get("PointInTimeRecoveryEnabled")) == "true":
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )


def _throughput(value: dict[str, Any]) -> dict[str, int]:
    return {key: int(number) for key, number in value.items()}


def _index(index: dict[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
    if "ProvisionedThroughput" in index:
        shaped["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
    return shaped


def create_simple_table(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    """SAM's SimpleTable: one string (or given) hash key, on-demand unless throughput is given."""
    key = properties.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    table: dict[str, Any] = {
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": SIMPLE_TABLE_TYPES[key["Type"]]}],
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
    }
    if "ProvisionedThroughput" in properties:
        table["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    else:
        table["BillingMode"] = "PAY_PER_REQUEST"
    for passed in ("TableName", "SSESpecification"):
        if passed in properties:
            table[passed] = properties[passed]
    return create_table(context, logical_id, table)


def create_secret(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    name = properties.get("Name") or context.name(logical_id, 512)
    secrets = context.client("secretsmanager")
    value = properties.get("SecretString")
    if value is None:
        value = _generated_secret(secrets, properties.get("GenerateSecretString") or {})
    request = {"Name": name, "SecretString": value, "Description": properties.get("Description", "")}
    if properties.get("Tags"):
        request["Tags"] = properties["Tags"]
    arn = secrets.create_secret(**request)["ARN"]
    return Created(arn, {"Id": arn})


def _generated_secret(secrets: Any, options: dict[str, Any]) -> str:
    password = secrets.get_random_password(**{key: options[key] for key in PASSWORD_OPTIONS if key in options})
    template, key = options.get("SecretStringTemplate"), options.get("GenerateStringKey")
    if template is None or key is None:
        return str(password["RandomPassword"])
    return json.dumps({**json.loads(template), key: password["RandomPassword"]})


def create_event_bus(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    name = properties["Name"]
    arn = context.client("events").create_event_bus(Name=name)["EventBusArn"]
    return Created(name, {"Arn": arn, "Name": name})


def create_rule(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    name = properties.get("Name") or context.name(logical_id, 64)
    bus = str(properties.get("EventBusName", "default"))
    request: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": properties.get("State", "ENABLED")}
    for key in ("Description", "ScheduleExpression"):
        if key in properties:
            request[key] = properties[key]
    if "EventPattern" in properties:
        pattern = properties["EventPattern"]
        request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    events = context.client("events")
    arn = events.put_rule(**request)["RuleArn"]
    targets = [{key: target[key] for key in TARGET_KEYS if key in target} for target in properties.get("Targets", [])]
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return Created(name, {"Arn": arn})


# AWS::Scheduler::ScheduleGroup Name: 1-64 of [0-9a-zA-Z-_.] (moto accepts any name). The template's is
# "<stack>-tail": stack names of more than 59 characters fail here, as the deploy would.
SCHEDULE_GROUP_NAME = re.compile(r"[0-9a-zA-Z_.-]{1,64}")


def create_schedule_group(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    """An EventBridge Scheduler group (moto keeps it; local/scheduler.py fires its schedules)."""
    name = str(properties.get("Name") or context.name(logical_id, 64))
    if not SCHEDULE_GROUP_NAME.fullmatch(name):
        raise ValueError(f"Name {name!r}: must be 1-64 characters of [0-9a-zA-Z-_.] (a stack name of at most 59)")
    arn = context.client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
    return Created(name, {"Arn": arn})


def _tag_map(properties: dict[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): scalar_text(tag["Value"]) for tag in properties.get("Tags", [])}


CREATORS: dict[str, Creator] = {
    "AWS::SQS::Queue": create_queue,
    "AWS::DynamoDB::Table": create_table,
    "AWS::Serverless::SimpleTable": create_simple_table,
    "AWS::SecretsManager::Secret": create_secret,
    "AWS::Events::EventBus": create_event_bus,
    "AWS::Events::Rule": create_rule,
    "AWS::Scheduler::ScheduleGroup": create_schedule_group,
}
