"""statemachine/refund_inquiry.asl.json is valid ASL, shaped as docs/internals.md requires, keeps its executions inside
their time limits by construction, and behaves so when run for real.

moto accepts dangling Next/Catch targets and runs whatever it is given, so the definition is also checked statically:
with AWS Labs' asl-validator (npm, installed by `npm ci` from package.json) and by walking its transitions. The time
bounds are computed from the definition's own Retry and TimeoutSeconds fields (docs/internals.md, "Timeouts, retries
and concurrency"): raising a retry count or a timeout without room for it fails here. The last tests run the real
definition on the local stack (moto executes it) with Inquire throttled the way Lambda throttles.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.awslambda.models import LambdaFunction
from moto.core.exceptions import JsonRESTError
from moto.events.models import EventsBackend

# samcli ships no type information (no py.typed); it only parses template.yaml's short-form intrinsics here.
from samcli.yamlhelper import yaml_parse  # type: ignore[import-untyped]

from refund_core.domain.inquiry import item_key
from refund_core.domain.polling import DURATION_BOUNDS, EXPRESS_MAX_WINDOW_SECONDS
from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import events_by_key, history, send, store, wait_closed, wait_execution

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "statemachine" / "refund_inquiry.asl.json"
TEMPLATE = ROOT / "template.yaml"
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
# Lambda did not run the poll (or did not answer in time): the loop makes it again instead of recording ERROR.
COULD_NOT_RUN = {
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "States.Timeout",
}
# Express stops an execution at 5 minutes, without running any Catch:
# https://docs.aws.amazon.com/step-functions/latest/dg/choosing-workflow-type.html
EXPRESS_MAX_SECONDS = 300
# Transitions, Step Functions' own scheduling and the starter's time between the window's start and StartExecution
# (which only helps) are not in the sums below: this much is kept free for them.
MARGIN_SECONDS = 5
# ASL's defaults for a Retrier field left out (https://states-language.net/spec.html#retrying-after-error).
RETRY_DEFAULTS = {"IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}

State = dict[str, Any]


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DEFINITION.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def states(definition: dict[str, Any]) -> dict[str, State]:
    found: dict[str, State] = definition["States"]
    return found


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def substitutions(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]["RefundInquiryStateMachine"]["Properties"]["DefinitionSubstitutions"]
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


def poll_task(states: dict[str, State]) -> State:
    (task,) = (state for state in states.values() if str(state.get("Resource", "")).endswith(":lambda:invoke"))
    return task


def catcher_for(state: State, error: str) -> dict[str, Any]:
    """The Catch entry that handles ``error`` (the first that names it, else States.ALL), as Step Functions picks."""
    return next(c for c in state["Catch"] if error in c["ErrorEquals"] or c["ErrorEquals"] == ["States.ALL"])


def retry_delays(retrier: dict[str, Any]) -> list[float]:
    """The pause before each retry of a Retrier, at its largest (full jitter only shortens them)."""
    fields = RETRY_DEFAULTS | retrier
    delays = [fields["IntervalSeconds"] * fields["BackoffRate"] ** n for n in range(fields["MaxAttempts"])]
    return [min(delay, retrier.get("MaxDelaySeconds", delay)) for delay in delays]


def worst_case_seconds(state: State) -> float:
    """The longest a Task state can run before it moves on: every Retrier used up (each counts its own attempts),
    every attempt running into the state's TimeoutSeconds, every pause at its largest."""
    delays = [delay for retrier in state.get("Retry", []) for delay in retry_delays(retrier)]
    attempt = float(state["TimeoutSeconds"])
    return (1 + len(delays)) * attempt + sum(delays)


def closing_seconds(states: dict[str, State]) -> float:
    """The longest the error path takes to close the window: the ERROR write, then (refused: the refund is final)
    the write that closes it keeping the final status, each at its worst."""
    return worst_case_seconds(states["Record error outcome"]) + worst_case_seconds(
        states["Close window keeping final status"]
    )


def substituted_definition(substitutions: dict[str, Any]) -> str:
    """The definition as Step Functions receives it, with example values for what CloudFormation fills in."""
    examples = {
        "Partition": "aws",
        "InquireFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:refund-poller-InquireFunction",
        "ResultsTableName": "refund-poller-RefundResultsTable",
        "EventBusName": "default",
        "MissedPollLimit": "8",
    }
    assert set(examples) == set(substitutions)
    return re.sub(r"\$\{([^}]+)\}", lambda m: examples[m.group(1)], DEFINITION.read_text(encoding="utf-8"))


def max_missed_polls(template: dict[str, Any]) -> int:
    """The largest MaxMissedPolls a STANDARD stack can be deployed with (the parameter's pattern, or its automatic
    value)."""
    parameter = template["Parameters"]["MaxMissedPolls"]
    allowed = [n for n in range(1000) if re.fullmatch(parameter["AllowedPattern"], str(n))]
    automatic = template["Resources"]["RefundInquiryStateMachine"]["Properties"]["DefinitionSubstitutions"]
    return max([*allowed, int(automatic["MissedPollLimit"]["Fn::If"][2]["Fn::If"][1])])


# --- The definition is valid ASL --------------------------------------------------------------------------------


def test_asl_validator_accepts_the_definition(substitutions: dict[str, Any], tmp_path: Path) -> None:
    # node and the npm package are project requirements: `make install` runs `npm ci`.
    assert shutil.which("node") is not None, "node is not installed; asl-validator is an npm package"
    assert ASL_VALIDATOR.exists(), "asl-validator is missing: run `npm ci` at the repository root"
    path = tmp_path / "refund_inquiry.asl.json"
    path.write_text(substituted_definition(substitutions), encoding="utf-8")

    result = subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
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


def test_substitution_variables_are_exactly_those_the_template_provides(template: dict[str, Any]) -> None:
    (machine,) = (r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine")
    used = set(re.findall(r"\$\{([^}]+)\}", DEFINITION.read_text(encoding="utf-8")))

    assert machine["Properties"]["DefinitionUri"] == "statemachine/refund_inquiry.asl.json"
    assert used == set(machine["Properties"]["DefinitionSubstitutions"])


def test_every_arn_takes_its_partition_from_the_stack(states: dict[str, State], substitutions: dict[str, Any]) -> None:
    resources = [state["Resource"] for state in states.values() if "Resource" in state]

    assert resources
    assert all(resource.startswith("arn:${Partition}:") for resource in resources), resources
    assert "arn:aws:" not in DEFINITION.read_text(encoding="utf-8")
    assert substitutions["Partition"] == {"Ref": "AWS::Partition"}


# --- The polling loop -------------------------------------------------------------------------------------------


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
    task = poll_task(states)

    assert task["Parameters"] == {"FunctionName": "${InquireFunctionArn}", "Payload.$": "$"}
    assert task["OutputPath"] == "$.Payload"
    assert states[task["Next"]]["Type"] == "Choice"


# The terminal state each decision ends in: its name tells the outcome in the console's graph.
OUTCOME_STATES = {
    ("done", "SUCCESS", ()): "Refund succeeded",
    ("done", "FAIL", ()): "Refund failed",
    ("done", "NOT_FOUND", ()): "Not found",
    ("done", "UNRESOLVED", ()): "Unresolved at window close",
    ("done", "UNRESOLVED", ("tail",)): "Handed to long tail",
    ("done", "PROCESSING", ("superseded",)): "Superseded by newer window",
    ("done", "SUCCESS", ("superseded",)): "Superseded by newer window",
    ("done", "SUCCESS", ("conflict",)): "Final status contradicted",
    ("done", "FAIL", ("conflict",)): "Final status contradicted",
    ("fail", "ERROR", ()): "Provider refused inquiry",
    ("wait", "PROCESSING", ()): "Wait for next poll",
}


def choose(choice: State, state: dict[str, Any]) -> str:
    """The Choice state's target for ``state``, with the subset of ASL the definition uses (And, StringEquals,
    IsPresent on $.a.b paths), evaluated as Step Functions does: the first matching rule, else Default."""

    def value(path: str) -> Any:
        found: Any = state
        for part in path.removeprefix("$.").split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return found

    def holds(rule: dict[str, Any]) -> bool:
        if "And" in rule:
            return all(holds(inner) for inner in rule["And"])
        if "IsPresent" in rule:
            return (value(rule["Variable"]) is not None) is bool(rule["IsPresent"])
        return bool(value(rule["Variable"]) == rule["StringEquals"])

    return str(next((rule["Next"] for rule in choice["Choices"] if holds(rule)), choice["Default"]))


def test_the_choice_after_a_poll_reads_only_the_decision_the_function_returns(states: dict[str, State]) -> None:
    choice = states[poll_task(states)["Next"]]

    def variables(rule: dict[str, Any]) -> set[str]:
        return set().union(*(variables(r) for r in rule["And"])) if "And" in rule else {rule["Variable"]}

    read = set().union(*(variables(rule) for rule in choice["Choices"]))
    assert {path.rsplit(".", 1)[0] for path in read} == {"$.decision"}
    assert states[choice["Default"]]["Type"] == "Fail"
    assert choose(choice, {"decision": {"next": "done", "status": "NOT_KNOWN_YET"}}) == "Outcome recorded"


@pytest.mark.parametrize(("decision", "terminal"), OUTCOME_STATES.items(), ids=lambda v: str(v))
def test_each_outcome_ends_in_a_terminal_state_named_after_it(
    states: dict[str, State], decision: tuple[str, str, tuple[str, ...]], terminal: str
) -> None:
    next_, status, flags = decision
    choice = states[poll_task(states)["Next"]]

    reached = choose(choice, {"decision": {"next": next_, "status": status, **dict.fromkeys(flags, True)}})

    assert reached == terminal
    expected_type = {"wait": "Wait", "done": "Succeed", "fail": "Fail"}[next_]
    assert states[reached]["Type"] == expected_type


def test_lambda_errors_are_retried_with_backoff_and_jitter(states: dict[str, State]) -> None:
    task = poll_task(states)
    retried = {error for retrier in task["Retry"] for error in retrier["ErrorEquals"]}

    assert retried >= COULD_NOT_RUN | {"States.TaskFailed"}
    for retrier in task["Retry"]:
        assert retrier["BackoffRate"] > 1
        assert retrier["JitterStrategy"] == "FULL"


def test_a_poll_that_could_not_be_made_is_made_again_by_the_loop_up_to_a_limit(
    states: dict[str, State], substitutions: dict[str, Any]
) -> None:
    task = poll_task(states)
    missed, left = states["Poll missed"], states["Missed polls left?"]
    first, again = states["Count first missed poll"], states["Count missed poll"]
    throttled, failed = left["Choices"]

    assert {catcher_for(task, error)["Next"] for error in COULD_NOT_RUN | {"States.TaskFailed"}} == {"Poll missed"}
    assert catcher_for(task, "Lambda.TooManyRequestsException")["ResultPath"] == "$.failure"
    assert missed["Choices"] == [{"Variable": "$.missed", "IsPresent": True, "Next": "Count missed poll"}]
    assert missed["Default"] == "Count first missed poll"
    assert first["Parameters"] == {"polls": 1, "limit.$": "States.StringToJson('${MissedPollLimit}')"}
    assert again["Parameters"] == {"polls.$": "States.MathAdd($.missed.polls, 1)", "limit.$": "$.missed.limit"}
    assert {first["ResultPath"], again["ResultPath"]} == {"$.missed"}
    assert {first["Next"], again["Next"]} == {"Missed polls left?"}
    within_limit = {"Variable": "$.missed.polls", "NumericLessThanEqualsPath": "$.missed.limit"}
    # Lambda did not run it: a long pause (throttling passes, load is shed); the function failed: a short one.
    assert throttled["And"][0] == within_limit
    assert throttled["And"][1]["Or"] == [
        {"Variable": "$.failure.Error", "StringMatches": "Lambda.*"},
        {"Variable": "$.failure.Error", "StringEquals": "States.Timeout"},
    ]
    assert failed == {**within_limit, "Next": "Wait after failed poll"}
    pauses = {states[throttled["Next"]]["Seconds"], states[failed["Next"]]["Seconds"]}
    assert pauses == {20, 2}
    assert {states[throttled["Next"]]["Next"], states[failed["Next"]]["Next"]} == {"Ask provider"}
    # Past the limit, and for anything else (a bad payload is no transient fault), the refund is recorded ERROR.
    assert left["Default"] == catcher_for(task, "States.Runtime")["Next"] == "Record error outcome"
    # EXPRESS never retries a lost poll: its 5-minute arithmetic has no room for one (see below).
    assert substitutions["MissedPollLimit"]["Fn::If"][:2] == ["IsExpress", "0"]


# --- The error path: one event per closed window (outbox) -------------------------------------------------------


def test_a_failed_poll_is_recorded_with_its_event_pending_then_announced_then_cleared(states: dict[str, State]) -> None:
    record = states[catcher_for(poll_task(states), "States.Runtime")["Next"]]
    parameters = record["Parameters"]
    names, values = parameters["ExpressionAttributeNames"], parameters["ExpressionAttributeValues"]
    prepare = states[record["Next"]]
    announce = states[prepare["Next"]]
    cleared = states[announce["Next"]]
    clear = cleared["Parameters"]

    assert record["Resource"] == "arn:${Partition}:states:::dynamodb:updateItem"
    assert parameters["Key"] == {"pk": {"S.$": "$.inquiry.key"}}
    # Only this loop's window, still open: a window the function closed keeps its outcome and its single event, a
    # newer window (another claim, whatever its generation) is not this loop's.
    assert parameters["ConditionExpression"] == (
        "#windowId = :windowId AND #pollingState = :polling AND (attribute_not_exists(#final) OR #final = :false)"
    )
    assert values[":windowId"] == {"S.$": "$.windowId"}
    assert values[":polling"] == {"S": "POLLING"}
    assert values[":error"] == {"S": "ERROR"}
    # The store keeps generation for its claims; the window id alone says whose window it is.
    assert "generation" not in json.dumps(record)
    # The close and the outbox flag are one write: a crash after it cannot lose the event.
    assert "#eventPending = :true" in parameters["UpdateExpression"]
    assert "#eventId = :eventId" in parameters["UpdateExpression"]
    assert "#resolvedAt = :resolvedAt" in parameters["UpdateExpression"]
    assert (names["#eventPending"], names["#eventId"]) == ("eventPending", "eventId")
    assert values[":eventId"] == {"S.$": "$$.Execution.Name"}
    # ...and so is the entry in the outbox sweep's sparse index, dated (approximately) by the window's deadline.
    assert (
        "#pendingShard = :pendingShard, #pendingSince = if_not_exists(#pendingSince, :pendingSince)"
        in parameters["UpdateExpression"]
    )
    assert values[":pendingShard"] == {"S": "pending"}
    assert values[":pendingSince"] == {"N.$": "States.Format('{}', $.deadline)"}
    assert prepare["Parameters"]["eventId.$"] == "$$.Execution.Name"
    assert announce["Resource"] == "arn:${Partition}:states:::events:putEvents"
    assert announce["Parameters"]["Entries"][0]["Source"] == "refund-poller"
    # Cleared only after the event was accepted, and only for this event, as the store clears its own.
    assert clear["UpdateExpression"] == "SET #eventPending = :false"
    assert clear["ConditionExpression"] == "#eventId = :eventId AND #eventPending = :true"
    assert clear["ExpressionAttributeValues"] == {
        ":eventId": {"S.$": "$$.Execution.Name"},
        ":true": {"BOOL": True},
        ":false": {"BOOL": False},
    }
    # A failed announce (or clear) keeps the flag: the next touch of the refund publishes the event.
    failed = {c["Next"] for c in announce["Catch"]} | {c["Next"] for c in cleared["Catch"]}
    assert failed | {cleared["Next"]} == {"Inquiry failed"}
    assert catcher_for(record, "States.Timeout")["Next"] == "Inquiry failed"
    assert states["Inquiry failed"]["Type"] == "Fail"


def test_a_final_refund_keeps_its_status_when_the_error_path_closes_its_window(states: dict[str, State]) -> None:
    record = states["Record error outcome"]
    keep = states[catcher_for(record, "DynamoDB.ConditionalCheckFailedException")["Next"]]
    parameters = keep["Parameters"]
    names, values = parameters["ExpressionAttributeNames"], parameters["ExpressionAttributeValues"]

    assert keep["Resource"] == "arn:${Partition}:states:::dynamodb:updateItem"
    assert parameters["Key"] == {"pk": {"S.$": "$.inquiry.key"}}
    # Still this loop's window and open: the refund is final (a forced re-poll). It is closed, its status kept.
    assert parameters["ConditionExpression"] == "#windowId = :windowId AND #pollingState = :polling"
    assert values[":windowId"] == {"S.$": "$.windowId"}
    assert "status" not in names.values() and "final" not in names.values()
    assert parameters["UpdateExpression"] == (
        "SET #reason = :reason, #pollingState = :idle, #resolvedAt = :resolvedAt, "
        "#eventPending = :true, #eventId = :eventId, "
        "#pendingShard = :pendingShard, #pendingSince = if_not_exists(#pendingSince, :pendingSince)"
    )
    assert values[":pendingSince"] == record["Parameters"]["ExpressionAttributeValues"][":pendingSince"]
    assert values[":reason"] == record["Parameters"]["ExpressionAttributeValues"][":reason"]
    assert values[":eventId"] == {"S.$": "$$.Execution.Name"}
    # The event announces what is stored, the same fields as the ERROR event, and never the $$ timestamp.
    assert parameters["ReturnValues"] == "ALL_NEW"
    assert keep["ResultSelector"] == {
        "status.$": "$.Attributes.status.S",
        "final.$": "$.Attributes.final.BOOL",
        "pollingState.$": "$.Attributes.pollingState.S",
        "reason.$": "$.Attributes.reason.S",
        "eventId.$": "$.Attributes.eventId.S",
    }
    prepare = states[record["Next"]]
    assert {k.removesuffix(".$") for k in keep["ResultSelector"]} == {
        k.removesuffix(".$") for k in prepare["Parameters"]
    }
    assert keep["ResultPath"] == prepare["ResultPath"] == "$.errorOutcome"
    assert keep["Next"] == prepare["Next"] == "Announce error"
    # Closed already (the function owns that event) or superseded (the newer window does): no write, no event.
    assert catcher_for(keep, "DynamoDB.ConditionalCheckFailedException")["Next"] == "Inquiry failed"
    assert catcher_for(keep, "States.Timeout")["Next"] == "Inquiry failed"
    assert keep["Retry"] == record["Retry"]


def test_failures_have_readable_names(states: dict[str, State]) -> None:
    for name, state in states.items():
        if state["Type"] == "Fail":
            assert re.fullmatch(r"[A-Z][A-Za-z]+", state["Error"]), name
            assert state["Cause"], name


def test_the_definition_has_no_timestamp_logic(states: dict[str, State]) -> None:
    text = DEFINITION.read_text(encoding="utf-8")

    # moto's Choice compares only whole-second UTC timestamps, and a context timestamp in the output breaks its
    # DescribeExecution: deadlines are decided in code. The context read: the execution's name (the event id), and
    # the error path's close time, only as a value written to DynamoDB (never in the state).
    assert "Timestamp" not in text
    assert set(re.findall(r"\$\$\.[A-Za-z.]+", text)) == {"$$.Execution.Name", "$$.State.EnteredTime"}
    for name, state in states.items():
        values = state.get("Parameters", {}).get("ExpressionAttributeValues", {})
        written = [value for value in values.values() if value == {"S.$": "$$.State.EnteredTime"}]
        # Only as a string value of a DynamoDB write, never selected back into the state.
        assert json.dumps(state).count("$$.State.EnteredTime") == len(written), name
        assert "resolvedAt" not in json.dumps(state.get("ResultSelector", {})), name


# --- Time bounds (docs/internals.md, "Timeouts, retries and concurrency") ---------------------------------------


def test_every_task_has_a_timeout_above_what_it_calls(states: dict[str, State], template: dict[str, Any]) -> None:
    inquire_timeout = template["Resources"]["InquireFunction"]["Properties"]["Timeout"]

    assert all(isinstance(state.get("TimeoutSeconds"), int) for state in states.values() if state["Type"] == "Task")
    # Lambda's own timeout ends a slow poll first (Sandbox.Timedout, a TaskFailed); TimeoutSeconds bounds the rest.
    assert inquire_timeout < poll_task(states)["TimeoutSeconds"]


def test_express_executions_close_their_window_within_five_minutes(states: dict[str, State]) -> None:
    # With no missed polls (EXPRESS), the last poll starts before the window's deadline (the function closes the
    # window once another interval would pass it) and may use up every retry; an error then must be recorded.
    # Announce and clear may be cut off by the 5-minute stop: the outbox flag keeps the event.
    worst = EXPRESS_MAX_WINDOW_SECONDS + worst_case_seconds(poll_task(states)) + closing_seconds(states)

    assert worst + MARGIN_SECONDS <= EXPRESS_MAX_SECONDS, worst


def test_standard_executions_end_before_the_state_machine_timeout(
    definition: dict[str, Any], states: dict[str, State], template: dict[str, Any]
) -> None:
    # Hitting TimeoutSeconds skips every Catch and leaves the item POLLING: the bounds must end the loop first.
    windows = [spec["MaxValue"] for name, spec in template["Parameters"].items() if name.endswith("WindowSeconds")]
    poll = worst_case_seconds(poll_task(states))
    missed_poll = max(states[name]["Seconds"] for name in ("Wait after missed poll", "Wait after failed poll")) + poll
    error_path = closing_seconds(states) + sum(
        worst_case_seconds(states[n]) for n in ("Announce error", "Error announced")
    )
    worst = max(*windows, DURATION_BOUNDS[1]) + max_missed_polls(template) * missed_poll + poll + error_path

    assert worst + MARGIN_SECONDS <= definition["TimeoutSeconds"], worst


def test_the_bounds_arithmetic_fails_when_a_retry_is_raised(states: dict[str, State]) -> None:
    raised = json.loads(json.dumps(poll_task(states)))
    raised["Retry"][0]["MaxAttempts"] += 1

    assert worst_case_seconds(raised) > worst_case_seconds(poll_task(states)) + raised["TimeoutSeconds"]
    assert (
        EXPRESS_MAX_WINDOW_SECONDS + worst_case_seconds(raised) + closing_seconds(states) + MARGIN_SECONDS
        > EXPRESS_MAX_SECONDS
    )


# --- The real definition on the local stack ---------------------------------------------------------------------


class ReservedConcurrencyExceededError(JsonRESTError):
    """The Invoke API's answer when a function's reserved concurrency is used up (0: always)."""

    code = 429

    def __init__(self) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")
        self.description = json.dumps(
            {
                "__type": "TooManyRequestsException",
                "message": "Rate Exceeded.",
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                "Type": "User",
            }
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # One lost poll is retried: enough to see both the retry and the limit within a test's time.
    overrides = {**FAST_POLICY, "MaxMissedPolls": "1"}
    with DevStack(tmp_path_factory.mktemp("asl"), parameter_overrides=overrides) as running:
        yield running


@pytest.fixture
def reserved_concurrency_throttles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda refuses every invocation of a function whose reserved concurrency is 0 (HTTP 429,
    TooManyRequestsException; https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html); moto
    runs it anyway. Step Functions then sees Lambda.TooManyRequestsException, as on AWS."""
    invoke = LambdaFunction.invoke

    def throttled(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
        if self.reserved_concurrency is not None and int(self.reserved_concurrency) == 0:
            raise ReservedConcurrencyExceededError()
        return invoke(self, body, request_headers, response_headers)

    monkeypatch.setattr(LambdaFunction, "invoke", throttled)


class InquireReservation:
    """Sets Inquire's reserved concurrency through the Lambda API, and puts the deployed value back."""

    def __init__(self, stack: DevStack) -> None:
        self.client = stack.client("lambda")
        self.name = stack.cloud.function_name("InquireFunction")
        self.deployed = self.client.get_function_concurrency(FunctionName=self.name).get("ReservedConcurrentExecutions")

    def set(self, value: int) -> None:
        self.client.put_function_concurrency(FunctionName=self.name, ReservedConcurrentExecutions=value)

    def restore(self) -> None:
        if self.deployed is None:
            self.client.delete_function_concurrency(FunctionName=self.name)
        else:
            self.set(int(self.deployed))


def execution_of(stack: DevStack, key: str, timeout: float = 15) -> str:
    results = store(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arn = (results.get(key) or {}).get("executionArn")
        if arn:
            return str(arn)
        time.sleep(0.1)
    raise AssertionError(f"no execution started for {key}")


def wait_until_entered(stack: DevStack, arn: str, names: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if entered_states(stack, arn) & names:
            return
        time.sleep(0.2)


def entered_states(stack: DevStack, arn: str) -> set[str]:
    return {e["stateEnteredEventDetails"]["name"] for e in history(stack, arn) if "stateEnteredEventDetails" in e}


def task_errors(stack: DevStack, arn: str) -> list[str]:
    return [e["taskFailedEventDetails"]["error"] for e in history(stack, arn) if e["type"] == "TaskFailed"]


def test_a_throttled_poll_is_made_again_and_the_refund_gets_its_outcome(
    stack: DevStack, reserved_concurrency_throttles: None
) -> None:
    refund = f"processing1-success--throttled-{uuid.uuid4().hex[:8]}"
    key = item_key("antom", "default", refund_request_id=refund)
    inquire = InquireReservation(stack)
    inquire.set(0)  # every poll throttled until the loop has given up on one
    try:
        send(stack, {"provider": "antom", "refundRequestId": refund, "polling": {"maxDurationSeconds": 60}})
        arn = execution_of(stack, key)
        wait_until_entered(stack, arn, {"Poll missed", "Record error outcome"})
    finally:
        inquire.restore()
    item = wait_closed(stack, [key], timeout=60)[key]
    execution = wait_execution(stack, arn, timeout=30)

    assert (item["status"], item["final"]) == ("SUCCESS", True)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["missed"] == {"polls": 1, "limit": 1}
    # The first attempt and its one retry were refused; then the loop paused and polled again.
    assert task_errors(stack, arn).count("Lambda.TooManyRequestsException") == 2
    assert "Wait after missed poll" in entered_states(stack, arn)


def test_a_poll_the_function_failed_is_made_again_and_the_refund_gets_its_outcome(stack: DevStack) -> None:
    refund = f"processing1-fail--crashing-{uuid.uuid4().hex[:8]}"
    key = item_key("alipayplus", "default", refund_request_id=refund)
    stack.cloud.inject_failures("InquireFunction", rate=1.0)  # every attempt of a poll crashes, then none
    try:
        send(stack, {"provider": "alipayplus", "refundRequestId": refund, "polling": {"maxDurationSeconds": 60}})
        arn = execution_of(stack, key)
        wait_until_entered(stack, arn, {"Poll missed", "Record error outcome"})
    finally:
        stack.cloud.inject_failures("InquireFunction", rate=0.0)
    item = wait_closed(stack, [key], timeout=60)[key]
    execution = wait_execution(stack, arn, timeout=30)

    assert (item["status"], item["final"]) == ("FAIL", True)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["missed"] == {"polls": 1, "limit": 1}
    assert task_errors(stack, arn).count("Runtime.ExitError") == 3  # the attempt and its two retries
    assert "Wait after failed poll" in entered_states(stack, arn)


def test_a_poll_lost_more_often_than_the_limit_is_recorded_error_and_announced_once(
    stack: DevStack, reserved_concurrency_throttles: None
) -> None:
    refund = f"processing3-success--throttled-{uuid.uuid4().hex[:8]}"
    key = item_key("antom", "default", refund_request_id=refund)
    inquire = InquireReservation(stack)
    inquire.set(0)
    try:
        send(stack, {"provider": "antom", "refundRequestId": refund})
        arn = execution_of(stack, key)
        execution = wait_execution(stack, arn, timeout=60)
    finally:
        inquire.restore()
    item = store(stack).get(key)
    announced = events_by_key(stack, expected=1).get(refund, [])

    assert (execution["status"], execution.get("error")) == ("FAILED", "InquiryFailed")
    assert item is not None
    assert (item["status"], item["pollingState"]) == ("ERROR", "IDLE")
    assert item["reason"].startswith("Lambda.TooManyRequestsException: ")
    # Two polls, each with its retry.
    assert task_errors(stack, arn).count("Lambda.TooManyRequestsException") == 4
    # The event went out, carrying the id the item recorded; the outbox flag is off.
    assert item["eventId"] == execution["name"]
    assert not item.get("eventPending")
    assert [(e["status"], e["eventId"]) for e in announced] == [("ERROR", execution["name"])]


def test_when_the_error_event_cannot_be_published_it_stays_pending_on_the_item(
    stack: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # PutEvents answers HTTP 200 with FailedEntryCount > 0: Step Functions fails the task (EventBridge.FailedEntry).
        return [{"ErrorCode": "InternalFailure", "ErrorMessage": "refused by the test"} for _ in events]

    refund = f"processing2-success--unannounced-{uuid.uuid4().hex[:8]}"
    key = item_key("alphapay", "default", refund_id=refund)
    monkeypatch.setattr(EventsBackend, "put_events", refused)
    stack.cloud.inject_failures("InquireFunction", rate=1.0)
    try:
        send(stack, {"provider": "alphapay", "refundId": refund})
        arn = execution_of(stack, key)
        execution = wait_execution(stack, arn, timeout=60)
    finally:
        stack.cloud.inject_failures("InquireFunction", rate=0.0)
    item = store(stack).get(key)

    assert (execution["status"], execution.get("error")) == ("FAILED", "InquiryFailed")
    assert item is not None
    assert (item["status"], item["pollingState"]) == ("ERROR", "IDLE")
    assert (item["eventPending"], item["eventId"]) == (True, execution["name"])
    assert task_errors(stack, arn)[-3:] == ["EventBridge.FailedEntry"] * 3
    assert "Error announced" not in entered_states(stack, arn)
    # The close put the item in the outbox sweep's index, dated by the window's deadline (12 s after the start).
    assert item["pendingShard"] == "pending" and abs(float(item["pendingSince"]) - time.time()) < 60

    # Nothing touches the refund again. EventBridge works again; the scheduled sweep (as `sam local invoke` sends
    # it) leaves the event alone inside the grace, then publishes it exactly once.
    monkeypatch.undo()
    sweep = json.loads((ROOT / "events" / "scheduled_outbox_sweep.json").read_text(encoding="utf-8"))
    early = stack.cloud.invoke("StartInquiryFunction", sweep)
    assert early.function_error is None and refund_events(stack, "refundId", refund, wait_seconds=1) == []
    stack.client("dynamodb").update_item(  # the grace passes
        TableName=str(stack.outputs["ResultsTableName"]),
        Key={"pk": {"S": key}},
        UpdateExpression="SET pendingSince = :aged",
        ExpressionAttributeValues={":aged": {"N": str(int(time.time()) - 600)}},
    )
    time.sleep(1)  # the index lags behind the table (half a second on the strict local stack, as on AWS)
    swept = stack.cloud.invoke("StartInquiryFunction", sweep)
    again = stack.cloud.invoke("StartInquiryFunction", sweep)
    announced = refund_events(stack, "refundId", refund)
    item = store(stack).get(key)

    assert (swept.function_error, again.function_error) == (None, None)
    assert swept.payload["published"] >= 1 and again.payload["published"] == 0, (swept, again)
    assert [(e["status"], e["eventId"]) for e in announced] == [("ERROR", execution["name"])]
    assert item is not None and item["eventPending"] is False and "pendingSince" not in item


def refund_events(stack: DevStack, field: str, refund: str, wait_seconds: int = 2) -> list[dict[str, Any]]:
    """The result events published for one refund since the last drain (other tests' events are dropped)."""
    return [e["detail"] for e in stack.result_events(wait_seconds=wait_seconds) if e["detail"].get(field) == refund]


def test_a_forced_poll_of_a_final_refund_that_keeps_failing_closes_its_window_keeping_the_status(
    stack: DevStack,
) -> None:
    refund = f"success--forced-{uuid.uuid4().hex[:8]}"
    key = item_key("alipayplus", "default", refund_request_id=refund)
    send(stack, {"provider": "alipayplus", "refundRequestId": refund})
    assert wait_closed(stack, [key])[key]["status"] == "SUCCESS"
    assert len(refund_events(stack, "refundRequestId", refund)) == 1  # the first window's event
    stack.sandbox.set_script("alipayplus", refund, "processing")  # the forced poll starts a loop
    stack.cloud.inject_failures("InquireFunction", rate=1.0)  # whose every poll crashes
    try:
        send(stack, {"provider": "alipayplus", "refundRequestId": refund, "force": True})
        arn = execution_of(stack, key)
        execution = wait_execution(stack, arn, timeout=60)
    finally:
        stack.cloud.inject_failures("InquireFunction", rate=0.0)
    item = store(stack).get(key)
    announced = refund_events(stack, "refundRequestId", refund)

    assert (execution["status"], execution.get("error")) == ("FAILED", "InquiryFailed")
    assert item is not None
    # The window is closed; the final status stays, the failure is its reason.
    assert (item["status"], item["final"], item["pollingState"]) == ("SUCCESS", True, "IDLE")
    assert "Close window keeping final status" in entered_states(stack, arn)
    assert item["reason"].startswith("Runtime.ExitError: ")
    assert item["resolvedAt"]
    # One event, announcing the kept status, with the id the item recorded; the outbox flag is off.
    assert (item["eventId"], item["eventPending"]) == (execution["name"], False)
    assert [(e["status"], e["final"], e["pollingState"], e["eventId"]) for e in announced] == [
        ("SUCCESS", True, "IDLE", execution["name"])
    ]


def test_the_error_path_of_a_superseded_window_writes_nothing_and_publishes_nothing(stack: DevStack) -> None:
    refund = f"processing--superseded-{uuid.uuid4().hex[:8]}"
    key = item_key("alphapay", "default", refund_id=refund)
    dynamodb, table = stack.client("dynamodb"), str(stack.outputs["ResultsTableName"])
    stack.cloud.inject_failures("InquireFunction", rate=1.0)
    try:
        send(stack, {"provider": "alphapay", "refundId": refund})
        arn = execution_of(stack, key)
        wait_until_entered(stack, arn, {"Poll missed"})
        # A newer claim's window. Its generation is this loop's, as when the item was deleted (TTL) and claimed
        # again: only the window id tells the two windows apart.
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": key}},
            UpdateExpression="SET #windowId = :newer",
            ExpressionAttributeNames={"#windowId": "windowId"},
            ExpressionAttributeValues={":newer": {"S": uuid.uuid4().hex}},
        )
        newer = store(stack).get(key)
        execution = wait_execution(stack, arn, timeout=60)
    finally:
        stack.cloud.inject_failures("InquireFunction", rate=0.0)

    assert (execution["status"], execution.get("error")) == ("FAILED", "InquiryFailed")
    assert "Record error outcome" in entered_states(stack, arn)
    assert newer is not None and newer["pollingState"] == "POLLING"
    assert store(stack).get(key) == newer  # the newer window's item, untouched
    assert refund_events(stack, "refundId", refund) == []


def test_each_outcome_of_a_real_run_ends_in_the_terminal_state_named_after_it(stack: DevStack) -> None:
    run = uuid.uuid4().hex[:8]
    cases = {
        f"processing1-success--named-{run}": "Refund succeeded",
        f"processing1-fail--named-{run}": "Refund failed",
        f"processing1-notfound--named-{run}": "Not found",
        f"processing--named-{run}": "Unresolved at window close",
    }
    keys = {refund: item_key("antom", "default", refund_request_id=refund) for refund in cases}
    send(stack, *({"provider": "antom", "refundRequestId": r, "polling": {"maxDurationSeconds": 6}} for r in cases))
    arns = {refund: execution_of(stack, key) for refund, key in keys.items()}
    wait_closed(stack, list(keys.values()), timeout=60)

    for refund, terminal in cases.items():
        execution = wait_execution(stack, arns[refund], timeout=30)
        ends = [
            e["stateEnteredEventDetails"]["name"]
            for e in history(stack, arns[refund])
            if e["type"] == "SucceedStateEntered"
        ]
        assert (execution["status"], ends) == ("SUCCEEDED", [terminal]), refund
