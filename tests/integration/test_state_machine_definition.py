"""statemachine/refund_inquiry.asl.json is valid ASL, and shaped as docs/internals.md and issue 3 require.

moto accepts dangling Next/Catch targets and runs whatever it is given, so the definition is also checked statically:
with AWS Labs' asl-validator (npm, installed by `npm ci` from package.json) and by walking its transitions.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# samcli ships no type information (no py.typed); it only parses template.yaml's short-form intrinsics here.
from samcli.yamlhelper import yaml_parse  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "statemachine" / "refund_inquiry.asl.json"
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}

State = dict[str, Any]


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DEFINITION.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def states(definition: dict[str, Any]) -> dict[str, State]:
    found: dict[str, State] = definition["States"]
    return found


def normal_targets(state: State) -> Iterator[str]:
    """Where a state goes when nothing fails."""
    if "Next" in state:
        yield state["Next"]
    for rule in state.get("Choices", []):
        yield rule["Next"]
    if "Default" in state:
        yield state["Default"]


def all_targets(state: State) -> Iterator[str]:
    yield from normal_targets(state)
    for catcher in state.get("Catch", []):
        yield catcher["Next"]


def simple_cycles(states: dict[str, State]) -> list[list[str]]:
    """Every loop of normal transitions, each listed once, starting from its first state in definition order."""
    order = list(states)
    cycles: list[list[str]] = []

    def walk(start: str, path: list[str]) -> None:
        for target in normal_targets(states[path[-1]]):
            if target == start:
                cycles.append(list(path))
            elif target not in path and order.index(target) > order.index(start):
                walk(start, [*path, target])

    for name in order:
        walk(name, [name])
    return cycles


def test_asl_validator_accepts_the_definition() -> None:
    # node and the npm package are project requirements: `make install` runs `npm ci`.
    assert shutil.which("node") is not None, "node is not installed; asl-validator is an npm package"
    assert ASL_VALIDATOR.exists(), "asl-validator is missing: run `npm ci` at the repository root"

    result = subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(DEFINITION)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_transition_target_exists(definition: dict[str, Any], states: dict[str, State]) -> None:
    targets = {definition["StartAt"]} | {target for state in states.values() for target in all_targets(state)}

    assert targets - set(states) == set()


def test_every_state_is_reachable(definition: dict[str, Any], states: dict[str, State]) -> None:
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(all_targets(states[name]))

    assert seen == set(states)


def test_a_poll_costs_at_most_three_state_transitions(states: dict[str, State]) -> None:
    cycles = simple_cycles(states)

    assert cycles, "the definition has no polling loop"
    assert max(len(cycle) for cycle in cycles) <= 3, cycles
    assert all(any(states[name]["Type"] == "Task" for name in cycle) for cycle in cycles)


def test_execution_begins_by_waiting_the_interval_the_starter_decided(definition: dict[str, Any]) -> None:
    first = definition["States"][definition["StartAt"]]

    assert first["Type"] == "Wait"
    assert first["SecondsPath"] == "$.decision.waitSeconds"


def test_the_poll_passes_and_returns_the_whole_state(states: dict[str, State]) -> None:
    (task,) = (state for state in states.values() if state.get("Resource") == "arn:aws:states:::lambda:invoke")

    assert task["Parameters"] == {"FunctionName": "${InquireFunctionArn}", "Payload.$": "$"}
    assert task["OutputPath"] == "$.Payload"
    assert states[task["Next"]]["Type"] == "Choice"


def test_the_choice_reads_only_the_decision_the_function_returns(states: dict[str, State]) -> None:
    (choice,) = (state for state in states.values() if state["Type"] == "Choice")
    rules = {rule["StringEquals"]: states[rule["Next"]]["Type"] for rule in choice["Choices"]}

    assert {rule["Variable"] for rule in choice["Choices"]} == {"$.decision.next"}
    assert rules == {"wait": "Wait", "done": "Succeed", "fail": "Fail"}
    assert states[choice["Default"]]["Type"] == "Fail"


def test_lambda_errors_are_retried_with_backoff_and_jitter(states: dict[str, State]) -> None:
    (task,) = (state for state in states.values() if state.get("Resource") == "arn:aws:states:::lambda:invoke")
    retried = {error for retrier in task["Retry"] for error in retrier["ErrorEquals"]}

    assert retried >= LAMBDA_SERVICE_ERRORS | {"States.TaskFailed"}
    for retrier in task["Retry"]:
        assert retrier["BackoffRate"] > 1
        assert retrier["JitterStrategy"] == "FULL"


def test_a_failed_poll_is_recorded_then_ends_the_execution_failed(states: dict[str, State]) -> None:
    (task,) = (state for state in states.values() if state.get("Resource") == "arn:aws:states:::lambda:invoke")
    (catcher,) = task["Catch"]
    record = states[catcher["Next"]]
    parameters = record["Parameters"]

    assert catcher["ErrorEquals"] == ["States.ALL"]
    assert record["Resource"] == "arn:aws:states:::dynamodb:updateItem"
    assert parameters["Key"] == {"pk": {"S.$": "$.inquiry.key"}}
    assert parameters["ConditionExpression"] == "attribute_not_exists(#final) OR #final = :false"
    assert parameters["ExpressionAttributeValues"][":error"] == {"S": "ERROR"}
    # A stored error is announced; a refund already final (condition failed) was announced by its final poll.
    failed = {c["Next"] for c in record["Catch"]}
    assert any("DynamoDB.ConditionalCheckFailedException" in c["ErrorEquals"] for c in record["Catch"])
    prepare = states[record["Next"]]
    announce = states[prepare["Next"]]
    assert announce["Resource"] == "arn:aws:states:::events:putEvents"
    assert announce["Parameters"]["Entries"][0]["Source"] == "refund-poller"
    assert {c["Next"] for c in announce["Catch"]} == {announce["Next"]} == failed
    assert states[announce["Next"]]["Type"] == "Fail"


def test_failures_have_readable_names(states: dict[str, State]) -> None:
    for name, state in states.items():
        if state["Type"] == "Fail":
            assert re.fullmatch(r"[A-Z][A-Za-z]+", state["Error"]), name
            assert state["Cause"], name


def test_the_definition_has_a_hard_timeout_and_no_timestamp_logic(definition: dict[str, Any]) -> None:
    text = DEFINITION.read_text(encoding="utf-8")

    # A literal number: a ${...} substitution there would not be valid JSON before the substitution.
    assert isinstance(definition["TimeoutSeconds"], int)
    assert 0 < definition["TimeoutSeconds"] <= 3600
    # moto's Choice compares only whole-second UTC timestamps, and a context timestamp in the output breaks its
    # DescribeExecution: deadlines are decided in code.
    assert "Timestamp" not in text
    assert "$$" not in text


def test_substitution_variables_are_exactly_those_the_template_provides() -> None:
    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    (machine,) = (r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine")
    used = set(re.findall(r"\$\{([^}]+)\}", DEFINITION.read_text(encoding="utf-8")))

    assert machine["Properties"]["DefinitionUri"] == "statemachine/refund_inquiry.asl.json"
    assert used == set(machine["Properties"]["DefinitionSubstitutions"])
