"""The sandbox's admin endpoints under ``/_sandbox/`` (docs/sandbox.md lists them).

They steer and inspect the sandbox (scripts, chaos, counters) and answer loopback clients only:
they have no authentication, so they must never be reachable from another machine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from refund_core.domain.profile import is_loopback_host
from refund_core.providers import QueryError, RefundQuery
from refund_poller.sandbox.chaos import ChaosConfig, ChaosError
from refund_poller.sandbox.dialects import DIALECTS
from refund_poller.sandbox.inquiry import refund_view
from refund_poller.sandbox.notifications import NotifyConfigError, NotifyTarget, check_faults, check_speedup
from refund_poller.sandbox.notifier import Notifier
from refund_poller.sandbox.script import ScriptError, parse_script
from refund_poller.sandbox.state import SandboxState, invent_id
from refund_poller.sandbox.traffic import TrafficConfig, TrafficError

ADMIN_PREFIX = "/_sandbox/"
PUSH_WAIT_S = 10.0  # how long a push request waits for its first attempt before answering 202
PUSH_STATUSES = {"SUCCESS": "success", "FAIL": "fail"}
PUSH_FILTERS = ("provider", "merchant", "refundId", "refundRequestId", "notification", "outcome", "fault")

JsonReply = tuple[int, dict[str, Any]]


class BadRequestError(ValueError):
    """An admin request body is malformed."""


@dataclass(frozen=True, slots=True)
class AdminRequest:
    method: str
    path: str
    body: bytes
    client_host: str
    query: str = ""


class Admin:
    """Routes admin requests to the shared state."""

    def __init__(
        self, state: SandboxState, base_url: str, profiles: Mapping[str, Path], notifier: Notifier | None = None
    ) -> None:
        self.state = state
        self.base_url = base_url
        self.profiles = profiles
        self.notifier = notifier

    def handle(self, request: AdminRequest) -> JsonReply:
        if not is_loopback_host(request.client_host):
            return 403, {"error": "the admin endpoints answer loopback clients only"}
        route = request.path.removeprefix(ADMIN_PREFIX)
        if route.startswith("refunds/"):
            return self._refund(request, route.removeprefix("refunds/"))
        if self.notifier is not None and (route.startswith("notify") or route == "pushes"):
            try:
                return self._notify(self.notifier, request, route)
            except (BadRequestError, NotifyConfigError) as exc:
                return 400, {"error": str(exc)}
        match request.method, route:
            case "GET", "health":
                return 200, self._health()
            case "GET", "profiles":
                return 200, {name: str(path) for name, path in self.profiles.items()}
            case "POST", "reset":
                self.state.reset()
                if self.notifier is not None:
                    self.notifier.reset()
                return 200, {"reset": True}
            case "GET", "chaos":
                return 200, self.state.chaos.to_dict()
            case "PUT", "chaos":
                return self._set_chaos(request.body)
            case "GET", "traffic":
                return 200, self.state.traffic.to_dict()
            case "PUT", "traffic":
                return self._set_traffic(request.body)
        return 404, {"error": f"no admin endpoint {request.method} {request.path}"}

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "baseUrl": self.base_url,
            "paths": {name: list(dialect.paths) for name, dialect in DIALECTS.items()},
        }

    def _set_chaos(self, body: bytes) -> JsonReply:
        try:
            config = ChaosConfig.from_dict(_json_object(body))
        except (BadRequestError, ChaosError) as exc:
            return 400, {"error": str(exc)}
        self.state.chaos.configure(config)
        return 200, self.state.chaos.to_dict()

    def _set_traffic(self, body: bytes) -> JsonReply:
        try:
            config = TrafficConfig.from_dict(_json_object(body))
        except (BadRequestError, TrafficError) as exc:
            return 400, {"error": str(exc)}
        self.state.traffic.configure(config)
        return 200, self.state.traffic.to_dict()

    def _refund(self, request: AdminRequest, route: str) -> JsonReply:
        provider, _, refund_id = route.partition("/")
        provider, refund_id = unquote(provider), unquote(refund_id)
        if provider not in DIALECTS or not refund_id:
            return 404, {"error": f"use /_sandbox/refunds/{{{'|'.join(DIALECTS)}}}/{{id}}"}
        if request.method == "PUT":
            return self._set_script(provider, refund_id, request.body)
        if request.method != "GET":
            return 405, {"error": "use GET or PUT"}
        record = self.state.refunds.get(provider, refund_id)
        if record is None:
            return 404, {"error": f"no {provider} refund {refund_id!r} has been polled or scripted"}
        return 200, record.to_dict()

    def _set_script(self, provider: str, refund_id: str, body: bytes) -> JsonReply:
        try:
            data = _json_object(body)
            text = data.get("script")
            if not isinstance(text, str):
                raise BadRequestError('script: is required, e.g. {"script": "processing3-success"}')
            notify = data.get("notify")
            if notify is not None and not isinstance(notify, dict):
                raise BadRequestError('notify: must be an object, e.g. {"notifyUrl": "http://127.0.0.1:…"}')
            target = None if notify is None else NotifyTarget.from_dict(notify)
            record = self.state.refunds.set_script(provider, refund_id, parse_script(text), target)
        except (BadRequestError, ScriptError, NotifyConfigError) as exc:
            return 400, {"error": str(exc)}
        return 200, record.to_dict()

    # ---- notifications ---------------------------------------------------------------------------------
    def _notify(self, notifier: Notifier, request: AdminRequest, route: str) -> JsonReply:
        match request.method, route.split("/"):
            case "GET", ["pushes"]:
                match = {k: v for k, v in parse_qsl(request.query) if k in PUSH_FILTERS}
                return 200, {"pushes": notifier.pushes.entries(**match)}
            case "GET", ["notify"]:
                return 200, notifier.settings()
            case "PUT", ["notify"]:
                settings = _json_object(request.body)
                if set(settings) - {"speedup"}:
                    raise BadRequestError("the body takes one field: speedup")
                notifier.speedup = check_speedup(settings.get("speedup", 1.0))
                return 200, notifier.settings()
            case "PUT", ["notify", "merchants", provider, merchant]:
                provider = _provider(unquote(provider))
                notifier.set_target(provider, NotifyTarget.from_dict(_json_object(request.body), unquote(merchant)))
                return 200, notifier.settings()
            case "POST", ["notify", "push"]:
                return self._push(notifier, _json_object(request.body))
        return 404, {"error": f"no admin endpoint {request.method} {request.path}"}

    def _push(self, notifier: Notifier, data: dict[str, Any]) -> JsonReply:
        """Push one notification now (with the provider's retries): for testing a receiver."""
        fields = {"provider", "merchant", "refundId", "refundRequestId", "status", "notifyUrl", "clientId", "faults"}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise BadRequestError(f"{unknown[0]}: is not a push field ({', '.join(sorted(fields))})")
        dialect = DIALECTS[_provider(data.get("provider"))]
        status = data.get("status")
        if status not in PUSH_STATUSES:
            raise BadRequestError("status: must be SUCCESS or FAIL")
        if PUSH_STATUSES[status] not in dialect.notified_states:
            raise BadRequestError(f"status: {dialect.name} pushes SUCCESS only (never FAIL)")
        refund_id, refund_request_id = (_push_id(data, name) for name in ("refundId", "refundRequestId"))
        try:  # the same id rules as an inquiry's
            RefundQuery(refund_id=refund_id, refund_request_id=refund_request_id)
        except QueryError as exc:
            raise BadRequestError(str(exc)) from None
        merchant = data.get("merchant", "default")
        configured = notifier.target(dialect.name, merchant) if isinstance(merchant, str) else None
        settings = {"notifyUrl": configured.url if configured else None, "merchant": merchant}
        settings |= {k: v for k, v in data.items() if k in ("notifyUrl", "clientId")}
        target = replace(NotifyTarget.from_dict(settings), faults=check_faults(data.get("faults", [])))
        key = refund_id or refund_request_id
        assert key is not None  # checked above
        record = self.state.refunds.get(dialect.name, key)
        known_id, known_request_id = (record.refund_id, record.refund_request_id) if record else (None, None)
        view = refund_view(
            dialect,
            PUSH_STATUSES[status],
            refund_id or known_id or invent_id(dialect.name, "refundId", key),
            refund_request_id or known_request_id or invent_id(dialect.name, "refundRequestId", key),
            record.refund_time if record else None,
        )
        notification = notifier.push(dialect, target, view, record.caller if record else None)
        assert notification is not None  # the status is one this provider pushes
        first = notifier.pushes.wait_for(notification, PUSH_WAIT_S)
        if first is None:
            return 202, {"notification": notification, "pending": True}
        return 200, {"notification": notification, "first": first}


def _provider(name: object) -> str:
    if name not in DIALECTS:
        raise BadRequestError(f"provider: must be one of {', '.join(DIALECTS)}")
    assert isinstance(name, str)
    return name


def _push_id(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequestError(f"{name}: must be a string")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequestError("the body must be a JSON object")
    return data
