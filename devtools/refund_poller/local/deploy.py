"""Deploying a SAM template into moto through the service APIs, resource by resource, in dependency order.

moto's CloudFormation cannot do it: it has no Serverless transform, ignores DefinitionSubstitutions and writes
to the Step Functions backend that does not execute.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refund_poller.local.errors import DeploymentError, TemplateError
from refund_poller.local.event_source import SqsEventSource
from refund_poller.local.intrinsics import Scope, pseudo_parameters, resolve
from refund_poller.local.template import Template, creation_order, resolve_parameters

if TYPE_CHECKING:
    from refund_poller.local.http_api import HttpApiDeployment, HttpRoute

EXECUTION_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
# Properties that only matter to IAM or to deployment tooling: never evaluated, so that what they refer to
# (SAM policy templates, generated roles) need not exist here.
IGNORED_PROPERTIES = frozenset(
    {
        "Policies",
        "Role",
        "RolePath",
        "PermissionsBoundary",
        "DeploymentPreference",
        "AutoPublishAlias",
        "ProvisionedConcurrencyConfig",
        "VpcConfig",
        "CodeSigningConfigArn",
        "Connectors",
    }
)
# SAM creates a role named <LogicalId>Role for these when they have no Role of their own.
TYPES_WITH_IMPLICIT_ROLE = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")


@dataclass(frozen=True)
class DeployedResource:
    logical_id: str
    type: str
    physical_id: Any
    """What ``Ref`` returns for it (a queue's URL, a table's name, a state machine's ARN...)."""
    attributes: dict[str, Any]


@dataclass(frozen=True)
class SkippedResource:
    logical_id: str
    type: str
    reason: str


@dataclass(frozen=True)
class FunctionDeployment:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    layer_arns: tuple[str, ...]


@dataclass
class Deployment:
    """The outcome of a deployment: resources by logical id, resolved Outputs, and what was left out."""

    stack_name: str
    resources: dict[str, DeployedResource] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    skipped: list[SkippedResource] = field(default_factory=list)
    functions: dict[str, FunctionDeployment] = field(default_factory=dict)
    layer_dirs: dict[str, Path] = field(default_factory=dict)
    event_sources: list[SqsEventSource] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # HTTP APIs by id and their routes (local/http_api.py serves them on loopback).
    http_apis: dict[str, HttpApiDeployment] = field(default_factory=dict)
    http_routes: list[HttpRoute] = field(default_factory=list)

    def physical_id(self, logical_id: str) -> Any:
        if logical_id not in self.resources:
            raise KeyError(f"no deployed resource {logical_id} (deployed: {', '.join(sorted(self.resources))})")
        return self.resources[logical_id].physical_id

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(json.dumps(asdict(self), default=str))  # paths become strings
        return document


@dataclass(frozen=True)
class Created:
    ref: Any
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeployContext:
    """What resource creators share: clients, naming, the dummy role, and the deployment being built."""

    client: Callable[[str], Any]
    template_dir: Path
    region: str
    account_id: str
    deployment: Deployment
    role_arn: str = ""

    def name(self, logical_id: str, max_length: int) -> str:
        """A physical name for a resource the template does not name: ``<stack>-<LogicalId>``."""
        return f"{self.deployment.stack_name}-{logical_id}"[:max_length]

    def local_path(self, value: Any, where: str, *, directory: bool) -> Path:
        if not isinstance(value, str):
            raise DeploymentError(f"{where}: only a local path works here, not {value!r}")
        path = (self.template_dir / value).resolve()
        if not (path.is_dir() if directory else path.is_file()):
            raise DeploymentError(f"{where}: {path} is not a {'folder' if directory else 'file'}")
        return path


Creator = Callable[[DeployContext, str, dict[str, Any]], Created]


def deploy(
    template: Template,
    client: Callable[[str], Any],
    creators: Mapping[str, Creator],
    parameter_overrides: Mapping[str, Any],
    stack_name: str,
    region: str,
    account_id: str,
) -> Deployment:
    """Create every resource of ``template`` that has a creator; the others are listed in ``skipped``."""
    scope = Scope(
        parameters=resolve_parameters(template, parameter_overrides),
        pseudo=pseudo_parameters(region, account_id, stack_name),
        mappings=template.section("Mappings"),
        condition_definitions=template.section("Conditions"),
    )
    deployment = Deployment(stack_name=stack_name)
    context = DeployContext(client, template.directory, region, account_id, deployment)
    resources = _active_resources(template.resources(), scope, deployment)
    context.role_arn = _create_execution_role(context, resources, scope)
    for logical_id in creation_order(resources):
        resource = resources[logical_id]
        creator = creators.get(resource.get("Type", ""))
        created = _create(context, creator, logical_id, resource, scope)
        scope.refs[logical_id] = created.ref
        scope.attributes[logical_id] = created.attributes
        deployment.resources[logical_id] = DeployedResource(
            logical_id, resource["Type"], created.ref, created.attributes
        )
    deployment.outputs = _outputs(template, scope)
    return deployment


def _active_resources(
    resources: dict[str, dict[str, Any]], scope: Scope, deployment: Deployment
) -> dict[str, dict[str, Any]]:
    active = {}
    for logical_id, resource in resources.items():
        condition = resource.get("Condition")
        if condition is None or scope.condition(str(condition)):
            active[logical_id] = resource
        else:
            deployment.skipped.append(SkippedResource(logical_id, resource["Type"], f"condition {condition} is false"))
    return active


def _create_execution_role(context: DeployContext, resources: dict[str, dict[str, Any]], scope: Scope) -> str:
    """One role for every function and state machine: moto's Lambda insists on an existing role."""
    iam = context.client("iam")
    name = context.name("LocalExecutionRole", 64)
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=EXECUTION_ROLE_POLICY)["Role"]
    for logical_id, resource in resources.items():
        implicit = f"{logical_id}Role"
        if resource.get("Type") in TYPES_WITH_IMPLICIT_ROLE and implicit not in resources:
            scope.refs[implicit] = name
            scope.attributes[implicit] = {"Arn": role["Arn"], "RoleId": role["RoleId"]}
    return str(role["Arn"])


def _create(
    context: DeployContext, creator: Creator | None, logical_id: str, resource: dict[str, Any], scope: Scope
) -> Created:
    properties = {
        key: value for key, value in (resource.get("Properties") or {}).items() if key not in IGNORED_PROPERTIES
    }
    if creator is None:
        reason = "not emulated locally (a placeholder answers Ref and GetAtt)"
        context.deployment.skipped.append(SkippedResource(logical_id, resource["Type"], reason))
        return _placeholder(context, logical_id, resource["Type"], properties, scope)
    try:
        return creator(context, logical_id, resolve(properties, scope))
    except TemplateError as error:
        raise TemplateError(f"{logical_id}: {error}") from error
    except DeploymentError:
        raise
    except Exception as error:  # a botocore ClientError, mostly: say which resource
        raise DeploymentError(f"{logical_id} ({resource['Type']}): {error}") from error


def _placeholder(
    context: DeployContext, logical_id: str, resource_type: str, properties: dict[str, Any], scope: Scope
) -> Created:
    """Plausible ``Ref``/``GetAtt`` answers for a resource that is not created (an alarm, a log group...)."""
    name = context.name(logical_id, 64)
    for key in (f"{resource_type.rsplit('::', 1)[-1]}Name", "Name"):
        if isinstance(properties.get(key), (str, dict)):
            with contextlib.suppress(TemplateError):  # keep the generated name
                name = str(resolve(properties[key], scope))
            break
    service = resource_type.split("::")[1].lower()
    arn = f"arn:aws:{service}:{context.region}:{context.account_id}:{resource_type.rsplit('::', 1)[-1].lower()}/{name}"
    if resource_type == "AWS::Logs::LogGroup":
        arn = f"arn:aws:logs:{context.region}:{context.account_id}:log-group:{name}:*"
    elif service == "iam":
        arn = f"arn:aws:iam::{context.account_id}:{resource_type.rsplit('::', 1)[-1].lower()}/{name}"
    return Created(arn if resource_type == "AWS::IAM::ManagedPolicy" else name, {"Arn": arn, "Name": name})


def _outputs(template: Template, scope: Scope) -> dict[str, Any]:
    outputs = {}
    for name, output in template.section("Outputs").items():
        condition = output.get("Condition")
        if condition is not None and not scope.condition(str(condition)):
            continue
        try:
            outputs[name] = resolve(output.get("Value"), scope)
        except TemplateError as error:
            raise TemplateError(f"output {name}: {error}") from error
    return outputs
