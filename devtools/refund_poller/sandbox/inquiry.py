"""One inquiryRefund request, handled as the provider would: authenticate, validate, answer the script.

Checks run in the provider's order: identity headers, known caller, signature (algorithm, key
version, the signature itself over the exact bytes received), route, nonce freshness, body and ids,
the refund's script. A failed check is a signed F answer, except INVALID_SIGNATURE (unsigned).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from refund_core.providers import signing
from refund_poller.sandbox import answers
from refund_poller.sandbox.credentials import Credentials
from refund_poller.sandbox.dialects import Dialect, Identity, RefundView, Refused, RequestHeaders
from refund_poller.sandbox.notifications import NotifyTarget
from refund_poller.sandbox.notifier import Notifier
from refund_poller.sandbox.script import ScriptError
from refund_poller.sandbox.state import LoggedRequest, RefundRecord, SandboxState, invent_id

MAX_ID_LENGTH = 64


class InquiryService:
    """Answers inquiryRefund requests for all providers from one shared state."""

    def __init__(
        self,
        state: SandboxState,
        credentials: Credentials,
        log: Callable[[str], None] | None,
        notifier: Notifier | None = None,
    ) -> None:
        self.state = state
        self.credentials = credentials
        self.log = log
        self.notifier = notifier

    def handle(self, dialect: Dialect, path: str, headers: RequestHeaders, body: bytes) -> answers.Reply:
        """The reply to one request; never raises for anything the caller sent."""
        self.state.requests.add(LoggedRequest(dialect.name, path, headers.items, body, time.time()))
        identity: Identity | None = None
        try:
            identity = dialect.identity(headers)
            self._authenticate(dialect, path, identity, headers, body)
            over_limit = self.state.traffic.admit(dialect.name, identity.caller, time.time(), identity.sent_at)
            if over_limit is not None:  # the merchant asks too often: refused before the refund is looked at
                reply = answers.seal(
                    answers.for_kind(dialect, over_limit, _no_view), dialect, path, identity, self.credentials
                )
                self._log(dialect, "-", 0, reply.summary + " (over the traffic limit)")
                return reply
            refund_id, refund_request_id = self._ids(dialect, body)
            record = self._record(dialect, refund_id, refund_request_id)
        except Refused as exc:
            reply = answers.seal(answers.refusal(exc), dialect, path, identity, self.credentials)
            self._log(dialect, "-", 0, reply.summary + f" ({exc.message})")
            return reply
        return self._answer(dialect, path, identity, record)

    def _authenticate(
        self, dialect: Dialect, path: str, identity: Identity, headers: RequestHeaders, body: bytes
    ) -> None:
        key = self.credentials.merchant_public_key(dialect.name, identity.caller)
        if key is None:
            raise Refused(dialect.unknown_caller_code, f"unknown {dialect.caller_header} {identity.caller[:64]!r}")
        pairs = signing.parse_signature_header(headers.get("Signature", exact=dialect.exact_header_names))
        if not pairs:
            raise Refused("INVALID_SIGNATURE", "header Signature is required")
        if pairs.get("algorithm") != dialect.algorithm:
            raise Refused("INVALID_SIGNATURE", f"Signature algorithm must be {dialect.algorithm}")
        if pairs.get("keyVersion") != answers.KEY_VERSION:
            raise Refused(dialect.key_version_code, f"no key with keyVersion {pairs.get('keyVersion', '')[:16]!r}")
        signature = pairs.get("signature")
        if not signature or not signing.verify(key, dialect.request_content(path, identity, body), signature):
            raise Refused("INVALID_SIGNATURE", "the signature does not verify with this client's public key")
        dialect.check_route(path, identity)
        # After the signature check, so a forged request cannot burn a merchant's nonce.
        if identity.nonce is not None and not self.state.nonces.claim(identity.caller, identity.nonce):
            raise Refused("INVALID_NONCE", "this Nonce was already used")

    def _ids(self, dialect: Dialect, body: bytes) -> tuple[str | None, str | None]:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            raise Refused(dialect.parse_error_code, "the body must be a JSON object")
        ids = {name: _id_field(payload, name) for name in ("refundId", "refundRequestId")}
        if dialect.refund_id_required and not ids["refundId"]:
            raise Refused("PARAM_ILLEGAL", "refundId is required")
        if not ids["refundId"] and not ids["refundRequestId"]:
            raise Refused("PARAM_ILLEGAL", "refundId or refundRequestId is required")
        return ids["refundId"], ids["refundRequestId"]

    def _record(self, dialect: Dialect, refund_id: str | None, refund_request_id: str | None) -> RefundRecord:
        try:
            return self.state.refunds.find_or_create(dialect.name, refund_id, refund_request_id)
        except ScriptError as exc:
            raise Refused("PARAM_ILLEGAL", str(exc)) from None

    def _answer(self, dialect: Dialect, path: str, identity: Identity, record: RefundRecord) -> answers.Reply:
        poll = self.state.refunds.poll(record, path, self.state.chaos, identity.caller)
        answer = answers.for_kind(dialect, poll.kind, partial(_view, dialect, record))
        reply = answers.seal(answer, dialect, path, identity, self.credentials)
        chaos = " (chaos)" if poll.chaos else ""
        self._log(dialect, record.refund_id or "-", poll.number, reply.summary + chaos)
        self._watch_clock(dialect, record)
        on_answer = partial(self._turned, dialect, record, poll.kind)
        return replace(reply, delay=poll.slow_ms / 1000, on_answer=on_answer)

    # ---- notifications: pushed when a refund turns final, by a poll or by its script's clock ------------
    def _turned(self, dialect: Dialect, record: RefundRecord, kind: str) -> None:
        if self.state.refunds.mark_final(record, kind):
            self._notify(dialect, record, kind)

    def _notify(self, dialect: Dialect, record: RefundRecord, kind: str) -> None:
        target = self._target(dialect, record)
        if target is not None and self.notifier is not None:
            self.notifier.push(dialect, target, _view(dialect, record, kind), record.caller)

    def _target(self, dialect: Dialect, record: RefundRecord) -> NotifyTarget | None:
        if self.notifier is None:
            return None
        return record.notify or self.notifier.target_for_caller(dialect.name, record.caller)

    def _watch_clock(self, dialect: Dialect, record: RefundRecord) -> None:
        """A refund whose script turns final after some seconds does so unpolled: a timer checks it then."""
        if self.notifier is None or self._target(dialect, record) is None:
            return
        due = self.state.refunds.claim_settle(record)
        if due is not None:
            self.notifier.call_at(due, partial(self._settle, dialect, record))

    def _settle(self, dialect: Dialect, record: RefundRecord) -> None:
        kind = self.state.refunds.settle(record)
        if kind is not None:
            self._turned(dialect, record, kind)

    def _log(self, dialect: Dialect, refund_id: str, poll: int, summary: str) -> None:
        if self.log is not None:
            self.log(f"{dialect.name:<10} {refund_id} poll {poll}: {summary}")


def _id_field(payload: dict[str, object], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Refused("PARAM_ILLEGAL", f"{name} must be a string")
    if len(value) > MAX_ID_LENGTH:
        raise Refused("PARAM_ILLEGAL", f"{name} must be at most {MAX_ID_LENGTH} characters")
    return value


def _no_view(state: str) -> RefundView:
    raise AssertionError("a traffic-limit answer shows no refund")  # for_kind never asks for one for these kinds


def _view(dialect: Dialect, record: RefundRecord, state: str) -> RefundView:
    return refund_view(dialect, state, record.refund_id or "", record.refund_request_id or "", record.refund_time)


def refund_view(
    dialect: Dialect, state: str, refund_id: str, refund_request_id: str, refund_time: str | None = None
) -> RefundView:
    """The refund as an S answer (or a notification) shows it; the amount is derived from the id so it is stable."""
    digest = int(hashlib.sha256(f"{dialect.name}|{refund_id}".encode()).hexdigest()[:8], 16)
    return RefundView(
        state=state,
        refund_id=refund_id,
        refund_request_id=refund_request_id,
        payment_id=invent_id(dialect.name, "paymentId", refund_id),
        amount_value=str(100 + digest % 99_900),
        refund_time=refund_time or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    )
