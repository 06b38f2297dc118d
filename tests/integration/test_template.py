"""template.yaml passes AWS's own checks, offline, and keeps the promises of issue 3.

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
from pathlib import Path
from typing import Any

import pytest

# Neither package ships type information (no py.typed); they are only called here, with plain dicts.
from samcli.yamlhelper import yaml_parse  # type: ignore[import-untyped]
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

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
    "ITEM_TTL_DAYS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
}
STARTER_ENVIRONMENT = {"STATE_MACHINE_ARN", "DLQ_URL", "WORKFLOW_TYPE"}
# What the Docker-free deployer resolves (devtools/refund_poller/local); GetAtt only for these attributes.
SUPPORTED_INTRINSICS = {"Ref", "Fn::Sub", "Fn::GetAtt", "Fn::If", "Fn::Equals", "Fn::Not", "Condition"}
SUPPORTED_GETATT_ATTRIBUTES = {"Arn"}


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

    assert {role for role, _ in grants} == {"StartInquiryFunctionRole", "InquireFunctionRole"}
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
    (event,) = events.values()

    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["InquiryQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 10
    assert 0 < event["Properties"]["MaximumBatchingWindowInSeconds"] <= 5
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_results_table_has_pitr_sse_ttl_and_the_refund_id_index(sam_template: dict[str, Any]) -> None:
    table = sam_template["Resources"]["RefundResultsTable"]
    properties = table["Properties"]
    (index,) = properties["GlobalSecondaryIndexes"]

    assert table["Type"] == "AWS::DynamoDB::Table"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert index["IndexName"] == "refundId-index"
    assert index["KeySchema"] == [{"AttributeName": "refundIdKey", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


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

    for name in ("StartInquiryFunction", "InquireFunction"):
        function = function_properties(sam_template, name)
        assert function["Runtime"] == "python3.13"
        assert function["Architectures"] == ["arm64"]
        assert function["Handler"] == "app.lambda_handler"
        assert function["Layers"] == [{"Ref": "RefundCoreLayer"}]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def test_alarms_watch_the_dlq_failed_and_timed_out_executions_and_auth_errors(sam_template: dict[str, Any]) -> None:
    alarms = resources_of_type(sam_template, "AWS::CloudWatch::Alarm").values()
    watched = {(alarm["Properties"]["Namespace"], alarm["Properties"]["MetricName"]) for alarm in alarms}

    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("RefundPoller", "ProviderAuthErrors"),
    }


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
