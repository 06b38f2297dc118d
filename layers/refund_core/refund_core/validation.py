"""Queue message validation against the published JSON Schema (fastjsonschema, compiled once).

Every rejection names the field and the rule, and never echoes the message body.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import fastjsonschema

from refund_core.domain.inquiry import InquiryMessage
from refund_core.service import RejectedMessageError

SCHEMA_FILE = "inquiry-message.schema.json"
MAX_REASON = 300
SCHEMA: dict[str, Any] = json.loads(resources.files("refund_core.schemas").joinpath(SCHEMA_FILE).read_text())
_validate = fastjsonschema.compile(SCHEMA)
_LISTED = re.compile(r"[\[{]([^,\]}]+)")  # the first name in "must contain ['x'] properties"
_CONTROL_CHECKED = frozenset({"refundId", "refundRequestId", "correlationId"})


def parse_message(body: str) -> InquiryMessage:
    """A valid :class:`InquiryMessage` from a queue body, or :class:`RejectedMessageError` saying why not."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RejectedMessageError(
            f"body: is not valid JSON ({type(exc).__name__} at position {_position(exc)})"
        ) from None
    except RecursionError:  # thousands of nested brackets: json gives up; a message is never nested that deep
        raise RejectedMessageError("body: is nested too deeply") from None
    if not isinstance(data, dict):
        raise RejectedMessageError("body: must be a JSON object")
    surrogate = _lone_surrogate(data)
    if surrogate is not None:
        # "\ud800" is valid JSON but not Unicode text: it cannot be encoded for DynamoDB, a signature or a log.
        raise RejectedMessageError(f"{surrogate}: must be valid Unicode (no lone surrogate escapes)")
    try:
        _validate(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise RejectedMessageError(_describe(exc)) from None
    return InquiryMessage.from_body(data)


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    field = (exc.name or "data").removeprefix("data").lstrip(".") or "message"
    message = str(exc.message).removeprefix(exc.name or "").strip()
    listed = _LISTED.search(message)
    if exc.rule == "anyOf" and field == "message":
        field, message = "refundId or refundRequestId", "at least one is required"
    elif exc.rule == "required" and listed:
        # A "required" from the schema's if/then (AlphaPay needs refundId) has no properties of its own.
        scoped = "properties" not in (exc.definition or {})
        field, message = listed.group(1).strip("'\""), "is required" + (" for this provider" if scoped else "")
    elif exc.rule == "additionalProperties" and listed:
        field, message = listed.group(1).strip("'\""), "is not a known field"
    elif exc.rule == "pattern" and field in _CONTROL_CHECKED:
        message = "must not contain control characters"
    return f"{field}: {message} (rule: {exc.rule})"[:MAX_REASON]


def _lone_surrogate(data: dict[str, Any]) -> str | None:
    """The first top-level field (or "body") holding a lone UTF-16 surrogate, which UTF-8 cannot encode."""
    for name, value in data.items():
        try:
            json.dumps({name: value}, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                return "body"
            return name[:64]
    return None


def _position(exc: ValueError) -> int:
    return int(getattr(exc, "pos", 0) or 0)
