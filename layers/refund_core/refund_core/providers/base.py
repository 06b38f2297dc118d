"""The inquiry flow every provider shares; providers fill in small hooks.

Flow: build the body once (compact JSON) → sign those exact bytes → POST them with the
provider's headers → verify the response signature over the raw body → parse → map to a
normalised :class:`Observation` through the decision table (providers.md §5).
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.domain.profile import MerchantProfile
from refund_core.providers import signing

DEFAULT_TIMEOUT = (3.0, 10.0)  # connect, read: a poll every 5 s must not hang for the SDKs' 15 s
MAX_ID_LENGTH = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    amount_value: str | None
    amount_currency: str | None
    refund_time: str | None
    fail_reason: str | None


class Provider(ABC):
    """One provider's inquiryRefund client. Subclasses fill the hooks below."""

    name: ClassVar[str]
    algorithm: ClassVar[str] = "RSA256"
    iso_timespec: ClassVar[str] = "milliseconds"
    not_found_codes: ClassVar[frozenset[str]]
    refund_statuses: ClassVar[Mapping[str, Status]]

    def __init__(
        self,
        profile: MerchantProfile,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.profile = profile
        self.timeout = timeout
        self._session = session or requests.Session()
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

    def refund_fields(self, payload: Mapping[str, Any]) -> RefundFields:
        """Refund data from a verified S answer: amount, time and fail reason."""
        amount = payload.get("refundAmount")
        amount = amount if isinstance(amount, Mapping) else {}
        return RefundFields(
            amount_value=_text(amount.get("value")),
            amount_currency=_text(amount.get("currency")),
            refund_time=_text(payload.get("refundTime")),
            fail_reason=_text(payload.get("refundFailReason")),
        )

    # ---- flow --------------------------------------------------------------------------
    def inquire(self, query: RefundQuery, *, timeout_seconds: float | None = None) -> Observation:
        """Ask the provider about one refund. Never raises for provider or network trouble.

        ``timeout_seconds`` is the caller's total budget for this call (connect, send and the whole read);
        None means the adapter's own ``timeout``.
        """
        request = self.build_request(query)
        started = time.perf_counter()
        try:
            response = self._session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self.timeout,
                verify=True,
                allow_redirects=False,
            )
            body = response.content
        except requests.Timeout:
            reason = f"transport: no answer within {self.timeout[1]:g} s"
        except requests.RequestException as exc:
            reason = f"transport: {type(exc).__name__}"
        else:
            latency_ms = (time.perf_counter() - started) * 1000
            return self.interpret(query, request, response.status_code, response.headers, body, latency_ms)
        return replace(self._seed(query, (time.perf_counter() - started) * 1000), reason=reason)

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
    ) -> Observation:
        """Apply the decision table to one HTTP answer."""
        seed = self._seed(query, latency_ms)
        if status_code != 200:
            return replace(seed, reason=f"HTTP {status_code} from provider")
        payload = _json_object(body)
        result = payload.get("result") if payload else None
        if payload is None or not isinstance(result, Mapping):
            return replace(seed, reason="unparsable response body")
        seed = replace(
            seed,
            verified=self._verified(request, headers, body),
            result=ProviderResult(
                code=_text(result.get("resultCode")),
                status=_text(result.get("resultStatus")),
                message=_text(result.get("resultMessage")),
            ),
        )
        match seed.result.status:
            case "S" if seed.verified:
                return self._answer_s(payload, seed)
            case "S":
                return replace(seed, reason="untrusted: S answer without a valid signature; its data was not used")
            case "U":
                return replace(seed, reason=f"provider answered U ({seed.result.code})")
            case "F":
                return self._answer_f(seed)
        return replace(seed, reason=f"unrecognised resultStatus {seed.result.status!r}")

    def _answer_s(self, payload: Mapping[str, Any], seed: Observation) -> Observation:
        raw_status = _text(payload.get("refundStatus"))
        status = self.refund_statuses.get(raw_status or "", Status.UNKNOWN)
        reason = None
        if status is Status.UNKNOWN:
            reason = f"unrecognised refundStatus {raw_status!r}"
        elif not status.final:
            reason = f"refund is {raw_status} at the provider"
        fields = self.refund_fields(payload)
        return replace(
            seed,
            status=status,
            reason=reason,
            refund_id=_text(payload.get("refundId")) or seed.refund_id,
            refund_request_id=_text(payload.get("refundRequestId")) or seed.refund_request_id,
            amount_value=fields.amount_value,
            amount_currency=fields.amount_currency,
            refund_time=fields.refund_time,
            fail_reason=fields.fail_reason,
        )

    def _answer_f(self, seed: Observation) -> Observation:
        code = seed.result.code
        if code in self.not_found_codes:
            if not seed.verified:  # a forged "not found" must not end the polling
                return replace(seed, reason=f"unsigned {code}; polling on")
            return replace(seed, status=Status.NOT_FOUND, reason=f"provider has no such refund yet ({code})")
        reason = f"provider refused the inquiry ({code})"
        return replace(seed, status=Status.ERROR, reason=reason if seed.verified else reason + ", unsigned")

    def _verified(self, request: SignedRequest, headers: Mapping[str, str], body: bytes) -> bool:
        signature = signing.parse_signature_header(headers.get("Signature")).get("signature")
        content = self.response_content(request, headers, body)
        if not signature or content is None:
            return False
        return signing.verify(self._public_key, content, signature)

    def _seed(self, query: RefundQuery, latency_ms: float) -> Observation:
        """An UNKNOWN observation carrying the query's ids: every answer starts from it."""
        return Observation(
            provider=self.name,
            status=Status.UNKNOWN,
            refund_id=query.refund_id,
            refund_request_id=query.refund_request_id,
            latency_ms=latency_ms,
        )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    return str(value)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None
