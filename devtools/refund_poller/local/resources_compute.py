"""Creators for the resources that run code: layers, functions (with their SQS events), state machines."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from refund_poller.local.deploy import Created, Creator, DeployContext, FunctionDeployment, SkippedResource
from refund_poller.local.errors import DeploymentError
from refund_poller.local.event_source import sqs_event_source
from refund_poller.local.http_api import add_route, create_http_api
from refund_poller.local.intrinsics import scalar_text

SKIPPED_IN_ZIP = ("__pycache__", ".pytest_cache", ".mypy_cache", ".aws-sam")
EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18  # an archive with no entries: all moto needs for a layer ARN


def create_layer(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    content = context.local_path(properties.get("ContentUri"), f"{logical_id}.ContentUri", directory=True)
    name = properties.get("LayerName") or logical_id
    request: dict[str, Any] = {"LayerName": name, "Content": {"ZipFile": EMPTY_ZIP}}
    if properties.get("CompatibleRuntimes"):
        request["CompatibleRuntimes"] = properties["CompatibleRuntimes"]
    # The workers import from the folder itself, so moto only gets an empty archive.
    arn = context.client("lambda").publish_layer_version(**request)["LayerVersionArn"]
    context.deployment.layer_dirs[arn] = content
    return Created(arn)


def create_function(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    if properties.get("PackageType") == "Image" or "InlineCode" in properties:
        raise DeploymentError(f"{logical_id}: only CodeUri functions (a local folder) can run locally")
    code_dir = context.local_path(properties.get("CodeUri"), f"{logical_id}.CodeUri", directory=True)
    name = properties.get("FunctionName") or context.name(logical_id, 64)
    runtime = str(properties.get("Runtime", ""))
    _check_runtime(context, logical_id, runtime)
    deployed = FunctionDeployment(
        logical_id=logical_id,
        name=name,
        arn="",
        code_dir=code_dir,
        handler=str(properties.get("Handler", "")),
        runtime=runtime,
        timeout=int(properties.get("Timeout", 3)),
        memory_size=int(properties.get("MemorySize", 128)),
        layer_arns=tuple(str(layer) for layer in properties.get("Layers", [])),
    )
    arn = _create_lambda_function(context, deployed, properties)
    context.deployment.functions[logical_id] = dataclasses.replace(deployed, arn=arn)
    for event_name, event in (properties.get("Events") or {}).items():
        _add_event(context, deployed, event_name, event)
    return Created(name, {"Arn": arn})


def _check_runtime(context: DeployContext, logical_id: str, runtime: str) -> None:
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not runtime.startswith("python"):
        context.deployment.warnings.append(f"{logical_id}: runtime {runtime!r} cannot run locally (only Python)")
    elif runtime != here:
        context.deployment.warnings.append(f"{logical_id}: runtime {runtime} runs locally on {here}")


def _create_lambda_function(context: DeployContext, function: FunctionDeployment, properties: dict[str, Any]) -> str:
    variables = (properties.get("Environment") or {}).get("Variables") or {}
    request: dict[str, Any] = {
        "FunctionName": function.name,
        "Runtime": function.runtime,
        "Role": context.role_arn,
        "Handler": function.handler,
        "Code": {"ZipFile": zip_directory(function.code_dir)},
        "Timeout": function.timeout,
        "MemorySize": function.memory_size,
        "Environment": {"Variables": {key: scalar_text(value) for key, value in variables.items()}},
        "Layers": list(function.layer_arns),
        "Description": str(properties.get("Description", "")),
    }
    if properties.get("Architectures"):
        request["Architectures"] = properties["Architectures"]
    lambda_client = context.client("lambda")
    arn = str(lambda_client.create_function(**request)["FunctionArn"])
    if properties.get("ReservedConcurrentExecutions") is not None:
        lambda_client.put_function_concurrency(
            FunctionName=function.name, ReservedConcurrentExecutions=int(properties["ReservedConcurrentExecutions"])
        )
    return arn


def _add_event(context: DeployContext, function: FunctionDeployment, event_name: str, event: dict[str, Any]) -> None:
    where = f"{function.logical_id}.Events.{event_name}"
    if event.get("Type") == "HttpApi":
        add_route(context, function.name, where, event.get("Properties") or {})
        return
    if event.get("Type") != "SQS":
        reason = "event type not emulated locally (invoke the function directly)"
        context.deployment.skipped.append(SkippedResource(where, f"event {event.get('Type')}", reason))
        return
    properties = event.get("Properties") or {}
    if properties.get("FilterCriteria"):
        raise DeploymentError(f"{where}: FilterCriteria is not emulated locally")
    source = sqs_event_source(
        context.client("sqs"), function.logical_id, function.name, function.timeout, event_name, properties
    )
    context.deployment.event_sources.append(source)


def zip_directory(directory: Path) -> bytes:
    """The folder as Lambda would receive it from ``sam build`` (caches left out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if path.is_file() and not any(part in SKIPPED_IN_ZIP for part in relative.parts):
                archive.write(path, relative.as_posix())
    return buffer.getvalue()


def create_state_machine(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> Created:
    definition = substitute(_definition(context, logical_id, properties), properties.get("DefinitionSubstitutions"))
    name = properties.get("Name") or context.name(logical_id, 80)
    request: dict[str, Any] = {
        "name": name,
        "definition": definition,
        "roleArn": context.role_arn,
        "type": properties.get("Type", "STANDARD"),
    }
    logging_config = properties.get("Logging")
    if logging_config:
        request["loggingConfiguration"] = _logging_configuration(logging_config)
    if properties.get("Tracing"):
        request["tracingConfiguration"] = {"enabled": scalar_text(properties["Tracing"].get("Enabled")) == "true"}
    arn = context.client("stepfunctions").create_state_machine(**request)["stateMachineArn"]
    for event_name, event in (properties.get("Events") or {}).items():
        where = f"{logical_id}.Events.{event_name}"
        reason = "event type not emulated locally (start executions directly)"
        context.deployment.skipped.append(SkippedResource(where, f"event {event.get('Type')}", reason))
    return Created(arn, {"Arn": arn, "Name": name})


def _definition(context: DeployContext, logical_id: str, properties: dict[str, Any]) -> str:
    if "Definition" in properties:
        return json.dumps(properties["Definition"])
    path = context.local_path(properties.get("DefinitionUri"), f"{logical_id}.DefinitionUri", directory=False)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        return json.dumps(yaml.safe_load(text))
    return text


def substitute(definition: str, substitutions: dict[str, Any] | None) -> str:
    """``${Name}`` replaced for each name in DefinitionSubstitutions; any other ``${...}`` is left alone."""
    values = {name: scalar_text(value) for name, value in (substitutions or {}).items()}

    def replace(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return re.sub(r"\$\{([^}]+)\}", replace, definition)


def _logging_configuration(logging_config: dict[str, Any]) -> dict[str, Any]:
    destinations = [
        {"cloudWatchLogsLogGroup": {"logGroupArn": destination["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
        for destination in logging_config.get("Destinations", [])
        if "CloudWatchLogsLogGroup" in destination
    ]
    return {
        "level": logging_config.get("Level", "OFF"),
        "includeExecutionData": scalar_text(logging_config.get("IncludeExecutionData", False)) == "true",
        "destinations": destinations,
    }


CREATORS: dict[str, Creator] = {
    "AWS::Serverless::LayerVersion": create_layer,
    "AWS::Serverless::Function": create_function,
    "AWS::Serverless::StateMachine": create_state_machine,
    "AWS::Serverless::HttpApi": create_http_api,
}
