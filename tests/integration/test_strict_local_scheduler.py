"""EventBridge Scheduler on the local stack (devtools/refund_poller/local/scheduler.py): moto keeps schedules and
never fires them; the firer fires due one-time schedules into their SQS target, deletes them after completion,
delivers at least once when asked, compresses time, and refuses at CreateSchedule what AWS refuses. With
``strict=False`` the refusals are moto's own (none), which the last test shows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from refund_poller.local.deploy import deploy
from refund_poller.local.errors import DeploymentError
from refund_poller.local.resources_data import create_schedule_group
from refund_poller.local.scheduler import ScheduleFirer, SchedulerSettings
from refund_poller.local.server import ACCOUNT_ID, REGION, MotoServer
from refund_poller.local.template import load_template

GROUP = "local-tail"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/scheduler"


@pytest.fixture
def cloud() -> Iterator[tuple[MotoServer, str]]:
    server = MotoServer()
    server.start()
    try:
        server.client("scheduler").create_schedule_group(Name=GROUP)
        url = server.client("sqs").create_queue(QueueName="inquiries")["QueueUrl"]
        yield server, url
    finally:
        server.stop()


def firer(server: MotoServer, **settings: Any) -> ScheduleFirer:
    engine = ScheduleFirer(SchedulerSettings(**settings), server.client("sqs"), ACCOUNT_ID, REGION)
    engine.start()
    return engine


def create(server: MotoServer, name: str, at: float, *, after: str = "DELETE", group: str = GROUP) -> None:
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    server.client("scheduler").create_schedule(
        Name=name,
        GroupName=group,
        ScheduleExpression=f"at({when})",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion=after,
        Target={
            "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:inquiries",
            "RoleArn": ROLE,
            "Input": json.dumps({"name": name}),
        },
    )


def received(server: MotoServer, url: str, wait: float = 3.0) -> list[str]:
    bodies: list[str] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for message in server.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            bodies.append(json.loads(message["Body"])["name"])
        time.sleep(0.1)
    return bodies


def names(server: MotoServer) -> list[str]:
    return [s["Name"] for s in server.client("scheduler").list_schedules(GroupName=GROUP)["Schedules"]]


def test_a_due_one_time_schedule_sends_its_input_once_and_is_deleted(cloud: tuple[MotoServer, str]) -> None:
    server, url = cloud
    engine = firer(server)
    try:
        create(server, "due", time.time() - 1)
        create(server, "kept", time.time() - 1, after="NONE")
        create(server, "tomorrow", time.time() + 86400)
        assert sorted(received(server, url)) == ["due", "kept"]
        assert sorted(names(server)) == ["kept", "tomorrow"]  # DELETE after completion; NONE stays, fired once
        assert received(server, url, wait=1.0) == []
    finally:
        engine.stop()


def test_time_compression_brings_a_day_into_a_second(cloud: tuple[MotoServer, str]) -> None:
    server, url = cloud
    engine = firer(server, time_scale=86400.0)
    try:
        create(server, "one-day", time.time() + 86400)
        assert received(server, url) == ["one-day"]
    finally:
        engine.stop()


def test_at_least_once_delivery_can_send_a_firing_twice(cloud: tuple[MotoServer, str]) -> None:
    server, url = cloud
    engine = firer(server, duplicate_rate=1.0)
    try:
        create(server, "twice", time.time() - 1)
        assert received(server, url) == ["twice", "twice"]
    finally:
        engine.stop()


@pytest.mark.parametrize(
    ("name", "group", "error"),
    [
        ("x" * 65, GROUP, "ValidationException"),
        ("refund:1", GROUP, "ValidationException"),
        ("ok", "no-such-group", "ResourceNotFoundException"),
    ],
)
def test_create_schedule_refuses_what_aws_refuses(
    cloud: tuple[MotoServer, str], name: str, group: str, error: str
) -> None:
    server, _ = cloud
    engine = firer(server)
    try:
        with pytest.raises(ClientError) as refused:
            create(server, name, time.time() + 60, group=group)
        assert refused.value.response["Error"]["Code"] == error
    finally:
        engine.stop()


def test_without_the_rules_moto_accepts_an_invalid_name(cloud: tuple[MotoServer, str]) -> None:
    server, _ = cloud
    engine = firer(server, strict=False)
    try:
        create(server, "x" * 65, time.time() + 60)
        assert names(server) == ["x" * 65]
    finally:
        engine.stop()


def test_a_stack_name_over_59_characters_fails_at_the_tail_schedule_group(cloud: tuple[MotoServer, str]) -> None:
    """CloudFormation refuses a schedule group name over 64 characters; the template's is ``<stack>-tail``."""
    server, _ = cloud
    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    only_groups = {"AWS::Scheduler::ScheduleGroup": create_schedule_group}
    with pytest.raises(DeploymentError, match=r"TailScheduleGroup .*1-64 characters .*at most 59"):
        deploy(template, server.client, only_groups, {}, "s" * 60, REGION, ACCOUNT_ID)
    deployed = deploy(template, server.client, only_groups, {}, "s" * 59, REGION, ACCOUNT_ID)
    assert deployed.resources["TailScheduleGroup"].physical_id == "s" * 59 + "-tail"
