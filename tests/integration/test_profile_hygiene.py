"""Profile hygiene end to end: weak keys and unsafe hosts refused through the CLI and the local stack, and plain
http:// a development-only setting: a deployed stack never allows it, the local stack does.

In a Lambda execution environment the Runtime API listens on 127.0.0.1:9001 (AWS_LAMBDA_RUNTIME_API), plain
http: a merchant profile must not be able to point a deployed function at it, or at anything else over plain
http. The functions read REFUND_POLLER_ALLOW_PLAIN_HTTP (refund_core/aws/profiles.py); template.yaml never sets
it, the local stack sets it on its functions through the Lambda API (devtools/refund_poller/devstack.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

# Neither package ships type information (no py.typed); only called here, with plain dicts.
from samcli.yamlhelper import yaml_parse  # type: ignore[import-untyped]

from refund_core.aws.profiles import PLAIN_HTTP_SETTING, SecretsManagerAdapters
from refund_core.domain import Status
from refund_core.providers import RefundQuery
from refund_core.service import RejectedMessageError
from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.sandbox import Sandbox
from tests.integration.stack_support import drain_dlq, send
from tests.integration.test_cli_inquire import CLI
from tests.unit.keys import weak_key_pair

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "hygiene/merchants/"
# Profile changes each refused by name, with the words of the rule (issue 10 item 7).
UNSAFE_CHANGES = {
    "1024-bit merchant key": ({"privateKey": weak_key_pair(1024)[0]}, "privateKey", "at least 2048 bits"),
    "512-bit provider key": ({"providerPublicKey": weak_key_pair(512)[1]}, "providerPublicKey", "at least 2048 bits"),
    "instance metadata": ({"baseUrl": "https://169.254.169.254"}, "baseUrl", "link-local"),
    "IPv6 metadata": ({"baseUrl": "https://[fd00:ec2::254]"}, "baseUrl", "instance metadata"),
    "unspecified": ({"baseUrl": "https://0.0.0.0:8443"}, "baseUrl", "unspecified"),
    "plain http elsewhere": ({"baseUrl": "http://10.0.0.8:8080"}, "baseUrl", "only for loopback hosts"),
}


# ---- what gets deployed ----------------------------------------------------------------------
def test_no_function_in_the_template_allows_plain_http() -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    template = yaml_parse(text)
    functions = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    global_variables = template["Globals"]["Function"]["Environment"]["Variables"]

    assert functions
    assert PLAIN_HTTP_SETTING not in global_variables
    for name, resource in functions.items():
        assert PLAIN_HTTP_SETTING not in resource["Properties"].get("Environment", {}).get("Variables", {}), name
    assert PLAIN_HTTP_SETTING not in text  # not through a parameter, a mapping or a Sub either


def test_the_sam_local_invoke_environment_does_not_allow_plain_http() -> None:
    # events/env.json drives `sam local invoke` against real AWS services and the provider a secret names.
    assert PLAIN_HTTP_SETTING not in (ROOT / "events" / "env.json").read_text(encoding="utf-8")


# ---- the functions' profile loader, on a real (moto) Secrets Manager ----------------------------
@pytest.fixture
def sandbox_secret(moto_endpoint: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sandbox's wallet profile (baseUrl http://127.0.0.1:<port>) stored as merchant "loopback"'s secret."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv(PLAIN_HTTP_SETTING, raising=False)
    client = boto3.client("secretsmanager", region_name="us-east-1")
    name = f"{PREFIX}alipayplus/loopback"
    text = sandbox.profiles["alipayplus"].read_text()
    try:
        client.create_secret(Name=name, SecretString=text)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=text)
    return name


def test_without_the_setting_a_loopback_http_profile_is_refused_naming_the_field(sandbox_secret: str) -> None:
    adapters = SecretsManagerAdapters(PREFIX)

    with pytest.raises(RejectedMessageError) as caught:
        adapters.adapter("alipayplus", "loopback")

    assert "'baseUrl': must use https://" in str(caught.value)
    assert sandbox_secret in str(caught.value)


def test_with_the_setting_a_loopback_http_profile_reaches_the_sandbox(
    sandbox_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PLAIN_HTTP_SETTING, "loopback")
    adapter = SecretsManagerAdapters(PREFIX).adapter("alipayplus", "loopback")

    seen = adapter.inquire(RefundQuery(refund_id="success--hygiene-loopback"))

    assert (seen.status, seen.verified) == (Status.SUCCESS, True)


@pytest.mark.parametrize("value", ["1", "true", "yes", "LOOPBACK", "all"])
def test_any_other_value_of_the_setting_fails_loudly_at_start(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLAIN_HTTP_SETTING, value)
    with pytest.raises(ValueError, match=f"{PLAIN_HTTP_SETTING} must be unset or 'loopback'"):
        SecretsManagerAdapters(PREFIX)


# ---- the CLI -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(UNSAFE_CHANGES))
def test_the_cli_refuses_a_weak_key_or_an_unsafe_host_naming_the_field_and_sends_nothing(
    sandbox: Sandbox, tmp_path: Path, case: str
) -> None:
    changes, field, rule = UNSAFE_CHANGES[case]
    profile = json.loads(sandbox.profiles["antom"].read_text()) | changes
    path = tmp_path / "unsafe.json"
    path.write_text(json.dumps(profile))
    refund_id = f"success--hygiene-cli-{len(case)}-{case.replace(' ', '_')}"

    done = subprocess.run(  # the installed command, as a merchant runs it
        [*CLI, "inquire", "--profile", str(path), "--refund-id", refund_id],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    first_line = done.stderr.strip().splitlines()[0]
    assert done.returncode == 2, done.stdout
    assert f"merchant profile field '{field}'" in first_line and rule in first_line
    assert profile["privateKey"][40:80] not in done.stderr
    assert sandbox.refund("antom", refund_id) is None


# ---- the local stack ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("hygiene"), parameter_overrides=FAST_POLICY) as running:
        yield running


def _inquire_event(refund_request_id: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "inquire_processing.json").read_text(encoding="utf-8"))
    event["inquiry"] |= {"refundRequestId": refund_request_id, "key": f"antom#default#rr:{refund_request_id}"}
    return event


def _set_setting(stack: DevStack, function: str, value: str | None) -> None:
    lambda_client = stack.client("lambda")
    name = stack.cloud.function_name(function)
    variables = dict(lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"])
    variables.pop(PLAIN_HTTP_SETTING, None)
    if value is not None:
        variables[PLAIN_HTTP_SETTING] = value
    lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": variables})


def test_the_local_stack_allows_its_functions_plain_http_to_the_sandbox(stack: DevStack) -> None:
    lambda_client = stack.client("lambda")
    for function in ("StartInquiryFunction", "InquireFunction"):
        configuration = lambda_client.get_function_configuration(FunctionName=stack.cloud.function_name(function))
        assert configuration["Environment"]["Variables"][PLAIN_HTTP_SETTING] == "loopback", function

    result = stack.cloud.invoke("InquireFunction", _inquire_event("processing1-success--hygiene-1"))

    assert result.function_error is None, result.payload
    assert result.payload["observation"]["status"] == "PROCESSING"


def test_a_function_configured_as_deployed_refuses_the_loopback_http_profile(stack: DevStack) -> None:
    _set_setting(stack, "InquireFunction", None)  # what template.yaml deploys
    try:
        result = stack.cloud.invoke("InquireFunction", _inquire_event("processing1-success--hygiene-2"))
    finally:
        _set_setting(stack, "InquireFunction", "loopback")

    assert result.function_error is not None
    assert "'baseUrl': must use https://" in json.dumps(result.payload)
    assert stack.sandbox.refund("antom", "processing1-success--hygiene-2") is None  # nothing was sent


def test_the_local_stack_rejects_messages_for_a_profile_with_a_weak_key_or_an_unsafe_host(stack: DevStack) -> None:
    profile = json.loads(stack.sandbox.profiles["antom"].read_text())
    prefix = str(stack.outputs["ProfileSecretPrefix"])
    messages = {}
    for n, (changes, field, rule) in enumerate(UNSAFE_CHANGES.values()):
        merchant = f"unsafe-{n}"
        stack.cloud.put_secret(f"{prefix}antom/{merchant}", json.dumps(profile | changes))
        message = {"provider": "antom", "merchant": merchant, "refundRequestId": f"success--hygiene-stack-{n}"}
        messages[json.dumps(message)] = (field, rule)
    send(stack, *messages)

    rejected = drain_dlq(stack, expected=len(messages))

    reasons = {m["Body"]: m["MessageAttributes"]["rejectionReason"]["StringValue"] for m in rejected}
    assert set(reasons) == set(messages)
    for body, (field, rule) in messages.items():
        assert f"merchant profile field '{field}'" in reasons[body] and rule in reasons[body], reasons[body]
        assert profile["privateKey"][40:80] not in reasons[body]
    assert not [r for r in stack.sandbox.requests() if "hygiene-stack" in r.body.decode()]  # nothing was sent
