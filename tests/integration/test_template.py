"""template.yaml passes AWS's own checks, offline, and keeps the promises of issues 3 and 9.

cfn-lint does not expand SAM resources, so the template is also expanded with aws-sam-translator (as CloudFormation
does) and the result is linted and inspected: IAM statements only exist after the expansion.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import requires, version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

# Neither package ships type information (no py.typed); they are only called here, with plain dicts.
from samcli.yamlhelper import yaml_parse  # type: ignore[import-untyped]
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from refund_core import store
from refund_core.aws import wiring
from refund_core.domain.tail import TailPolicy, policies_from_json

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
VENV_BIN = Path(sys.executable).parent
REGION = "us-east-1"

# Step Functions log delivery: the only actions that may be granted on Resource "*" (they have no resource-level
# permissions; template.yaml says so beside the statement).
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
COMMON_ENVIRONMENT = {
    "RESULTS_TABLE",
    "PROFILE_SECRET_PREFIX",
    "EVENT_BUS_NAME",
    "POLLING_POLICY",
    "PROVIDER_CONNECT_TIMEOUT",
    "PROVIDER_READ_TIMEOUT",
    "PROVIDER_TOTAL_TIMEOUT",
    "ITEM_TTL_DAYS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
}
STARTER_ENVIRONMENT = {"STATE_MACHINE_ARN", "DLQ_URL", "WORKFLOW_TYPE"}
# What the Docker-free deployer resolves (devtools/refund_poller/local); GetAtt only for these attributes.
SUPPORTED_INTRINSICS = {"Ref", "Fn::Sub", "Fn::GetAtt", "Fn::If", "Fn::Equals", "Fn::Not", "Condition"}
SUPPORTED_GETATT_ATTRIBUTES = {"Arn"}
# The DynamoDB calls the code makes (refund_core/store.py, alias items with PutItem) and the state machine's error path.
DYNAMODB_ACTIONS = {
    "StartInquiryFunctionRole": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"},
    "InquireFunctionRole": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    "NotifyFunctionRole": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
    "RefundInquiryStateMachineRole": {"dynamodb:UpdateItem"},
}
LAYER_REQUIREMENTS = ROOT / "layers" / "refund_core" / "requirements.txt"
# Where the layer's packages are evaluated: Lambda's python3.13 on arm64 (for environment markers).
LAMBDA_ENVIRONMENT = {
    "python_version": "3.13",
    "python_full_version": "3.13.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
}


class OfflineManagedPolicyLoader:
    """Stands in for the translator's IAM-backed loader: the translator's bundled map covers the policies SAM adds."""

    def load(self) -> dict[str, str]:
        return {}


def tool(name: str) -> str:
    """The tool installed beside the running interpreter (the project's .venv), else the one on PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed: run `make install`"
    return found


def run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "AWS_DEFAULT_REGION": REGION, "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(args, cwd=ROOT, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def load_sam_template() -> dict[str, Any]:
    template: dict[str, Any] = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    return template


def with_inline_code(template: dict[str, Any]) -> dict[str, Any]:
    """What `sam package` would upload, replaced by placeholders; the ASL inlined so that cfn-lint checks it too."""
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeUri"] = f"s3://placeholder-bucket/{properties['CodeUri']}"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = f"s3://placeholder-bucket/{properties['ContentUri']}"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            properties["Definition"] = json.loads((ROOT / properties.pop("DefinitionUri")).read_text(encoding="utf-8"))
    return template


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    return load_sam_template()


@pytest.fixture(scope="module")
def expanded() -> Iterator[dict[str, Any]]:
    """The CloudFormation template the Serverless transform produces."""
    with pytest.MonkeyPatch.context() as patch:
        # The translator derives the partition from the boto3 region.
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        result: dict[str, Any] = transform(with_inline_code(load_sam_template()), {}, OfflineManagedPolicyLoader())
    yield result


def resources_of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def iam_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, role in resources_of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def intrinsics(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                yield key, value
            yield from intrinsics(value)
    elif isinstance(node, list):
        for item in node:
            yield from intrinsics(item)


def function_properties(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A function's properties with the Globals applied (environment variables merged, as SAM does)."""
    globals_ = dict(template["Globals"]["Function"])
    own: dict[str, Any] = template["Resources"][name]["Properties"]
    variables = {
        **globals_.get("Environment", {}).get("Variables", {}),
        **own.get("Environment", {}).get("Variables", {}),
    }
    return {**globals_, **own, "Environment": {"Variables": variables}}


def test_sam_validate_with_lint_passes() -> None:
    result = run([tool("sam"), "validate", "--lint", "--template-file", str(TEMPLATE), "--region", REGION])

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sam_expanded_template_passes_cfn_lint(expanded: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(expanded, indent=1), encoding="utf-8")

    result = run([tool("cfn-lint"), "--regions", REGION, "--", str(path)])

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_expansion_has_the_resources_the_contracts_name(expanded: dict[str, Any]) -> None:
    names = set(expanded["Resources"])

    assert {
        "InquiryQueue",
        "InquiryDLQ",
        "StartInquiryFunction",
        "InquireFunction",
        "RefundInquiryStateMachine",
        "RefundResultsTable",
    } <= names
    assert any(name.startswith("RefundCoreLayer") for name in names)


def test_no_iam_statement_grants_a_wildcard_action(expanded: dict[str, Any]) -> None:
    wildcards = [
        (role, action)
        for role, statement in iam_statements(expanded)
        for action in as_list(statement["Action"])
        if "*" in action
    ]

    assert wildcards == []


def test_only_log_delivery_is_granted_on_every_resource(expanded: dict[str, Any]) -> None:
    on_everything = {
        action
        for _, statement in iam_statements(expanded)
        if "*" in as_list(statement["Resource"])
        for action in as_list(statement["Action"])
    }

    assert on_everything <= LOG_DELIVERY_ACTIONS


def test_functions_may_read_only_the_merchant_profile_secrets(expanded: dict[str, Any]) -> None:
    grants = [
        (role, statement)
        for role, statement in iam_statements(expanded)
        if any(action.startswith("secretsmanager:") for action in as_list(statement["Action"]))
    ]

    assert {role for role, _ in grants} == {"StartInquiryFunctionRole", "InquireFunctionRole", "NotifyFunctionRole"}
    for _, statement in grants:
        assert as_list(statement["Action"]) == ["secretsmanager:GetSecretValue"]
        assert "secret:${ProfileSecretPrefix}*" in json.dumps(statement["Resource"])


def test_queue_visibility_timeout_is_at_least_six_times_the_starter_timeout(sam_template: dict[str, Any]) -> None:
    starter_timeout = function_properties(sam_template, "StartInquiryFunction")["Timeout"]
    queue = sam_template["Resources"]["InquiryQueue"]["Properties"]

    assert queue["VisibilityTimeout"] >= 6 * starter_timeout


def test_dead_letter_queue_keeps_messages_14_days_after_at_least_5_receives(sam_template: dict[str, Any]) -> None:
    queue = sam_template["Resources"]["InquiryQueue"]["Properties"]
    dlq = sam_template["Resources"]["InquiryDLQ"]["Properties"]

    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["InquiryDLQ", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 5
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["SqsManagedSseEnabled"] is True
    assert dlq["SqsManagedSseEnabled"] is True


def test_starter_reads_the_queue_in_batches_and_reports_partial_failures(sam_template: dict[str, Any]) -> None:
    events = sam_template["Resources"]["StartInquiryFunction"]["Properties"]["Events"]
    event = events["InquiryMessages"]

    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["InquiryQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 10
    assert 0 < event["Properties"]["MaximumBatchingWindowInSeconds"] <= 5
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_results_table_has_pitr_sse_ttl_and_the_refund_id_index(sam_template: dict[str, Any]) -> None:
    table = sam_template["Resources"]["RefundResultsTable"]
    properties = table["Properties"]
    index, pending = properties["GlobalSecondaryIndexes"]

    assert table["Type"] == "AWS::DynamoDB::Table"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert index["IndexName"] == "refundId-index"
    assert index["KeySchema"] == [{"AttributeName": "refundIdKey", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    # The outbox sweep's sparse index (docs/internals.md, "Result events (outbox)").
    assert pending["IndexName"] == store.PENDING_INDEX
    assert pending["KeySchema"] == [
        {"AttributeName": store.PENDING_SHARD, "KeyType": "HASH"},
        {"AttributeName": store.PENDING_SINCE, "KeyType": "RANGE"},
    ]
    assert pending["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_the_starter_sweeps_the_outbox_on_a_schedule_and_may_query_the_pending_index(
    sam_template: dict[str, Any],
) -> None:
    sweep = sam_template["Resources"]["StartInquiryFunction"]["Properties"]["Events"]["OutboxSweep"]
    (statement,) = [
        s
        for p in sam_template["Resources"]["StartInquiryFunction"]["Properties"]["Policies"]
        if isinstance(p, dict) and "Statement" in p
        for s in p["Statement"]
        if s.get("Sid") == "ReadAndWriteRefundItems"
    ]

    assert sweep["Type"] == "Schedule" and sweep["Properties"]["Schedule"] == "rate(5 minutes)"
    assert "dynamodb:Query" in statement["Action"]
    assert {"Fn::Sub": "${RefundResultsTable.Arn}/index/pendingEvents-index"} in statement["Resource"]


def test_functions_get_the_environment_of_docs_internals(sam_template: dict[str, Any]) -> None:
    starter = function_properties(sam_template, "StartInquiryFunction")["Environment"]["Variables"]
    inquire = function_properties(sam_template, "InquireFunction")["Environment"]["Variables"]

    assert set(starter) >= COMMON_ENVIRONMENT | STARTER_ENVIRONMENT
    assert set(inquire) >= COMMON_ENVIRONMENT
    assert not set(inquire) & STARTER_ENVIRONMENT


def test_polling_policy_renders_to_the_json_of_docs_internals(sam_template: dict[str, Any]) -> None:
    text = sam_template["Globals"]["Function"]["Environment"]["Variables"]["POLLING_POLICY"]["Fn::Sub"]
    for name, parameter in sam_template["Parameters"].items():
        text = text.replace("${" + name + "}", str(parameter.get("Default")))

    assert json.loads(text) == {
        "antom": {"intervalSeconds": 5, "maxDurationSeconds": 60, "notFoundIntervalSeconds": 15, "notFoundMaxPolls": 3},
        "alipayplus": {"intervalSeconds": 5, "maxDurationSeconds": 60},
        "alphapay": {"intervalSeconds": 5, "maxDurationSeconds": 60},
    }


def test_functions_and_layer_run_python_3_13_on_arm64(sam_template: dict[str, Any]) -> None:
    layer = sam_template["Resources"]["RefundCoreLayer"]

    for name in ("StartInquiryFunction", "InquireFunction", "NotifyFunction"):
        function = function_properties(sam_template, name)
        assert function["Runtime"] == "python3.13"
        assert function["Architectures"] == ["arm64"]
        assert function["Handler"] == "app.lambda_handler"
        assert function["Layers"] == [{"Ref": "RefundCoreLayer"}]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def test_alarms_watch_dlq_failed_and_timed_out_executions_auth_errors_final_conflicts(
    sam_template: dict[str, Any],
) -> None:
    alarms = resources_of_type(sam_template, "AWS::CloudWatch::Alarm").values()
    watched = {(alarm["Properties"]["Namespace"], alarm["Properties"]["MetricName"]) for alarm in alarms}

    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("RefundPoller", "ProviderAuthErrors"),
        ("RefundPoller", "FinalStatusConflicts"),
        ("RefundPoller", "OutboxEventsStuck"),
        ("RefundPoller", "NotificationsRejected"),
        ("RefundPoller", "TailGaveUp"),
    }


def test_the_notification_signature_alarm_watches_the_metric_notify_emits(sam_template: dict[str, Any]) -> None:
    # functions/notify emits NotificationsRejected with single_metric: dimensions reason and service, nothing else.
    alarm = sam_template["Resources"]["NotificationSignaturesRefusedAlarm"]["Properties"]
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}

    assert dimensions == {"reason": "bad-signature", "service": {"Ref": "AWS::StackName"}}


def test_outputs_name_what_merchants_and_the_local_runtime_need(sam_template: dict[str, Any]) -> None:
    assert set(sam_template["Outputs"]) == {
        "InquiryQueueUrl",
        "InquiryQueueArn",
        "InquiryDLQUrl",
        "ResultsTableName",
        "StateMachineArn",
        "StartInquiryFunctionName",
        "InquireFunctionName",
        "EventBusName",
        "ProfileSecretPrefix",
        "NotificationsUrl",
        "NotifyFunctionName",
        "TailScheduleGroupName",
    }


def test_template_uses_only_intrinsics_the_local_runtime_resolves(sam_template: dict[str, Any]) -> None:
    used = list(intrinsics({key: sam_template[key] for key in ("Globals", "Resources", "Outputs", "Conditions")}))

    subs = [value if isinstance(value, str) else value[0] for name, value in used if name == "Fn::Sub"]
    attributes_in_subs = {
        match.split(".", 1)[1] for text in subs for match in re.findall(r"\$\{([^}!]+)\}", text) if "." in match
    }

    assert {name for name, _ in used} <= SUPPORTED_INTRINSICS
    assert {value[1] for name, value in used if name == "Fn::GetAtt"} <= SUPPORTED_GETATT_ATTRIBUTES
    assert attributes_in_subs <= SUPPORTED_GETATT_ATTRIBUTES


def python313_bin_dir() -> str:
    found = shutil.which("python3.13")
    if found:
        return str(Path(found).parent)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(pyenv_root.glob("versions/3.13*/bin/python3.13"))
    assert candidates, "sam build needs python3.13 on PATH (the Lambda runtime); `make test` puts pyenv's there"
    return str(candidates[-1].parent)


def test_sam_build_succeeds_with_python_3_13(tmp_path: Path) -> None:
    # Build outside the repository and without samconfig's cache, so the test leaves no .aws-sam behind.
    build_dir = tmp_path / "build"
    path = f"{python313_bin_dir()}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

    result = run(
        [tool("sam"), "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir), "--no-cached"],
        env={"PATH": path},
        timeout=600,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (build_dir / "RefundCoreLayer" / "python" / "refund_core" / "__init__.py").exists()
    assert (build_dir / "StartInquiryFunction" / "app.py").exists()
    assert (build_dir / "InquireFunction" / "app.py").exists()


def test_env_json_overrides_only_variables_the_template_declares(sam_template: dict[str, Any]) -> None:
    # `sam local invoke --env-vars` silently ignores variables the template does not declare for the function.
    env = json.loads((ROOT / "events" / "env.json").read_text(encoding="utf-8"))
    shared = set(env.pop("Parameters", {}))

    for name in ("StartInquiryFunction", "InquireFunction"):
        declared = set(function_properties(sam_template, name)["Environment"]["Variables"])
        assert shared | set(env.get(name, {})) <= declared, name
    assert set(env) <= set(resources_of_type(sam_template, "AWS::Serverless::Function"))


def test_names_written_twice_in_the_template_agree(sam_template: dict[str, Any]) -> None:
    # The state machine and DLQ names are repeated (not fetched with GetAtt) to keep to the intrinsics listed above.
    resources = sam_template["Resources"]
    machine_name = resources["RefundInquiryStateMachine"]["Properties"]["Name"]["Fn::Sub"]
    dlq_name = resources["InquiryDLQ"]["Properties"]["QueueName"]["Fn::Sub"]
    (describe,) = (
        statement
        for policy in resources["StartInquiryFunction"]["Properties"]["Policies"]
        for statement in policy.get("Statement", [])
        if statement["Action"] == "states:DescribeExecution"
    )
    (dimension,) = resources["InquiryDLQNotEmptyAlarm"]["Properties"]["Dimensions"]

    assert describe["Resource"]["Fn::Sub"].endswith(f":execution:{machine_name}:*")
    assert dimension == {"Name": "QueueName", "Value": {"Fn::Sub": dlq_name}}
    assert resources["StateMachineLogGroup"]["Properties"]["LogGroupName"]["Fn::Sub"].endswith(machine_name)


# --- Issue 9: bounded concurrency, Express limits, least privilege, logs, layer ---------------------------------


def test_the_queue_event_and_inquire_have_bounded_concurrency_by_default(sam_template: dict[str, Any]) -> None:
    parameters = sam_template["Parameters"]
    event = sam_template["Resources"]["StartInquiryFunction"]["Properties"]["Events"]["InquiryMessages"]
    inquire = sam_template["Resources"]["InquireFunction"]["Properties"]

    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "StartInquiryMaxConcurrency"}}
    # The event source mapping's range: https://docs.aws.amazon.com/lambda/latest/dg/API_ScalingConfig.html
    assert (
        parameters["StartInquiryMaxConcurrency"]["MinValue"],
        parameters["StartInquiryMaxConcurrency"]["MaxValue"],
    ) == (
        2,
        1000,
    )
    assert parameters["StartInquiryMaxConcurrency"]["Default"] == 5
    # 0 means "no reservation": a reservation of 0 would throttle every poll.
    assert parameters["InquireReservedConcurrency"]["Default"] == 50
    assert inquire["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReservesInquireConcurrency", {"Ref": "InquireReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert sam_template["Conditions"]["ReservesInquireConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "InquireReservedConcurrency"}, "0"]}]
    }


def test_express_stacks_are_refused_missed_polls_at_deployment(sam_template: dict[str, Any]) -> None:
    (rule,) = sam_template["Rules"].values()
    (assertion,) = rule["Assertions"]
    limit = sam_template["Resources"]["RefundInquiryStateMachine"]["Properties"]["DefinitionSubstitutions"][
        "MissedPollLimit"
    ]

    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "WorkflowType"}, "EXPRESS"]}
    assert assertion["Assert"] == {"Fn::Contains": [["", "0"], {"Ref": "MaxMissedPolls"}]}
    # And whatever the parameter says (the local runtime does not evaluate Rules), EXPRESS gets 0.
    assert limit == {
        "Fn::If": ["IsExpress", "0", {"Fn::If": ["MissedPollsByWorkflowType", "8", {"Ref": "MaxMissedPolls"}]}]
    }


def test_the_dead_letter_queue_takes_a_near_limit_body_with_its_rejection_reason(sam_template: dict[str, Any]) -> None:
    queue = sam_template["Resources"]["InquiryQueue"]["Properties"]
    dlq = sam_template["Resources"]["InquiryDLQ"]["Properties"]

    # SQS allows 1 KiB to 1 MiB (cfn-lint's schema rejects 1048577): the DLQ holds the largest body the source queue
    # accepts plus the reason attributes the starter adds.
    assert queue["MaximumMessageSize"] == 262144
    assert dlq["MaximumMessageSize"] == 1048576


def test_no_x_ray_tracing_and_no_x_ray_grant(expanded: dict[str, Any]) -> None:
    functions = resources_of_type(expanded, "AWS::Lambda::Function").values()
    machine = expanded["Resources"]["RefundInquiryStateMachine"]["Properties"]
    managed = [
        arn
        for role in resources_of_type(expanded, "AWS::IAM::Role").values()
        for arn in role["Properties"].get("ManagedPolicyArns", [])
    ]

    assert all(f["Properties"].get("TracingConfig", {}).get("Mode", "PassThrough") == "PassThrough" for f in functions)
    assert machine.get("TracingConfiguration", {}).get("Enabled", False) is False
    assert not [arn for arn in managed if "Xray" in json.dumps(arn)]


def test_dynamodb_grants_are_exactly_the_calls_the_code_makes(expanded: dict[str, Any]) -> None:
    granted: dict[str, set[str]] = {}
    resources: dict[str, list[str]] = {}
    for role, statement in iam_statements(expanded):
        actions = {a for a in as_list(statement["Action"]) if a.startswith("dynamodb:")}
        if actions:
            granted.setdefault(role, set()).update(actions)
            resources.setdefault(role, []).extend(json.dumps(r) for r in as_list(statement["Resource"]))

    assert granted == DYNAMODB_ACTIONS
    assert all("RefundResultsTable" in r for rs in resources.values() for r in rs)
    assert any("/index/refundId-index" in r for r in resources["StartInquiryFunctionRole"])


def test_functions_log_to_groups_of_the_stack_that_lambda_never_creates(sam_template: dict[str, Any]) -> None:
    resources = sam_template["Resources"]
    for function, group in (
        ("StartInquiryFunction", "StartInquiryLogGroup"),
        ("InquireFunction", "InquireLogGroup"),
        ("NotifyFunction", "NotifyLogGroup"),
    ):
        name = resources[group]["Properties"]["LogGroupName"]["Fn::Sub"]

        assert resources[function]["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": group}
        assert not name.startswith("/aws/lambda/"), name
        assert "${AWS::StackName}" in name


def test_time_budgets_fit_the_function_timeouts(sam_template: dict[str, Any]) -> None:
    margins = wiring.SETUP_MARGIN_SECONDS + wiring.WRITE_MARGIN_SECONDS + wiring.RETURN_MARGIN_SECONDS
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    total = float(variables["PROVIDER_TOTAL_TIMEOUT"])
    starter = function_properties(sam_template, "StartInquiryFunction")
    inquire = function_properties(sam_template, "InquireFunction")
    event = starter["Events"]["InquiryMessages"]

    # The starter's records run side by side (one thread each, pool = batch): each gets the whole provider cap.
    assert starter["Timeout"] - margins >= total
    assert event["Properties"]["BatchSize"] == 10
    # A poll always has room for a provider call.
    assert inquire["Timeout"] - margins >= wiring.MIN_PROVIDER_BUDGET_SECONDS
    assert float(variables["PROVIDER_CONNECT_TIMEOUT"]) < total


def pinned(path: Path) -> dict[str, Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    requirements = [Requirement(line) for line in lines if line]
    return {canonical(r.name): r for r in requirements}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_layer_pins_every_package_it_ships_and_leaves_the_sdk_to_the_runtime() -> None:
    layer = pinned(LAYER_REQUIREMENTS)
    for name, requirement in layer.items():
        (spec,) = requirement.specifier
        assert spec.operator == "==", requirement
        # The tests run the code on these very versions.
        assert version(name) == spec.version, name
        for extra in {"", *requirement.extras}:
            for needed in map(Requirement, requires(name) or []):
                if needed.marker is None or needed.marker.evaluate({**LAMBDA_ENVIRONMENT, "extra": extra}):
                    assert canonical(needed.name) in layer, f"{name} needs {needed}, which the layer does not pin"
                    assert needed.specifier.contains(next(iter(layer[canonical(needed.name)].specifier)).version)
    # The runtime's SDK stays the runtime's; what it shares with the layer is within botocore's own ranges.
    assert not {"boto3", "botocore", "s3transfer"} & set(layer)
    for needed in map(Requirement, requires("botocore") or []):
        if canonical(needed.name) in layer:
            assert needed.specifier.contains(next(iter(layer[canonical(needed.name)].specifier)).version), needed


# --- Issue 12: the long tail ------------------------------------------------------------------------------------


def test_tail_policy_renders_to_the_json_the_functions_parse(sam_template: dict[str, Any]) -> None:
    text = sam_template["Globals"]["Function"]["Environment"]["Variables"]["TAIL_POLICY"]["Fn::Sub"]
    for name, parameter in sam_template["Parameters"].items():
        text = text.replace("${" + name + "}", str(parameter.get("Default")))

    assert policies_from_json(text) == {provider: TailPolicy() for provider in ("antom", "alipayplus", "alphapay")}
    assert sam_template["Parameters"]["TailStillProcessingEvent"]["Default"] == "false"
    for provider in ("Antom", "AlipayPlus", "AlphaPay"):
        pattern = sam_template["Parameters"][f"{provider}TailScheduleSeconds"]["AllowedPattern"]
        assert re.fullmatch(pattern, "120,600,86400") and not re.fullmatch(pattern, "120, 600")
        assert sam_template["Parameters"][f"{provider}TailMaxAgeSeconds"]["MinValue"] == 0


def test_the_scheduler_role_may_only_send_to_the_inquiry_queue(expanded: dict[str, Any]) -> None:
    role = expanded["Resources"]["TailSchedulerRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    statements = [statement for name, statement in iam_statements(expanded) if name == "TailSchedulerRole"]

    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert statements == [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["InquiryQueue", "Arn"]}}
    ]


def test_functions_may_schedule_only_in_the_tail_group_and_pass_only_the_scheduler_role(
    expanded: dict[str, Any],
) -> None:
    grants = [
        (role, statement)
        for role, statement in iam_statements(expanded)
        if any(action.startswith(("scheduler:", "iam:")) for action in as_list(statement["Action"]))
    ]

    assert {role for role, _ in grants} == {"StartInquiryFunctionRole", "InquireFunctionRole"}
    for _, statement in grants:
        if as_list(statement["Action"]) == ["iam:PassRole"]:
            assert statement["Resource"] == {"Fn::GetAtt": ["TailSchedulerRole", "Arn"]}
            assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
        else:
            assert sorted(as_list(statement["Action"])) == ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"]
            resource = statement["Resource"]["Fn::Sub"]
            assert resource == (
                "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${TailScheduleGroup}/*"
            )
