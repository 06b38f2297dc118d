"""The sandbox's admin endpoints under ``/_sandbox/`` (docs/sandbox.md lists them).

They steer and inspect the sandbox (scripts, chaos, counters) and answer loopback clients only:
they have no authentication, so they must never be reachable from another machine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from refund_core.domain.profile import is_loopback_host
from refund_poller.sandbox.chaos import ChaosConfig, ChaosError
from refund_poller.sandbox.dialects import DIALECTS
from refund_poller.sandbox.script import ScriptError, parse_script
from refund_poller.sandbox.state import SandboxState
from refund_poller.sandbox.traffic import TrafficConfig, TrafficError

ADMIN_PREFIX = "/_sandbox/"

JsonReply = tuple[int, dict[str, Any]]


class BadRequestError(ValueError):
    """An admin request body is malformed."""


@dataclass(frozen=True, slots=True)
class AdminRequest:
    method: str
    path: str
    body: bytes
    client_host: str


class Admin:
    """Routes admin requests to the shared state."""

    def __init__(self, state: SandboxState, base_url: str, profiles: Mapping[str, Path]) -> None:
        self.state = state
        self.base_url = base_url
        self.profiles = profiles

    def handle(self, request: AdminRequest) -> JsonReply:
        if not is_loopback_host(request.client_host):
            return 403, {"error": "the admin endpoints answer loopback clients only"}
        route = request.path.removeprefix(ADMIN_PREFIX)
        if route.startswith("refunds/"):
            return self._refund(request, route.removeprefix("refunds/"))
        match request.method, route:
            case "GET", "health":
                return 200, self._health()
            case "GET", "profiles":
                return 200, {name: str(path) for name, path in self.profiles.items()}
            case "POST", "reset":
                self.state.reset()
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
            text = _json_object(body).get("script")
            if not isinstance(text, str):
                raise BadRequestError('script: is required, e.g. {"script": "processing3-success"}')
            record = self.state.refunds.set_script(provider, refund_id, parse_script(text))
        except (BadRequestError, ScriptError) as exc:
            return 400, {"error": str(exc)}
        return 200, record.to_dict()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequestError("the body must be a JSON object")
    return data
