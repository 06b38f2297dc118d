"""The console's readers on an EXPRESS stack: Step Functions keeps no history there, so a refund's window (its
polls, the states it entered, the provider's last answer) is read back from the state machine's CloudWatch Logs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refund_poller.cli.target import LOCAL_REGION, Target, local_session
from refund_poller.console.readers import Execution, SharedClients, executions, get_refund
from refund_poller.devstack import FAST_POLICY, DevStack
from tests.e2e.conftest import eventually
from tests.integration.stack_support import send, wait_closed


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    overrides = {**FAST_POLICY, "WorkflowType": "EXPRESS"}
    with DevStack(tmp_path_factory.mktemp("console-express"), parameter_overrides=overrides) as running:
        yield running


def test_an_express_window_is_read_from_the_state_machines_log_records(stack: DevStack) -> None:
    key = "antom#default#rr:processing2-success--console-express"
    send(stack, {"provider": "antom", "refundRequestId": "processing2-success--console-express"})
    item = wait_closed(stack, [key])[key]
    assert (item["status"], item["polls"]) == ("SUCCESS", 3)
    target = SharedClients.of(Target(local_session(), stack.outputs, LOCAL_REGION, stack.cloud.endpoint_url))
    refund = get_refund(target, key)
    assert refund is not None

    def read() -> Execution | None:
        [window] = executions(target, refund)
        return window if window.status == "SUCCEEDED" else None

    window: Execution = eventually(read, timeout=20)

    assert window.express and window.history_source.startswith("CloudWatch Logs ")
    assert window.path.count("Ask provider") == 2 and window.path[-1] == "Refund succeeded"
    assert [step.poll for step in window.steps if step.poll is not None] == [1, 2, 3]
    assert window.last_observation["status"] == "SUCCESS" and window.last_observation["verified"] is True
    assert window.notes == []
