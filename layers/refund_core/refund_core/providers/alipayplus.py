"""Alipay+ Mini Program wallet OpenAPI inquiryRefund (GCash, Touch 'n Go, M-Pesa, …).

Same signing scheme as Antom; each wallet assigns host and path (the profile's ``baseUrl`` and
``inquiryPath``), and a wallet with another content layout sets ``signatureContent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from refund_core.providers.antom import Antom, client_id_content
from refund_core.providers.base import RefundQuery


class AlipayPlusWallet(Antom):
    name: ClassVar[str] = "alipayplus"
    not_found_codes: ClassVar[frozenset[str]] = frozenset({"REFUND_NOT_EXIST"})
    # docs/trust.md cites each: seed 000:41-43 (INVALID_CLIENT, INVALID_SIGNATURE, INVALID_CLIENT_STATUS),
    # providers.md §3 (ACCESS_DENIED and the agent token codes).
    credential_rejection_codes: ClassVar[frozenset[str]] = frozenset(
        {
            "INVALID_CLIENT",
            "INVALID_SIGNATURE",
            "INVALID_CLIENT_STATUS",
            "ACCESS_DENIED",
            "EXPIRED_AGENT_TOKEN",
            "INVALID_AGENT_TOKEN",
        }
    )

    def query_body(self, query: RefundQuery) -> dict[str, Any]:
        return query.body()

    def content(self, path: str, client_id: str, time_value: str, body: bytes) -> bytes:
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
