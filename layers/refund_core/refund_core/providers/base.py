"""The inquiry flow every provider shares; providers fill in small hooks.

Flow: build the body once (compact JSON) → sign those exact bytes → POST them with the
provider's headers (bounded: providers/transport.py) → parse strictly → verify the response
signature over the raw body → check the answer is fresh and about the refund asked about →
map to a normalised :class:`Observation` through the decision table (providers.md §5).
What is trusted and why, rule by rule with sources: docs/trust.md.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.domain.profile import MerchantProfile
from refund_core.providers import signing, strict, transport

DEFAULT_TIMEOUT = (3.0, 10.0)  # connect, read: a poll every 5 s must not hang for the SDKs' 15 s
DEFAULT_MAX_BODY_BYTES = transport.DEFAULT_MAX_BODY_BYTES  # real answers are about 1 KiB
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 300.0  # Response-Time further than this from our clock: a replay or a stale cache
ANOTHER_REFUND = "answer about another refund"
MAX_ID_LENGTH = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Notifications (docs/notifications.md). Antom's notifyRefund is about 1 KiB: the answers' cap fits it many times.
MAX_NOTIFICATION_BYTES = DEFAULT_MAX_BODY_BYTES
# A notification's signed Request-Time may be this old: Antom retries for about 24 h (0 s, 2 min, 10 min, 10 min,
# 1 h, 2 h, 6 h, 15 h after the first push) and does not document whether a retry carries a new Request-Time, so
# the whole schedule plus an hour is accepted; older is a replay (docs/internals.md, "Notifications").
NOTIFICATION_MAX_AGE_SECONDS = 25 * 3600
# The reply every provider's notification gets once it is recorded: Antom's fixed acknowledgement (notifyRefund,
# "Result processing logic"); wallets and AlphaPay get the same (documented assumption, docs/notifications.md).
ACKNOWLEDGEMENT: dict[str, Any] = {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}


class NotificationRejectedError(ValueError):
    """A pushed notification that proves nothing: ``reason`` is a short tag (metrics count by it), ``http_status``
    the answer it gets (401 unsigned or forged, 400 malformed, 413 too large), the message says why in words."""

    def __init__(self, reason: str, http_status: int, why: str) -> None:
        super().__init__(why)
        self.reason = reason
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class ReceivedNotification:
    """A notification as the endpoint received it: the path the provider called, headers, the raw body."""

    path: str
    headers: Mapping[str, str]
    body: bytes
    signatures: tuple[str, ...] = ()  # every Signature header as received (more than one is refused)

    def header(self, name: str) -> str | None:
        """A header by name, whatever its case (API Gateway lower-cases them)."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


class QueryError(ValueError):
    """The refund ids given for an inquiry break the providers' rules."""


@dataclass(frozen=True, slots=True)
class RefundQuery:
    """Which refund to ask about: the provider's ``refund_id``, the merchant's ``refund_request_id``, or both."""

    refund_id: str | None = None
    refund_request_id: str | None = None

    def __post_init__(self) -> None:
        if not self.refund_id and not self.refund_request_id:
            raise QueryError("refundId or refundRequestId: at least one is required")
        for name, value in (("refundId", self.refund_id), ("refundRequestId", self.refund_request_id)):
            if value is None:
                continue
            if len(value) > MAX_ID_LENGTH:
                raise QueryError(f"{name}: must be at most {MAX_ID_LENGTH} characters")
            if _CONTROL.search(value):
                raise QueryError(f"{name}: must not contain control characters")

    def body(self) -> dict[str, str]:
        return {
            key: value
            for key, value in (("refundId", self.refund_id), ("refundRequestId", self.refund_request_id))
            if value
        }


@dataclass(slots=True)
class SignedRequest:
    """An inquiry ready to send: the exact body bytes and the headers that sign them."""

    url: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class RefundFields:
    """Refund data read strictly from a verified S answer; ``dropped`` says which field was left out and why."""

    amount_value: str | None = None
    amount_currency: str | None = None
    refund_time: str | None = None
    fail_reason: str | None = None
    description: str | None = None
    dropped: tuple[str, ...] = ()


class Provider(ABC):
    """One provider's inquiryRefund client. Subclasses fill the hooks below."""

    name: ClassVar[str]
    algorithm: ClassVar[str] = "RSA256"
    iso_timespec: ClassVar[str] = "milliseconds"
    not_found_codes: ClassVar[frozenset[str]]
    # F codes saying the provider rejected our credentials or signature: the only F answers that may arrive
    # unsigned and still end polling (it could not verify us, so it may not sign). Sources: docs/trust.md.
    credential_rejection_codes: ClassVar[frozenset[str]]
    refund_statuses: ClassVar[Mapping[str, Status]]
    amount_field: ClassVar[str] = "refundAmount"
    epoch_millis_response_time: ClassVar[bool] = True

    def __init__(
        self,
        profile: MerchantProfile,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_clock_skew_seconds: float = DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    ) -> None:
        self.profile = profile
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.max_clock_skew_seconds = max_clock_skew_seconds
        # Calls to the provider go through an adapter whose connections the call's deadline can cut.
        self._session = transport.bounded(session or requests.Session(), profile.base_url)
        self._private_key = signing.load_private_key(profile.private_key)
        self._public_key = signing.load_public_key(profile.provider_public_key)

    # ---- hooks -------------------------------------------------------------------------
    def query_body(self, query: RefundQuery) -> dict[str, Any]:
        return query.body()

    @abstractmethod
    def request_headers(self, request_time: str) -> dict[str, str]:
        """Identity headers (and anything the content string needs) for one request."""

    @abstractmethod
    def request_content(self, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
        """The bytes the merchant signs for a request."""

    @abstractmethod
    def response_content(self, request: SignedRequest, headers: Mapping[str, str], body: bytes) -> bytes | None:
        """The bytes the provider signed for a response, or None when a header it needs is missing."""

    def answered_caller_matches(self, request: SignedRequest, headers: Mapping[str, str]) -> bool:
        """False when a signed answer names another caller than the one that asked (its own signed header)."""
        return True

    def raw_amount(self, payload: Mapping[str, Any]) -> Any:
        """The refund amount object of an S answer, as sent (checked by the caller)."""
        return payload.get("refundAmount")

    def refund_fields(self, payload: Mapping[str, Any], status: Status) -> RefundFields:
        """Refund data from a verified S answer, strictly: a malformed field is dropped and named, never guessed."""
        dropped: list[str] = []
        value = currency = refund_time = None
        raw_amount = self.raw_amount(payload)
        if raw_amount is not None:
            try:
                value, currency = strict.amount(raw_amount, self.amount_field)
            except strict.MalformedError as exc:
                dropped.append(f"{exc}; dropped")
        elif status is Status.SUCCESS:
            dropped.append(f"{self.amount_field}: missing")
        raw_time = payload.get("refundTime")
        if raw_time is not None:
            try:
                strict.iso_time(raw_time, "refundTime")
                refund_time = raw_time
            except strict.MalformedError as exc:
                dropped.append(f"{exc}; dropped")
        elif status is Status.SUCCESS:
            dropped.append("refundTime: missing")
        return RefundFields(
            amount_value=value,
            amount_currency=currency,
            refund_time=refund_time,
            fail_reason=_string(payload.get("refundFailReason")),
            dropped=tuple(dropped),
        )

    def notification_content(self, notification: ReceivedNotification) -> bytes | None:
        """The bytes the provider signed for a notification, or None when a header it needs is missing."""
        return None  # a provider without a notification dialect: every notification is refused

    def notification_caller(self, notification: ReceivedNotification) -> str | None:
        """The caller id (client id, merchant code) a notification names in its signed headers."""
        return None

    def check_notification_kind(self, payload: Mapping[str, Any]) -> None:
        """Raise MalformedError when the body is another kind of notification than a refund result."""
        return None  # AlphaPay's push names no kind: it is only ever the refund's own notifyUrl

    def acknowledgement(self) -> bytes:
        """The body that tells the provider its notification was received (stop retrying)."""
        return json.dumps(ACKNOWLEDGEMENT, separators=(",", ":")).encode()

    # ---- notifications -----------------------------------------------------------------
    def read_notification(self, notification: ReceivedNotification, *, now: float | None = None) -> Observation:
        """Verify a pushed notification, then read it strictly, as an answer would be (docs/trust.md).

        Order: size, signature over the raw body (nothing else is looked at before it verifies), the caller it
        names, its signed Request-Time, then the body. Raises :class:`NotificationRejectedError`.
        """
        body = notification.body
        if len(body) > MAX_NOTIFICATION_BYTES:
            raise NotificationRejectedError(
                "oversize", 413, f"body is {len(body)} bytes (at most {MAX_NOTIFICATION_BYTES})"
            )
        signatures = notification.signatures
        if not any(value.strip() for value in signatures):
            raise NotificationRejectedError("unsigned", 401, "no Signature header")
        try:
            pairs = strict.signature_header(signatures, self.algorithm)
        except strict.MalformedError as exc:
            raise NotificationRejectedError("bad-signature", 401, str(exc)) from None
        content = self.notification_content(notification)
        if content is None:
            raise NotificationRejectedError("bad-signature", 401, "a header the signature covers is missing")
        if not signing.verify(self._public_key, content, pairs["signature"]):
            raise NotificationRejectedError("bad-signature", 401, "the signature does not verify with the provider key")
        # One provider key signs for every merchant: the signed caller id is what makes it ours.
        if self.notification_caller(notification) != self.profile.caller_id:
            raise NotificationRejectedError("another-merchant", 401, "signed for another merchant's caller id")
        try:
            sent_at = strict.header_time(
                notification.header("Request-Time"),
                "Request-Time",
                epoch_millis_allowed=self.epoch_millis_response_time,
            )
        except strict.MalformedError as exc:
            raise NotificationRejectedError("malformed", 400, str(exc)) from None
        age = (time.time() if now is None else now) - sent_at.timestamp()
        if age > NOTIFICATION_MAX_AGE_SECONDS or -age > self.max_clock_skew_seconds:
            raise NotificationRejectedError(
                "stale",
                401,
                f"Request-Time is {age:.0f} s old (accepted: -{self.max_clock_skew_seconds:g} s to "
                f"{NOTIFICATION_MAX_AGE_SECONDS} s)",
            )
        try:
            payload = strict.json_object(body)
            self.check_notification_kind(payload)
            query = RefundQuery(
                refund_id=_id_field(payload, "refundId"), refund_request_id=_id_field(payload, "refundRequestId")
            )
        except (strict.MalformedError, QueryError) as exc:
            raise NotificationRejectedError("malformed", 400, str(exc)) from None
        raw_result = payload.get("result")
        result = raw_result if isinstance(raw_result, Mapping) else {}
        seed = replace(
            self._seed(query, 0.0),
            latency_ms=None,
            verified=True,
            result=ProviderResult(
                code=_string(result.get("resultCode")),
                status=_string(result.get("resultStatus")),
                message=_string(result.get("resultMessage")),
            ),
        )
        observation = self._answer_s(payload, seed)
        return replace(observation, reason="; ".join(filter(None, ("notification", observation.reason))))

    # ---- flow --------------------------------------------------------------------------
    def inquire(self, query: RefundQuery, *, timeout_seconds: float | None = None) -> Observation:
        """Ask the provider about one refund. Never raises for provider or network trouble.

        ``timeout_seconds`` is the caller's total budget for this call (connect, send and the whole read);
        the call never takes longer than it, nor than the adapter's connect + read ``timeout``.
        """
        request = self.build_request(query)
        started = time.perf_counter()
        try:
            answer = transport.post(
                self._session, request.url, request.headers, request.body, self._bounds(timeout_seconds)
            )
        except transport.UnansweredError as exc:
            seed = self._seed(query, (time.perf_counter() - started) * 1000)
            status = Status.ERROR if exc.refused else Status.UNKNOWN  # a refused host is configuration: stop, alert
            return replace(seed, status=status, reason=exc.reason, distrust=exc.distrust)
        latency_ms = (time.perf_counter() - started) * 1000
        return self.interpret(
            query, request, answer.status_code, answer.headers, answer.body, latency_ms, signatures=answer.signatures
        )

    def _bounds(self, timeout_seconds: float | None) -> transport.Bounds:
        connect, read = self.timeout
        total = connect + read if timeout_seconds is None else min(connect + read, max(timeout_seconds, 0.0))
        return transport.Bounds(connect, read, total, self.max_body_bytes)

    def build_request(self, query: RefundQuery) -> SignedRequest:
        body = json.dumps(self.query_body(query), separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=UTF-8", **self.request_headers(self.request_time())}
        path = self.profile.inquiry_path
        signature = signing.sign(self._private_key, self.request_content(path, headers, body))
        headers["Signature"] = signing.format_signature_header(self.algorithm, self.profile.key_version, signature)
        return SignedRequest(self.profile.inquiry_url, path, headers, body)

    def request_time(self) -> str:
        if self.profile.request_time_format == "epoch-millis":
            return str(time.time_ns() // 1_000_000)
        return datetime.now(UTC).isoformat(timespec=self.iso_timespec)

    def interpret(
        self,
        query: RefundQuery,
        request: SignedRequest,
        status_code: int,
        headers: Mapping[str, str],
        body: bytes,
        latency_ms: float,
        *,
        signatures: Sequence[str] | None = None,
    ) -> Observation:
        """Apply the decision table to one HTTP answer.

        ``signatures``: every ``Signature`` header as received (more than one is untrusted); None reads the one
        in ``headers``.
        """
        seed = replace(self._seed(query, latency_ms), http_status=status_code)
        if status_code != 200:
            return replace(seed, reason=f"HTTP {status_code} from provider")
        try:
            payload = strict.json_object(body)
        except strict.MalformedError as exc:
            return replace(seed, reason=f"unparsable response body: {exc}", distrust="malformed")
        result = payload.get("result")
        if not isinstance(result, Mapping):
            return replace(seed, reason="unparsable response body: no result object", distrust="malformed")
        seed = replace(
            seed,
            result=ProviderResult(
                code=_string(result.get("resultCode")),
                status=_string(result.get("resultStatus")),
                message=_string(result.get("resultMessage")),
            ),
        )
        if signatures is None:
            signature = headers.get("Signature")
            signatures = () if signature is None else (signature,)
        distrust = self._signature_distrust(request, headers, body, signatures)
        if distrust is not None:
            tag, why = distrust
            if tag == "unsigned":
                return self._unsigned(seed)
            return replace(seed, reason=f"untrusted: {why}; whatever it claims, its data was not used", distrust=tag)
        stale = self._staleness(headers)
        if stale is not None:
            return replace(seed, reason=f"untrusted: {stale}", distrust="stale-response")
        if not self._about_the_refund_asked(query, request, headers, payload):
            return replace(seed, reason=ANOTHER_REFUND, distrust="another-refund")
        seed = replace(seed, verified=True)
        match seed.result.status:
            case "S":
                return self._answer_s(payload, seed)
            case "U":
                return replace(seed, reason=f"provider answered U ({seed.result.code})")
            case "F":
                return self._answer_f(seed)
        return replace(seed, reason=f"unrecognised resultStatus {seed.result.status!r}")

    def _answer_s(self, payload: Mapping[str, Any], seed: Observation) -> Observation:
        raw_status = payload.get("refundStatus")
        status = self.refund_statuses.get(raw_status, Status.UNKNOWN) if isinstance(raw_status, str) else Status.UNKNOWN
        notes: list[str] = []
        if status is Status.UNKNOWN:
            notes.append(f"unrecognised refundStatus {raw_status!r}")
        elif not status.final:
            notes.append(f"refund is {raw_status} at the provider")
        fields = self.refund_fields(payload, status)
        notes.extend(fields.dropped)
        return replace(
            seed,
            status=status,
            reason="; ".join(notes) or None,
            # Already checked equal to the ids asked about when present; an id not asked about is learnt here.
            refund_id=_string(payload.get("refundId")) or seed.refund_id,
            refund_request_id=_string(payload.get("refundRequestId")) or seed.refund_request_id,
            amount_value=fields.amount_value,
            amount_currency=fields.amount_currency,
            refund_time=fields.refund_time,
            fail_reason=fields.fail_reason,
            description=fields.description,
        )

    def _answer_f(self, seed: Observation) -> Observation:
        """A verified F: not found, or the provider refused the inquiry (configuration error: stop, alert)."""
        code = seed.result.code
        if code in self.not_found_codes:
            return replace(seed, status=Status.NOT_FOUND, reason=f"provider has no such refund yet ({code})")
        return replace(seed, status=Status.ERROR, reason=f"provider refused the inquiry ({code})")

    def _unsigned(self, seed: Observation) -> Observation:
        """An answer with no signature proves nothing, except a provider saying it could not verify us."""
        code, result_status = seed.result.code, seed.result.status
        if result_status == "F" and code in self.credential_rejection_codes:
            return replace(seed, status=Status.ERROR, reason=f"provider refused the inquiry ({code}), unsigned")
        match result_status:
            case "S":
                reason = "untrusted: S answer without a valid signature; its data was not used"
            case "F" if code in self.not_found_codes:  # a forged "not found" must not end the polling
                reason = f"unsigned {code}; polling on"
            case "F":
                reason = f"untrusted: unsigned F ({code}) is not a credential rejection; polling on"
            case _:
                reason = f"unsigned answer (resultStatus {result_status!r}, {code}); polling on"
        return replace(seed, reason=reason, distrust="unsigned")

    def _signature_distrust(
        self, request: SignedRequest, headers: Mapping[str, str], body: bytes, signatures: Sequence[str]
    ) -> tuple[str, str] | None:
        """None when the one Signature header verifies over the raw body; else ("unsigned" | "bad-signature", why)."""
        if not any(value.strip() for value in signatures):
            return "unsigned", "no Signature header"
        try:
            pairs = strict.signature_header(signatures, self.algorithm)
        except strict.MalformedError as exc:
            return "bad-signature", str(exc)
        content = self.response_content(request, headers, body)
        if content is None:
            return "bad-signature", "a header the signature covers is missing"
        if not signing.verify(self._public_key, content, pairs["signature"]):
            return "bad-signature", "the signature does not verify with the provider key"
        return None

    def _staleness(self, headers: Mapping[str, str]) -> str | None:
        """Why a verified answer's signed Response-Time does not prove it fresh, or None."""
        try:
            answered_at = strict.response_time(
                headers.get("Response-Time"), epoch_millis_allowed=self.epoch_millis_response_time
            )
        except strict.MalformedError as exc:
            return str(exc)
        skew = abs((datetime.now(UTC) - answered_at).total_seconds())
        if skew > self.max_clock_skew_seconds:
            return f"Response-Time is {skew:.0f} s from our clock (allowed {self.max_clock_skew_seconds:g} s)"
        return None

    def _about_the_refund_asked(
        self, query: RefundQuery, request: SignedRequest, headers: Mapping[str, str], payload: Mapping[str, Any]
    ) -> bool:
        """False when a signed answer names another refund (or caller) than the one asked about."""
        for field, asked in (("refundId", query.refund_id), ("refundRequestId", query.refund_request_id)):
            answered = payload.get(field)
            if answered is None:
                continue
            if not isinstance(answered, str) or (asked is not None and answered != asked):
                return False
        return self.answered_caller_matches(request, headers)

    def _seed(self, query: RefundQuery, latency_ms: float) -> Observation:
        """An UNKNOWN observation carrying the query's ids: every answer starts from it."""
        return Observation(
            provider=self.name,
            status=Status.UNKNOWN,
            refund_id=query.refund_id,
            refund_request_id=query.refund_request_id,
            latency_ms=latency_ms,
        )


def _id_field(payload: Mapping[str, Any], name: str) -> str | None:
    """A refund id of a notification: text when present (the query's rules then check its length and characters)."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise strict.MalformedError(f"{name}: must be a non-empty string")
    return value


def _string(value: Any) -> str | None:
    """A text field as sent; anything else (number, boolean, object) is not text and reads as absent."""
    return value if isinstance(value, str) else None
