"""Starting the polling loop: named executions make SQS redelivery idempotent on STANDARD."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class ExecutionNameConflictError(RuntimeError):
    """An execution of this name exists but is not this window's loop (the message is retried, then reported)."""


class StepFunctionsExecutions:
    def __init__(self, client: SFNClient, state_machine_arn: str) -> None:
        self._client = client
        self._arn = state_machine_arn

    def start(self, name: str, state: Mapping[str, Any]) -> str:
        """Start the loop; an existing execution of the same name is adopted only when it is this window's.

        On STANDARD, the same name with the same input while it runs succeeds (idempotent), any other input or a
        closed execution answers ExecutionAlreadyExists: then DescribeExecution must show the same item key and
        window in its input, otherwise the ARN belongs to another refund or window and is never adopted.
        """
        try:
            answer = self._client.start_execution(stateMachineArn=self._arn, name=name, input=json.dumps(state))
        except self._client.exceptions.ExecutionAlreadyExists:
            arn = self.execution_arn(name)
            existing = json.loads(self._client.describe_execution(executionArn=arn).get("input") or "{}")
            if not same_window(existing, state):
                raise ExecutionNameConflictError(
                    f"execution name {name} is taken by another refund or window; not adopting {arn}"
                ) from None
            return arn  # this window's loop, started by an earlier attempt (redelivery, resume)
        return answer["executionArn"]

    def execution_arn(self, name: str) -> str:
        return self._arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


def same_window(existing: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    """True when two state machine inputs belong to the same refund item and polling window."""
    if not isinstance(existing, Mapping) or not isinstance(existing.get("inquiry"), Mapping):
        return False
    window = "windowId" if state.get("windowId") else "generation"
    return bool(existing["inquiry"].get("key") == state["inquiry"]["key"] and existing.get(window) == state.get(window))
