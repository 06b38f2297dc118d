"""The sandbox itself: script grammar, admin endpoints, chaos, counters, and how strictly it checks requests."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import requests

from refund_core.domain import Status
from refund_core.providers import Provider, RefundQuery
from refund_poller.sandbox import Sandbox, ScriptError, Step, parse_script, script_for_id
from refund_poller.sandbox.admin import Admin, AdminRequest

NewId = Callable[[str], str]
AdapterFactory = Callable[..., Provider]


@pytest.fixture
def admin_url(sandbox: Sandbox) -> Iterator[str]:
    """The admin base URL; chaos is switched off again whatever the test did."""
    yield f"{sandbox.base_url}/_sandbox"
    requests.put(f"{sandbox.base_url}/_sandbox/chaos", json={"rate": 0}, timeout=5)


# ---- script grammar --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "steps", "slow_ms"),
    [
        ("success", (Step("success"),), 0),
        ("processing3-success", (Step("processing", polls=3), Step("success")), 0),
        ("processing2s-fail", (Step("processing", seconds=2.0), Step("fail")), 0),
        ("notfound2-fail", (Step("notfound", polls=2), Step("fail")), 0),
        ("http500x2-http429x1-success", (Step("http500", 2), Step("http429", 1), Step("success")), 0),
        (
            "reset1-resetx2-garbage1-unknown",
            (Step("reset", 1), Step("reset", 2), Step("garbage", 1), Step("unknown")),
            0,
        ),
        (
            "badsig1-nosig1-ratelimit2-notfound",
            (Step("badsig", 1), Step("nosig", 1), Step("ratelimit", 2), Step("notfound")),
            0,
        ),
        ("slow250ms-processing1-denied", (Step("processing", polls=1), Step("denied")), 250),
        ("slow100ms", (Step("success"),), 100),
    ],
)
def test_scripts_parse_into_steps(text: str, steps: tuple[Step, ...], slow_ms: int) -> None:
    script = parse_script(text)

    assert (script.steps, script.slow_ms) == (steps, slow_ms)


@pytest.mark.parametrize(
    ("text", "token", "words"),
    [
        ("processing3-sucess", "sucess", "not a known token"),
        ("http5002-success", "http5002", "http500x2"),
        ("processing-success", "success", "never be reached"),
        ("success-fail", "fail", "never be reached"),
        ("processing3", "processing3", "must end with"),
        ("success2", "success2", "takes no count"),
        ("reset2s-success", "reset2s", "only processing, notfound and unknown"),
        ("processing0-success", "processing0", "between 1 and"),
        ("", "", "empty"),
    ],
)
def test_a_script_that_does_not_parse_names_the_bad_token(text: str, token: str, words: str) -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script(text)

    assert caught.value.token == token
    assert words in str(caught.value)


def test_an_id_without_a_double_dash_is_a_plain_success() -> None:
    assert script_for_id("2024010112345-r1").text == "success"
    assert script_for_id("notfound1-fail--order-7").text == "notfound1-fail"


def test_an_id_whose_script_does_not_parse_gets_param_illegal_naming_the_token(
    make_adapter: AdapterFactory,
) -> None:
    seen = make_adapter("alipayplus").inquire(RefundQuery(refund_id="processing2-sucess--r9"))

    assert (seen.status, seen.result.code) == (Status.ERROR, "PARAM_ILLEGAL")
    assert "'sucess'" in (seen.result.message or "")


# ---- admin endpoints --------------------------------------------------------------------------
def test_the_health_endpoint_reports_the_base_url_and_the_paths(admin_url: str, sandbox: Sandbox) -> None:
    health = requests.get(f"{admin_url}/health", timeout=5).json()

    assert health["status"] == "ok" and health["baseUrl"] == sandbox.base_url
    assert "/ams/sandbox/api/v1/payments/inquiryRefund" in health["paths"]["antom"]


def test_a_script_set_through_the_admin_endpoint_overrides_the_id(
    admin_url: str, make_adapter: AdapterFactory, new_refund_id: NewId
) -> None:
    refund_id = new_refund_id("success")
    put = requests.put(f"{admin_url}/refunds/antom/{refund_id}", json={"script": "processing1-fail"}, timeout=5)
    antom = make_adapter("antom")

    statuses = [antom.inquire(RefundQuery(refund_request_id=refund_id)).status for _ in range(2)]

    assert put.status_code == 200
    assert statuses == [Status.PROCESSING, Status.FAIL]
    record = requests.get(f"{admin_url}/refunds/antom/{refund_id}", timeout=5).json()
    assert (record["polls"], record["script"], record["finalStatus"]) == (2, "processing1-fail", "FAIL")


def test_a_bad_script_through_the_admin_endpoint_is_a_400_naming_the_token(admin_url: str) -> None:
    answer = requests.put(f"{admin_url}/refunds/alphapay/r1", json={"script": "processing2-sucess"}, timeout=5)

    assert answer.status_code == 400
    assert "'sucess'" in answer.json()["error"]


def test_a_refund_nobody_asked_about_is_404(admin_url: str, new_refund_id: NewId) -> None:
    assert requests.get(f"{admin_url}/refunds/antom/{new_refund_id('success')}", timeout=5).status_code == 404


def test_reset_forgets_refunds_and_chaos(admin_url: str, make_adapter: AdapterFactory, new_refund_id: NewId) -> None:
    refund_id = new_refund_id("success")
    make_adapter("alphapay").inquire(RefundQuery(refund_id=refund_id))
    requests.put(f"{admin_url}/chaos", json={"rate": 0.5}, timeout=5)

    requests.post(f"{admin_url}/reset", timeout=5)

    assert requests.get(f"{admin_url}/refunds/alphapay/{refund_id}", timeout=5).status_code == 404
    assert requests.get(f"{admin_url}/chaos", timeout=5).json()["rate"] == 0.0


def test_the_admin_endpoints_refuse_clients_that_are_not_on_loopback(sandbox: Sandbox) -> None:
    admin = Admin(sandbox.state, sandbox.base_url, sandbox.profiles)

    status, _ = admin.handle(AdminRequest("GET", "/_sandbox/health", b"", "192.0.2.10"))

    assert status == 403


# ---- counters --------------------------------------------------------------------------------
def test_final_at_is_the_time_of_the_first_final_answer(
    sandbox: Sandbox, make_adapter: AdapterFactory, new_refund_id: NewId
) -> None:
    wallet, refund_id = make_adapter("alipayplus"), new_refund_id("processing1-success")
    wallet.inquire(RefundQuery(refund_id=refund_id))
    assert (sandbox.refund("alipayplus", refund_id) or {})["finalAt"] is None

    before = time.time()
    wallet.inquire(RefundQuery(refund_id=refund_id))
    after = time.time()
    first_final_at = (sandbox.refund("alipayplus", refund_id) or {})["finalAt"]
    wallet.inquire(RefundQuery(refund_id=refund_id))

    assert before <= first_final_at <= after
    record = sandbox.refund("alipayplus", refund_id) or {}
    assert (record["polls"], record["finalAt"], record["finalStatus"]) == (3, first_final_at, "SUCCESS")


def test_a_refund_asked_by_request_id_gets_a_stable_invented_refund_id_that_finds_it_again(
    sandbox: Sandbox, make_adapter: AdapterFactory, new_refund_id: NewId
) -> None:
    antom, request_id = make_adapter("antom"), new_refund_id("processing1-success")

    first = antom.inquire(RefundQuery(refund_request_id=request_id))
    second = antom.inquire(RefundQuery(refund_id=first.refund_id))

    assert first.refund_id and first.refund_id != request_id
    assert (second.status, second.refund_id, second.refund_request_id) == (Status.SUCCESS, first.refund_id, request_id)
    assert (sandbox.refund("antom", request_id) or {})["polls"] == 2


def test_a_seconds_long_processing_step_ends_after_that_time(
    make_adapter: AdapterFactory, new_refund_id: NewId
) -> None:
    wallet, refund_id = make_adapter("alipayplus"), new_refund_id("processing1s-success")

    early = [wallet.inquire(RefundQuery(refund_id=refund_id)).status for _ in range(2)]
    time.sleep(1.05)
    late = wallet.inquire(RefundQuery(refund_id=refund_id)).status

    assert early == [Status.PROCESSING, Status.PROCESSING] and late is Status.SUCCESS


# ---- chaos -----------------------------------------------------------------------------------
def test_chaos_spoils_roughly_the_configured_share_of_answers(
    admin_url: str, sandbox: Sandbox, make_adapter: AdapterFactory, new_refund_id: NewId
) -> None:
    requests.put(f"{admin_url}/chaos", json={"rate": 0.3, "faults": ["unknown"], "seed": 7}, timeout=5)
    antom, refund_id = make_adapter("antom-live"), new_refund_id("processing")

    statuses = [antom.inquire(RefundQuery(refund_id=refund_id)).status for _ in range(150)]

    spoiled = statuses.count(Status.UNKNOWN)
    assert 0.2 <= spoiled / len(statuses) <= 0.4
    assert statuses.count(Status.PROCESSING) == len(statuses) - spoiled
    record = sandbox.refund("antom", refund_id) or {}
    assert (record["polls"], record["chaosFaults"]) == (150, spoiled)


def test_the_same_chaos_seed_spoils_the_same_answers(
    admin_url: str, make_adapter: AdapterFactory, new_refund_id: NewId
) -> None:
    wallet = make_adapter("alipayplus")
    runs = []
    for _ in range(2):
        requests.put(f"{admin_url}/chaos", json={"rate": 0.5, "faults": ["http500", "garbage"], "seed": 3}, timeout=5)
        refund_id = new_refund_id("processing")
        runs.append([wallet.inquire(RefundQuery(refund_id=refund_id)).reason for _ in range(20)])

    assert runs[0] == runs[1]


def test_a_chaos_fault_does_not_advance_the_lifecycle(
    admin_url: str, make_adapter: AdapterFactory, new_refund_id: NewId
) -> None:
    alphapay, refund_id = make_adapter("alphapay"), new_refund_id("processing1-success")
    requests.put(f"{admin_url}/chaos", json={"rate": 1.0, "faults": ["reset", "nosig"]}, timeout=5)
    during = [alphapay.inquire(RefundQuery(refund_id=refund_id)).status for _ in range(4)]
    requests.put(f"{admin_url}/chaos", json={"rate": 0}, timeout=5)

    after = [alphapay.inquire(RefundQuery(refund_id=refund_id)).status for _ in range(2)]

    assert during == [Status.UNKNOWN] * 4
    assert after == [Status.PROCESSING, Status.SUCCESS]


def test_a_chaos_configuration_with_an_unknown_fault_is_refused(admin_url: str) -> None:
    answer = requests.put(f"{admin_url}/chaos", json={"rate": 0.1, "faults": ["meteor"]}, timeout=5)

    assert answer.status_code == 400 and "faults" in answer.json()["error"]


# ---- request checks --------------------------------------------------------------------------
@dataclass
class RawQuery:
    """A query that skips RefundQuery's own checks, to see what the sandbox does with bad ids."""

    refund_id: str | None = None
    refund_request_id: str | None = None

    def body(self) -> dict[str, str]:
        return {k: v for k, v in (("refundId", self.refund_id), ("refundRequestId", self.refund_request_id)) if v}


def send(adapter: Provider, query: Any, **header_changes: str | None) -> dict[str, Any]:
    """Sign a request as ``adapter`` would, change headers after signing, and return the provider's result."""
    request = adapter.build_request(cast(RefundQuery, query))
    headers = {**request.headers, **header_changes}
    sent = {name: value for name, value in headers.items() if value is not None}
    answer = requests.post(request.url, data=request.body, headers=sent, timeout=5)
    return cast(dict[str, Any], answer.json()["result"])


@pytest.mark.parametrize(
    ("profile_name", "query", "message"),
    [
        ("antom", RawQuery(), "refundId or refundRequestId is required"),
        ("alipayplus", RawQuery(refund_id="x" * 65), "refundId must be at most 64 characters"),
        ("antom", RawQuery(refund_request_id="y" * 65), "refundRequestId must be at most 64 characters"),
    ],
)
def test_missing_or_over_long_ids_are_param_illegal(
    make_adapter: AdapterFactory, profile_name: str, query: RawQuery, message: str
) -> None:
    result = send(make_adapter(profile_name), query)

    assert (result["resultCode"], result["resultStatus"], result["resultMessage"]) == ("PARAM_ILLEGAL", "F", message)


def test_alphapay_without_a_refund_id_is_param_illegal(make_adapter: AdapterFactory) -> None:
    alphapay = make_adapter("alphapay")
    alphapay.query_body = lambda query: query.body()  # type: ignore[method-assign]  # skip the adapter's own check

    result = send(alphapay, RawQuery(refund_request_id="r1"))

    assert (result["resultCode"], result["resultMessage"]) == ("PARAM_ILLEGAL", "refundId is required")


def test_a_replayed_alphapay_request_is_refused_for_its_reused_nonce(make_adapter: AdapterFactory) -> None:
    request = make_adapter("alphapay").build_request(RefundQuery(refund_id="success--replay"))

    answers = [requests.post(request.url, data=request.body, headers=request.headers, timeout=5) for _ in range(2)]

    assert answers[0].json()["result"]["resultCode"] == "SUCCESS"
    assert answers[1].json()["result"]["resultCode"] == "INVALID_NONCE"


@pytest.mark.parametrize(
    ("profile_name", "changes", "code"),
    [
        ("alphapay", {"Signature": None}, "INVALID_SIGNATURE"),
        ("alphapay", {"Merchant-Code": None, "merchant-code": "RPM0001"}, "PARAM_ILLEGAL"),
        ("alphapay", {"Nonce": "short"}, "PARAM_ILLEGAL"),
        ("alphapay", {"Request-Time": "1700000000000"}, "PARAM_ILLEGAL"),
        ("antom", {"Request-Time": "yesterday"}, "PARAM_ILLEGAL"),
        ("antom", {"Client-Id": None}, "PARAM_ILLEGAL"),
    ],
)
def test_malformed_identity_headers_are_refused(
    make_adapter: AdapterFactory, profile_name: str, changes: dict[str, str | None], code: str
) -> None:
    result = send(make_adapter(profile_name), RefundQuery(refund_id="success--r1"), **changes)

    assert (result["resultCode"], result["resultStatus"]) == (code, "F")


def test_alphapay_refuses_the_rsa256_algorithm_name(make_adapter: AdapterFactory) -> None:
    request = make_adapter("alphapay").build_request(RefundQuery(refund_id="success--r1"))
    request.headers["Signature"] = request.headers["Signature"].replace("algorithm=RS256", "algorithm=RSA256")

    result = requests.post(request.url, data=request.body, headers=request.headers, timeout=5).json()["result"]

    assert (result["resultCode"], result["resultMessage"]) == ("INVALID_SIGNATURE", "Signature algorithm must be RS256")


def test_antom_refuses_a_key_version_it_does_not_have(make_adapter: AdapterFactory) -> None:
    seen = make_adapter("antom", keyVersion="2").inquire(RefundQuery(refund_id="success--r1"))

    assert (seen.status, seen.result.code) == (Status.ERROR, "KEY_NOT_FOUND")


# ---- what the sandbox serves, and how it looks on the wire ---------------------------------------
@pytest.mark.parametrize("prefix", ["", "/gcash", "/openapi/wallet-2"])
def test_the_wallet_answers_on_the_seed_path_under_any_wallet_prefix(
    make_adapter: AdapterFactory, sandbox: Sandbox, new_refund_id: NewId, prefix: str
) -> None:
    # Seed 000_29cee8de70e96ca6.txt: "POST /v1/payments/inquiryRefund", host and any prefix assigned by each wallet.
    refund_id = new_refund_id("success")
    wallet = make_adapter("alipayplus", **({"pathPrefix": prefix} if prefix else {}))

    seen = wallet.inquire(RefundQuery(refund_id=refund_id))

    assert (seen.status, seen.verified) == (Status.SUCCESS, True)
    assert (sandbox.refund("alipayplus", refund_id) or {})["lastPath"] == f"{prefix}/v1/payments/inquiryRefund"


def _raw_answer(url: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """POST with the standard library and keep the header names exactly as they came over the wire."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        connection.request("POST", parts.path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("profile_name", ["antom", "alipayplus", "alphapay"])
def test_answers_carry_lower_case_header_names_as_an_http2_gateway_delivers_them(
    make_adapter: AdapterFactory, new_refund_id: NewId, profile_name: str
) -> None:
    request = make_adapter(profile_name).build_request(RefundQuery(refund_id=new_refund_id("success")))

    status, headers, _ = _raw_answer(request.url, request.headers, request.body)

    names = [name for name, _ in headers]
    assert status == 200
    assert names == [name.lower() for name in names]
    expected = {"signature", "response-time", "content-type"} | (
        {"nonce"} if profile_name == "alphapay" else {"client-id"}
    )
    assert expected <= set(names)


class _RecasingRelay(ThreadingHTTPServer):
    """Relays inquiries to the sandbox and re-cases the answer's header names (``Signature``, ``SIGNATURE`` …)."""

    daemon_threads = True

    def __init__(self, upstream: str, recase: Callable[[str], str]) -> None:
        self.upstream, self.recase = upstream, recase
        super().__init__(("127.0.0.1", 0), _RelayHandler)


class _RelayHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        relay = cast(_RecasingRelay, self.server)
        body = self.rfile.read(int(self.headers.get("Content-Length") or "0"))
        status, headers, answer = _raw_answer(relay.upstream + self.path, dict(self.headers.items()), body)
        self.send_response_only(status)
        for name, value in headers:
            if name != "content-length":
                self.send_header(relay.recase(name), value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""


@pytest.mark.parametrize(
    "recase",
    [str.lower, lambda name: "-".join(part.capitalize() for part in name.split("-")), str.upper],
    ids=["lower", "Title", "UPPER"],
)
def test_our_adapters_verify_answers_whatever_the_case_of_the_header_names(
    make_adapter: AdapterFactory, sandbox: Sandbox, new_refund_id: NewId, provider_name: str, recase: Any
) -> None:
    relay = _RecasingRelay(sandbox.base_url, recase)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        adapter = make_adapter(provider_name, baseUrl=f"http://127.0.0.1:{relay.server_address[1]}")
        seen = adapter.inquire(RefundQuery(refund_id=new_refund_id("success")))
    finally:
        relay.shutdown()
        relay.server_close()

    assert (seen.status, seen.verified) == (Status.SUCCESS, True)
