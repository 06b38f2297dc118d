"""Alipay+ Mini Program wallet OpenAPI inquiryRefund (GCash, Touch 'n Go, M-Pesa, …).

Same signing scheme as Antom; each wallet assigns host and path (the profile's ``baseUrl`` and
``inquiryPath``), and a wallet with another content layout sets ``signatureContent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from refund_core.providers.antom import Antom, client_id_content
from refund_core.providers.base import RefundQuery, SignedRequest


class AlipayPlusWallet(Antom):
    name: ClassVar[str] = "alipayplus"
    not_found_codes: ClassVar[frozenset[str]] = frozenset({"REFUND_NOT_EXIST"})

    def query_body(self, query: RefundQuery) -> dict[str, Any]:
        return query.body()

    def request_content(self, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
        return self._content(path, headers["Client-Id"], headers["Request-Time"], body)

    def response_content(self, request: SignedRequest, headers: Mapping[str, str], body: bytes) -> bytes | None:
        response_time = headers.get("Response-Time")
        if response_time is None:
            return None
        client_id = headers.get("Client-Id") or request.headers["Client-Id"]
        return self._content(request.path, client_id, response_time, body)

    def _content(self, path: str, client_id: str, time_value: str, body: bytes) -> bytes:
        layout = self.profile.signature_content
        if layout is None:
            return client_id_content(path, client_id, time_value, body)
        head, _, tail = layout.partition("{body}")
        fields = {"method": "POST", "path": path, "clientId": client_id, "requestTime": time_value}
        return _fill(head, fields).encode() + body + _fill(tail, fields).encode()


def _fill(template: str, fields: Mapping[str, str]) -> str:
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template
