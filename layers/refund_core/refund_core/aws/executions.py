"""Starting the polling loop: named executions make SQS redelivery idempotent on STANDARD."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class StepFunctionsExecutions:
    def __init__(self, client: SFNClient, state_machine_arn: str) -> None:
        self._client = client
        self._arn = state_machine_arn

    def start(self, name: str, state: Mapping[str, Any]) -> str:
        try:
            answer = self._client.start_execution(stateMachineArn=self._arn, name=name, input=json.dumps(state))
        except self._client.exceptions.ExecutionAlreadyExists:
            # The same message again (redelivery): the loop it started is the one that counts.
            return self.execution_arn(name)
        return answer["executionArn"]

    def execution_arn(self, name: str) -> str:
        return self._arn.replace(":stateMachine:", ":execution:", 1) + ":" + name
