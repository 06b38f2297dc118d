"""Reading a SAM template: YAML with CloudFormation's short-form tags, parameters, Globals, resource order."""

from __future__ import annotations

import graphlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from refund_poller.local.errors import TemplateError
from refund_poller.local.intrinsics import referenced_resources, scalar_text

# SAM's Globals section names and the resource type each one applies to.
GLOBALS_SECTIONS = {
    "Function": "AWS::Serverless::Function",
    "StateMachine": "AWS::Serverless::StateMachine",
    "LayerVersion": "AWS::Serverless::LayerVersion",
    "SimpleTable": "AWS::Serverless::SimpleTable",
}


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader that reads ``!Ref x`` as ``{"Ref": "x"}`` and ``!Sub s`` as ``{"Fn::Sub": "s"}``."""


# CloudFormation reads `2010-09-09` as a string, YAML 1.1 as a date: drop the timestamp resolver.
_TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - YAML has no other node kinds
        raise TemplateError(f"unexpected YAML node for !{suffix}")
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _construct_tag)


@dataclass(frozen=True)
class Template:
    """A template as read from disk; paths in it are relative to ``directory``."""

    path: Path
    body: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def section(self, name: str) -> dict[str, Any]:
        value = self.body.get(name) or {}
        if not isinstance(value, dict):
            raise TemplateError(f"{name} must be a mapping")
        return value

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources, each with its SAM Globals merged into its Properties."""
        global_sections = self.section("Globals")
        merged = {}
        for logical_id, resource in self.section("Resources").items():
            if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
                raise TemplateError(f"resource {logical_id} has no Type")
            resource = dict(resource)
            for section, resource_type in GLOBALS_SECTIONS.items():
                if resource.get("Type") == resource_type and section in global_sections:
                    resource["Properties"] = merge_globals(global_sections[section], resource.get("Properties") or {})
            merged[logical_id] = resource
        return merged


def load_template(path: Path) -> Template:
    try:
        body = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # noqa: S506  # a SafeLoader  # nosec B506
    except (OSError, yaml.YAMLError) as error:
        raise TemplateError(f"cannot read {path}: {error}") from error
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return Template(path=path.resolve(), body=body)


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's rule: maps merge (the resource wins), lists concatenate (globals first), scalars are replaced."""
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        if _is_intrinsic(global_value) or _is_intrinsic(local_value):
            return local_value
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _is_intrinsic(value: dict[str, Any]) -> bool:
    if len(value) != 1:
        return False
    key = next(iter(value))
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def resolve_parameters(template: Template, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Each parameter's value as ``Ref`` returns it: a string, or a list for the list types."""
    declared = template.section("Parameters")
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown parameters: {', '.join(unknown)}")
    return {name: _parameter_value(name, spec, overrides.get(name)) for name, spec in declared.items()}


def _parameter_value(name: str, spec: dict[str, Any], override: Any) -> Any:
    raw = override if override is not None else spec.get("Default")
    if raw is None:
        raise TemplateError(f"parameter {name} has no default and no value was given")
    text = scalar_text(raw)
    allowed = [scalar_text(value) for value in spec.get("AllowedValues", [])]
    if allowed and text not in allowed:
        raise TemplateError(f"parameter {name}: {text!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, text):
        raise TemplateError(f"parameter {name}: {text!r} does not match {pattern}")
    parameter_type = str(spec.get("Type", "String"))
    if parameter_type == "CommaDelimitedList" or parameter_type.startswith("List<"):
        return [item.strip() for item in text.split(",")]
    return text


def creation_order(resources: Mapping[str, dict[str, Any]]) -> list[str]:
    """Logical ids in an order where everything a resource refers to comes before it."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for logical_id, resource in resources.items():
        depends_on = resource.get("DependsOn") or []
        explicit = {depends_on} if isinstance(depends_on, str) else set(depends_on)
        implicit = referenced_resources(resource.get("Properties") or {})
        sorter.add(logical_id, *sorted((explicit | implicit) & set(resources) - {logical_id}))
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as error:
        raise TemplateError(f"circular dependency between resources: {error.args[1]}") from error
