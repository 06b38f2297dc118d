"""The sandbox's answers: what each script token (or refusal) looks like on the wire, and its signature.

An :class:`Answer` says what to send; :func:`seal` turns it into exact bytes and headers, signing the
body it sends (never a re-serialisation) the way the provider would: with the provider key, with a
forger's key (``badsig``), or not at all (``nosig``, INVALID_SIGNATURE refusals, non-JSON bodies).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refund_core.providers import signing
from refund_poller.sandbox.credentials import Credentials
from refund_poller.sandbox.dialects import Dialect, Identity, RefundView, Refused

KEY_VERSION = "1"
JSON_TYPE = "application/json; charset=UTF-8"
GARBAGE_BODY = b"<html><head><title>502 Bad Gateway</title></head><body>upstream hiccup</body></html>"


@dataclass(frozen=True, slots=True)
class Answer:
    """What to answer, before serialisation and signing."""

    summary: str
    payload: dict[str, Any] | None = None
    status: int = 200
    raw_body: bytes | None = None
    content_type: str = JSON_TYPE
    signer: str = "provider"  # provider | forger | none
    reset: bool = False
    extra_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer ready for the wire; ``on_answer`` runs as the bytes go out (not for a reset)."""

    status: int
    headers: dict[str, str]
    body: bytes
    summary: str
    reset: bool = False
    delay: float = 0.0
    on_answer: Callable[[], None] | None = None


def result(code: str, status: str, message: str) -> dict[str, str]:
    return {"resultCode": code, "resultStatus": status, "resultMessage": message}


def failure(code: str, message: str) -> Answer:
    """An F answer; INVALID_SIGNATURE goes unsigned, as Antom documents."""
    signer = "none" if code == "INVALID_SIGNATURE" else "provider"
    return Answer(summary=f"F {code}", payload={"result": result(code, "F", message)}, signer=signer)


def refusal(exc: Refused) -> Answer:
    return failure(exc.code, exc.message)


def unknown(code: str = "UNKNOWN_EXCEPTION", message: str = "unknown exception, try again") -> Answer:
    return Answer(summary=f"U {code}", payload={"result": result(code, "U", message)})


def found(dialect: Dialect, view: RefundView, signer: str = "provider") -> Answer:
    payload = {"result": result("SUCCESS", "S", "success"), **dialect.refund_payload(view)}
    return Answer(summary=f"S {payload['refundStatus']}", payload=payload, signer=signer)


def for_kind(dialect: Dialect, kind: str, view: Callable[[str], RefundView]) -> Answer:
    """The answer a script token (or chaos fault) calls for."""
    match kind:
        case "success" | "fail" | "processing":
            return found(dialect, view(kind))
        case "badsig" | "nosig":  # a forged success: the poller must not believe it
            return found(dialect, view("success"), signer="forger" if kind == "badsig" else "none")
        case "notfound":
            return failure(dialect.not_found_code, "the refund does not exist (yet)")
        case "denied":
            return failure("ACCESS_DENIED", "access denied for this client")
        case "unknown":
            return unknown()
        case "ratelimit":
            return unknown("REQUEST_TRAFFIC_EXCEED_LIMIT", "request traffic exceeds the limit")
        case "http429":
            limited = unknown("REQUEST_TRAFFIC_EXCEED_LIMIT", "request traffic exceeds the limit")
            retry_after = (("Retry-After", "1"),)
            return Answer(summary="HTTP 429", payload=limited.payload, status=429, extra_headers=retry_after)
        case "http500":
            return Answer(summary="HTTP 500", status=500, raw_body=b"Internal Server Error", content_type="text/plain")
        case "garbage":
            return Answer(summary="garbage body", raw_body=GARBAGE_BODY, content_type="text/html")
        case "reset":
            return Answer(summary="connection reset", reset=True)
    raise ValueError(f"no answer for script token kind {kind!r}")  # the script parser only yields the above


def seal(answer: Answer, dialect: Dialect, path: str, identity: Identity | None, credentials: Credentials) -> Reply:
    """Serialise once, add the provider's response headers and sign those exact bytes."""
    if answer.raw_body is not None:
        body = answer.raw_body
    else:
        body = json.dumps(answer.payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": answer.content_type, **dict(answer.extra_headers)}
    if answer.payload is not None and identity is not None:
        headers.update(dialect.response_headers(identity))
        key = {"provider": credentials.provider_keys[dialect.name], "forger": credentials.forger_key}.get(answer.signer)
        if key is not None:
            signature = signing.sign(key, dialect.response_content(path, identity, headers, body))
            headers["Signature"] = signing.format_signature_header(dialect.algorithm, KEY_VERSION, signature)
    return Reply(status=answer.status, headers=headers, body=body, summary=answer.summary, reset=answer.reset)
