"""CloudFormation's intrinsic functions, evaluated against the parameters and what is deployed so far."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from refund_poller.local.errors import TemplateError

NO_VALUE: Any = object()
"""What ``Ref: AWS::NoValue`` evaluates to: the enclosing key or list item is dropped."""

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def scalar_text(value: Any) -> str:
    """A template scalar as CloudFormation passes it on: booleans in lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pseudo_parameters(region: str, account_id: str, stack_name: str, partition: str = "aws") -> dict[str, Any]:
    return {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": partition,
        "AWS::StackName": stack_name,
        "AWS::StackId": f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
        "AWS::NoValue": NO_VALUE,
    }


@dataclass
class Scope:
    """Everything an expression may refer to. ``refs`` and ``attributes`` grow as resources are created."""

    parameters: dict[str, Any]
    pseudo: dict[str, Any]
    mappings: dict[str, Any] = field(default_factory=dict)
    condition_definitions: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _conditions: dict[str, bool] = field(default_factory=dict)
    _evaluating: set[str] = field(default_factory=set)

    def ref(self, name: str) -> Any:
        for source in (self.pseudo, self.parameters, self.refs):
            if name in source:
                return source[name]
        raise TemplateError(f"Ref {name}: no such parameter, or no such resource deployed (check its Condition)")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        known = self.attributes.get(logical_id)
        if known is None:
            raise TemplateError(f"GetAtt {logical_id}.{attribute}: no such resource deployed")
        if attribute not in known:
            raise TemplateError(f"GetAtt {logical_id}.{attribute}: not available locally (known: {sorted(known)})")
        return known[attribute]

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self.condition_definitions:
                raise TemplateError(f"no condition named {name}")
            if name in self._evaluating:
                raise TemplateError(f"condition {name} refers to itself")
            self._evaluating.add(name)
            self._conditions[name] = _truth(self.condition_definitions[name], self)
            self._evaluating.discard(name)
        return self._conditions[name]


def resolve(value: Any, scope: Scope) -> Any:
    """``value`` with every intrinsic function replaced by its result."""
    if isinstance(value, list):
        return [item for item in (resolve(element, scope) for element in value) if item is not NO_VALUE]
    if isinstance(value, dict):
        if len(value) == 1:
            name, argument = next(iter(value.items()))
            function = _FUNCTIONS.get(name)
            if function is not None:
                return function(argument, scope)
        resolved = {key: resolve(element, scope) for key, element in value.items()}
        return {key: element for key, element in resolved.items() if element is not NO_VALUE}
    return value


def referenced_resources(value: Any) -> set[str]:
    """Names a value refers to through Ref, Fn::GetAtt and Fn::Sub (parameters included; callers filter)."""
    found: set[str] = set()
    if isinstance(value, list):
        for element in value:
            found |= referenced_resources(element)
    elif isinstance(value, dict):
        for key, argument in value.items():
            found |= _references_of(key, argument)
    return {name for name in found if not name.startswith("AWS::")}


def _references_of(key: str, argument: Any) -> set[str]:
    if key == "Ref" and isinstance(argument, str):
        return {argument}
    if key == "Fn::GetAtt":
        target = argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
        return {target} if isinstance(target, str) else set()
    if key == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        names = {match.split(".", 1)[0].strip() for match in _SUB_VARIABLE.findall(text) if not match.startswith("!")}
        return (names - set(variables)) | referenced_resources(variables)
    return referenced_resources(argument)


def _ref(argument: Any, scope: Scope) -> Any:
    return scope.ref(str(argument))


def _get_att(argument: Any, scope: Scope) -> Any:
    parts = argument.split(".", 1) if isinstance(argument, str) else resolve(argument, scope)
    if len(parts) != 2:
        raise TemplateError(f"Fn::GetAtt needs a resource and an attribute: {argument!r}")
    return scope.get_att(str(parts[0]), str(parts[1]))


def _sub(argument: Any, scope: Scope) -> str:
    if isinstance(argument, str):
        text, variables = argument, {}
    else:
        text, variables = argument[0], resolve(argument[1], scope)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in variables:
            value = variables[name]
        elif "." in name:
            value = scope.get_att(*name.split(".", 1))
        else:
            value = scope.ref(name)
        if isinstance(value, (list, dict)) or value is NO_VALUE:
            raise TemplateError(f"Fn::Sub: ${{{name}}} is not a string")
        return scalar_text(value)

    return _SUB_VARIABLE.sub(replace, text)


def _join(argument: Any, scope: Scope) -> str:
    delimiter, items = resolve(argument, scope)
    return str(delimiter).join(scalar_text(item) for item in items)


def _select(argument: Any, scope: Scope) -> Any:
    index, items = resolve(argument, scope)
    try:
        return items[int(index)]
    except (IndexError, ValueError, TypeError) as error:
        raise TemplateError(f"Fn::Select: no item {index!r} in {items!r}") from error


def _split(argument: Any, scope: Scope) -> list[str]:
    delimiter, source = resolve(argument, scope)
    return str(source).split(str(delimiter))


def _if(argument: Any, scope: Scope) -> Any:
    name, when_true, when_false = argument
    return resolve(when_true if scope.condition(str(name)) else when_false, scope)


def _equals(argument: Any, scope: Scope) -> bool:
    left, right = resolve(argument, scope)
    return bool(scalar_text(left) == scalar_text(right))


def _not(argument: Any, scope: Scope) -> bool:
    return not _truth(argument[0], scope)


def _and(argument: Any, scope: Scope) -> bool:
    return all(_truth(operand, scope) for operand in argument)


def _or(argument: Any, scope: Scope) -> bool:
    return any(_truth(operand, scope) for operand in argument)


def _truth(operand: Any, scope: Scope) -> bool:
    # `{"Condition": name}` is an intrinsic only as an operand of the condition functions.
    if isinstance(operand, dict) and set(operand) == {"Condition"}:
        return scope.condition(str(operand["Condition"]))
    value = resolve(operand, scope)
    if isinstance(value, bool):
        return value
    if scalar_text(value).lower() in ("true", "false"):
        return scalar_text(value).lower() == "true"
    raise TemplateError(f"not a condition: {operand!r}")


def _find_in_map(argument: Any, scope: Scope) -> Any:
    map_name, top_key, second_key = (scalar_text(part) for part in resolve(argument, scope))
    try:
        return scope.mappings[map_name][top_key][second_key]
    except KeyError as error:
        raise TemplateError(f"Fn::FindInMap: no {map_name}/{top_key}/{second_key}") from error


def _base64(argument: Any, scope: Scope) -> str:
    return base64.b64encode(scalar_text(resolve(argument, scope)).encode()).decode()


def _get_azs(argument: Any, scope: Scope) -> list[str]:
    region = resolve(argument, scope) or scope.ref("AWS::Region")
    return [f"{region}{zone}" for zone in "abc"]


def _to_json_string(argument: Any, scope: Scope) -> str:
    return json.dumps(resolve(argument, scope), separators=(",", ":"))


def _import_value(argument: Any, scope: Scope) -> Any:
    raise TemplateError(f"Fn::ImportValue {argument!r}: exports of other stacks do not exist locally")


_FUNCTIONS: dict[str, Callable[[Any, Scope], Any]] = {
    "Ref": _ref,
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": _and,
    "Fn::Or": _or,
    "Fn::FindInMap": _find_in_map,
    "Fn::Base64": _base64,
    "Fn::GetAZs": _get_azs,
    "Fn::ToJsonString": _to_json_string,
    "Fn::ImportValue": _import_value,
}
