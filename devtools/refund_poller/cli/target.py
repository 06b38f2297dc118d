"""Which stack a command works on, and the clients and outputs to work on it with.

One of: a deployed stack (``--stack-name``, resource names from its CloudFormation outputs), a local stack at
``--endpoint-url``, or the local stack recorded in ``.refund-poller/local-stack.json`` by ``local up``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from refund_core.store import DynamoDbRefundStore
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.errors import fail
from refund_poller.cli.local_state import STATE_FILE, LocalStackState, find_state, read_state

LOCAL_REGION = "us-east-1"
# The emulated AWS accepts any credentials; fixed ones keep the user's real ones out of it.
LOCAL_KEY = "testing"  # not a secret
NO_STACK_HINT = (
    "start one with `refund-poller local up` (in another terminal), or pass --stack-name for a deployed stack"
)


@dataclass(frozen=True)
class Target:
    """A stack to work on: ``endpoint_url`` is None for AWS itself."""

    session: boto3.Session
    outputs: Mapping[str, str]
    region: str
    endpoint_url: str | None = None
    local: LocalStackState | None = field(default=None, repr=False)

    @property
    def on_aws(self) -> bool:
        return self.endpoint_url is None

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS {self.region}"

    def client(self, service: str, read_timeout: float = 60) -> Any:
        config = Config(retries={"total_max_attempts": 2}, connect_timeout=5, read_timeout=read_timeout)
        return self.session.client(  # type: ignore[call-overload]  # service is a runtime string
            service, endpoint_url=self.endpoint_url, config=config
        )

    def output(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            fail(f"the stack has no output {name}", hint="deploy the current template.yaml", exit_code=EXIT_FAILURE)
        return str(value)

    def store(self) -> DynamoDbRefundStore:
        return DynamoDbRefundStore(self.client("dynamodb"), self.output("ResultsTableName"))

    def console_url(self, execution_arn: str) -> str | None:
        """The Step Functions console page of an execution (None for a local stack)."""
        if not self.on_aws:
            return None
        region = self.region
        return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def resolve_target(
    stack_name: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> Target:
    """The stack the options name; a one-line error when there is none."""
    if stack_name:
        return aws_target(stack_name, profile, region)
    if endpoint_url:
        return endpoint_target(endpoint_url)
    return local_target(require_local_state())


def require_local_state() -> LocalStackState:
    found = find_state()
    if found is None:
        fail(
            f"no local stack is running here (no {STATE_FILE} here or in a parent directory)",
            hint=NO_STACK_HINT,
            exit_code=EXIT_FAILURE,
        )
    if not found.running:
        fail(f"the local stack in {found.path} has stopped (pid {found.state.pid})", hint=NO_STACK_HINT, exit_code=1)
    return found.state


def local_session(region: str = LOCAL_REGION) -> boto3.Session:
    return boto3.Session(aws_access_key_id=LOCAL_KEY, aws_secret_access_key=LOCAL_KEY, region_name=region)


def local_target(state: LocalStackState) -> Target:
    return Target(local_session(state.region), state.outputs, state.region, state.endpoint_url, state)


def aws_target(stack_name: str, profile: str | None, region: str | None) -> Target:
    with aws_errors():
        session = boto3.Session(profile_name=profile, region_name=region)
        cloudformation = session.client("cloudformation")
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return Target(session, outputs, cloudformation.meta.region_name)


def endpoint_target(endpoint_url: str) -> Target:
    """A local stack at an explicit endpoint: outputs from the state file when it matches, else discovered."""
    endpoint_url = endpoint_url.rstrip("/")
    state = read_state()
    if state is not None and state.endpoint_url == endpoint_url:
        return local_target(state)
    target = Target(local_session(), {}, LOCAL_REGION, endpoint_url)
    with aws_errors(endpoint_url):
        return Target(target.session, _discover_outputs(target), LOCAL_REGION, endpoint_url)


def _discover_outputs(target: Target) -> dict[str, str]:
    """The outputs of the one stack deployed at a local endpoint, found by listing its resources."""
    outputs: dict[str, str] = {}
    for url in target.client("sqs").list_queues().get("QueueUrls", []):
        if url.endswith("-inquiries-dlq"):
            outputs["InquiryDLQUrl"] = url
        elif url.endswith("-inquiries"):
            outputs["InquiryQueueUrl"] = url
    tables = target.client("dynamodb").list_tables()["TableNames"]
    machines = target.client("stepfunctions").list_state_machines()["stateMachines"]
    outputs.update(
        {
            "ResultsTableName": next(iter(tables), ""),
            "StateMachineArn": machines[0]["stateMachineArn"] if machines else "",
        }
    )
    for function in target.client("lambda").list_functions()["Functions"]:
        for logical_id in ("StartInquiryFunction", "InquireFunction"):
            if function["FunctionName"].endswith("-" + logical_id):
                outputs[logical_id + "Name"] = function["FunctionName"]
    return outputs
