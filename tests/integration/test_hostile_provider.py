"""A hostile provider on 127.0.0.1 (tests/integration/hostile_provider.py), driven through ``Provider.inquire`` and
through ``refund-poller inquire``: answers that prove nothing stay UNKNOWN, and time and memory stay bounded.

The rules and their sources are in docs/trust.md; each test names the rule it holds.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refund_core.domain import Status, parse_profile
from refund_core.providers import Provider, RefundQuery, provider_for
from refund_poller.cli.inquire_cmd import EXIT_UNTRUSTED
from tests.integration.hostile_provider import DRIP_INTERVAL, HostileProvider, refund_id
from tests.integration.test_cli_inquire import CLI
from tests.integration.tls_support import self_signed

PROVIDERS = ("antom", "alipayplus", "alphapay")
TIMEOUT = (1.0, 2.0)  # connect, read: the adapter's own total is 3 s
MEMORY_BOUND = 50 * 1024 * 1024
SLACK_SECONDS = 2.0
REBINDING_NAME = "provider.rebinding.test"
UNSPECIFIED = "0.0.0.0"  # noqa: S104 - reaches this very machine on Linux; the call-time check must refuse it


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileProvider]:
    with HostileProvider() as running:
        yield running


def adapter(hostile: HostileProvider, provider: str) -> Provider:
    return provider_for(parse_profile(hostile.profile(provider), allow_plain_http=True), timeout=TIMEOUT)


def ask(hostile: HostileProvider, provider: str, scenario: str, **options: Any) -> tuple[RefundQuery, Any]:
    rid = refund_id(scenario)
    query = RefundQuery(refund_id=rid, refund_request_id=f"rr {rid}"[:64])
    return query, adapter(hostile, provider).inquire(query, **options)


# ---- rules 1, 2, 5: answers that prove nothing are UNKNOWN, their data unused -------------------------
UNTRUSTED = {
    "replay": "another-refund",  # a genuine signed SUCCESS about another refund
    "stale": "stale-response",  # signed an hour ago
    "future": "stale-response",  # signed an hour ahead
    "badsigF.ACCESS_DENIED": "bad-signature",  # a forged F must not end polling
    "dupkeys": "malformed",  # "refundStatus":"FAIL","refundStatus":"SUCCESS"
    "utf16": "malformed",  # a UTF-16 body, correctly signed
    "twosig": "bad-signature",  # a forged Signature header, then the genuine one
    "mergedsig": "bad-signature",  # the same two, merged into one value with ", "
    "wrongalg": "bad-signature",  # a genuine signature under the other provider's algorithm name
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("scenario", sorted(UNTRUSTED))
def test_an_answer_that_proves_nothing_is_unknown_and_its_data_unused(
    hostile: HostileProvider, provider: str, scenario: str
) -> None:
    query, seen = ask(hostile, provider, scenario)

    assert (seen.status, seen.distrust, seen.verified) == (Status.UNKNOWN, UNTRUSTED[scenario], False)
    assert (seen.refund_id, seen.refund_request_id) == (query.refund_id, query.refund_request_id)
    assert (seen.amount_value, seen.refund_time, seen.description) == (None, None, None)
    assert not seen.final


@pytest.mark.parametrize("provider", ["antom", "alipayplus"])
def test_a_genuine_answer_to_another_merchant_is_about_another_refund(hostile: HostileProvider, provider: str) -> None:
    _, seen = ask(hostile, provider, "replaycaller")

    assert (seen.status, seen.distrust, seen.reason) == (
        Status.UNKNOWN,
        "another-refund",
        "answer about another refund",
    )


# Unsigned F answers: only the provider rejecting our credentials or signature may come unsigned (docs/trust.md).
CREDENTIAL_REJECTIONS = {
    "antom": ["ACCESS_DENIED", "CLIENT_INVALID", "INVALID_CLIENT_STATUS", "INVALID_SIGNATURE", "KEY_NOT_FOUND"],
    "alipayplus": [
        "ACCESS_DENIED",
        "EXPIRED_AGENT_TOKEN",
        "INVALID_AGENT_TOKEN",
        "INVALID_CLIENT",
        "INVALID_CLIENT_STATUS",
        "INVALID_SIGNATURE",
    ],
    "alphapay": ["INVALID_SIGNATURE"],
}
OTHER_F_CODES = {
    "antom": ["PARAM_ILLEGAL", "PROCESS_FAIL", "SYSTEM_ERROR", "ORDER_NOT_EXIST"],
    "alipayplus": ["MSG_PARSE_ERROR", "PARAM_ILLEGAL", "PROCESS_FAIL", "REFUND_NOT_EXIST"],
    "alphapay": ["ACCESS_DENIED", "INVALID_MERCHANT", "PARAM_ILLEGAL", "REFUND_NOT_EXIST"],
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unsigned_f_ends_polling_only_when_it_rejects_our_credentials(
    hostile: HostileProvider, provider: str
) -> None:
    rejected = {code: ask(hostile, provider, f"unsignedF.{code}")[1] for code in CREDENTIAL_REJECTIONS[provider]}
    other = {code: ask(hostile, provider, f"unsignedF.{code}")[1] for code in OTHER_F_CODES[provider]}

    assert {code: (seen.status, seen.verified) for code, seen in rejected.items()} == {
        code: (Status.ERROR, False) for code in rejected
    }
    assert {code: (seen.status, seen.distrust) for code, seen in other.items()} == {
        code: (Status.UNKNOWN, "unsigned") for code in other
    }


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("scenario", "dropped"),
    [("numeric", "refundAmount.value"), ("boolean", "refundAmount.value"), ("nonisotime", "refundTime")],
)
def test_a_success_keeps_its_status_but_drops_a_malformed_field_and_says_which(
    hostile: HostileProvider, provider: str, scenario: str, dropped: str
) -> None:
    _, seen = ask(hostile, provider, scenario)

    assert (seen.status, seen.verified, seen.distrust) == (Status.SUCCESS, True, None)
    assert seen.reason is not None and dropped in seen.reason and "dropped" in seen.reason
    if dropped == "refundTime":
        assert (seen.refund_time, seen.amount_value) == (None, "1000")
    else:
        assert (seen.amount_value, seen.amount_currency, seen.refund_time) == (None, None, "2026-01-02T12:01:01+08:00")


# ---- rule 3: bounded I/O ------------------------------------------------------------------------------
def test_we_ask_for_identity_encoding_and_still_read_a_small_gzip_answer(hostile: HostileProvider) -> None:
    _, seen = ask(hostile, "antom", "gzipok")

    assert (seen.status, seen.verified, seen.amount_value) == (Status.SUCCESS, True, "1000")
    assert hostile.requests[-1]["headers"].get("Accept-Encoding") == "identity"


@pytest.mark.parametrize("scenario", ["bomb", "bomb.nolength", "smallbomb", "huge", "huge.nolength"])
def test_bombs_and_huge_bodies_are_refused_in_bounded_memory_and_time(hostile: HostileProvider, scenario: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        _, seen = ask(hostile, "antom", scenario)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < MEMORY_BOUND, f"{peak / 2**20:.1f} MiB traced"
    assert elapsed < sum(TIMEOUT) + SLACK_SECONDS
    assert (seen.status, seen.distrust) == (Status.UNKNOWN, "oversize")
    assert seen.reason is not None and "65536-byte body cap" in seen.reason


@pytest.mark.parametrize(("scenario", "budget"), [("drip", None), ("drip", 1.5), ("headerdrip", 1.5)])
def test_a_drip_fed_answer_ends_at_the_call_deadline(
    hostile: HostileProvider, scenario: str, budget: float | None
) -> None:
    deadline = sum(TIMEOUT) if budget is None else budget
    started = time.monotonic()

    _, seen = ask(hostile, "alphapay", scenario, timeout_seconds=budget)

    elapsed = time.monotonic() - started
    assert DRIP_INTERVAL < deadline - 0.5 <= elapsed < deadline + SLACK_SECONDS
    assert (seen.status, seen.distrust) == (Status.UNKNOWN, "deadline")
    assert seen.reason == f"deadline: answer not complete within the {deadline:g} s call budget"


def test_a_host_resolving_to_an_unsafe_address_is_a_configuration_error_and_is_never_contacted(
    hostile: HostileProvider,
) -> None:
    profile = parse_profile(hostile.profile("antom"), allow_plain_http=True)
    unsafe = dataclasses.replace(profile, base_url=f"http://{UNSPECIFIED}:{hostile.port}")
    before = len(hostile.requests)

    seen = provider_for(unsafe, timeout=TIMEOUT).inquire(RefundQuery(refund_id=refund_id("success")))

    assert seen.status is Status.ERROR and not seen.final
    assert seen.reason is not None and UNSPECIFIED in seen.reason and "unspecified" in seen.reason
    assert len(hostile.requests) == before


def test_the_call_connects_to_the_address_that_was_checked_not_to_a_second_lookup(
    hostile: HostileProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to a checked address once, then elsewhere. The call must use the first."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == REBINDING_NAME:
            lookups.append(host)
            # First lookup: the provider's real address. Any later one: an address where nothing listens.
            host = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    profile = parse_profile(hostile.profile("antom"), allow_plain_http=True)
    renamed = dataclasses.replace(profile, base_url=f"http://{REBINDING_NAME}:{hostile.port}")

    seen = provider_for(renamed, timeout=TIMEOUT).inquire(RefundQuery(refund_id=refund_id("success")))

    assert lookups == [REBINDING_NAME]  # checked once, never looked up again
    assert (seen.status, seen.distrust) == (Status.SUCCESS, None)
    sent = {name.lower(): value for name, value in hostile.requests[-1]["headers"].items()}
    assert sent["host"] == f"{REBINDING_NAME}:{hostile.port}"


# ---- the same through the CLI -------------------------------------------------------------------------
def run_measured(*args: str, exit_code: int = 0) -> tuple[dict[str, Any], float, int]:
    """Run the CLI, which must exit with ``exit_code``; (printed observation, wall seconds, the child's own peak RSS
    in bytes)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=errors)
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        assert child.returncode == exit_code, errors.read().decode()
    return json.loads(out), time.monotonic() - started, usage.ru_maxrss * 1024


CLI_CASES = {
    "replay": ("UNKNOWN", "another-refund"),
    "stale": ("UNKNOWN", "stale-response"),
    "badsigF.ACCESS_DENIED": ("UNKNOWN", "bad-signature"),
    "unsignedF.PARAM_ILLEGAL": ("UNKNOWN", "unsigned"),
    "unsignedF.INVALID_SIGNATURE": ("ERROR", None),
    "dupkeys": ("UNKNOWN", "malformed"),
    "utf16": ("UNKNOWN", "malformed"),
    "twosig": ("UNKNOWN", "bad-signature"),
    "numeric": ("SUCCESS", None),
    "nonisotime": ("SUCCESS", None),
    "bomb": ("UNKNOWN", "oversize"),
    "huge.nolength": ("UNKNOWN", "oversize"),
    "drip": ("UNKNOWN", "deadline"),
    "headerdrip": ("UNKNOWN", "deadline"),
}


@pytest.fixture(scope="module")
def cli_profile(hostile: HostileProvider, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile.write_profile(tmp_path_factory.mktemp("hostile"), "antom")


@pytest.fixture(scope="module")
def cli_baseline(cli_profile: Path) -> tuple[float, int]:
    """Wall time and peak RSS of the CLI answering a plain signed SUCCESS."""
    seen, elapsed, peak = run_measured("inquire", "--profile", str(cli_profile), "--refund-id", refund_id("success"))
    assert (seen["status"], seen["verified"]) == ("SUCCESS", True)
    return elapsed, peak


@pytest.mark.parametrize("scenario", sorted(CLI_CASES))
def test_refund_poller_inquire_against_the_hostile_provider(
    cli_profile: Path, cli_baseline: tuple[float, int], scenario: str
) -> None:
    timeouts = ["--connect-timeout", str(TIMEOUT[0]), "--read-timeout", str(TIMEOUT[1])]

    status, distrust = CLI_CASES[scenario]
    # `inquire` exits 0 only on a trusted answer, 3 when nothing trusted came back (README, CLI table).
    trusted = status == "SUCCESS"
    seen, elapsed, peak = run_measured(
        "inquire",
        "--profile",
        str(cli_profile),
        "--refund-id",
        refund_id(scenario),
        *timeouts,
        exit_code=0 if trusted else EXIT_UNTRUSTED,
    )

    baseline_elapsed, baseline_peak = cli_baseline
    # The call's own latency holds the bound; the wall clock adds process start-up, which a loaded machine stretches.
    assert seen["latencyMs"] / 1000 < sum(TIMEOUT) + SLACK_SECONDS
    assert elapsed - baseline_elapsed < sum(TIMEOUT) + 3 * SLACK_SECONDS
    assert peak - baseline_peak < MEMORY_BOUND, f"{(peak - baseline_peak) / 2**20:.1f} MiB over the baseline"
    assert (seen["status"], seen["distrust"]) == (status, distrust)
    if seen["status"] == "SUCCESS":
        assert seen["reason"] and "dropped" in seen["reason"]


@pytest.fixture()
def tls_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An HTTPS endpoint on 127.0.0.1 whose certificate names only REBINDING_NAME, trusted through the CA bundle."""
    cert_file, key_file = self_signed(tmp_path, REBINDING_NAME)

    class Teapot(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(418)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Teapot)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    real_getaddrinfo = socket.getaddrinfo

    def resolving(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo("127.0.0.1" if host == REBINDING_NAME else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolving)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("host", "verified"), [(REBINDING_NAME, True), ("127.0.0.1", False)])
def test_tls_to_the_pinned_address_still_verifies_the_certificate_against_the_name(
    hostile: HostileProvider, tls_provider: int, host: str, verified: bool
) -> None:
    profile = parse_profile(hostile.profile("antom"), allow_plain_http=True)
    pinned = dataclasses.replace(profile, base_url=f"https://{host}:{tls_provider}")

    seen = provider_for(pinned, timeout=TIMEOUT).inquire(RefundQuery(refund_id=refund_id("success")))

    assert seen.status is Status.UNKNOWN
    assert seen.reason is not None
    # The name in the URL verifies (the endpoint's HTTP 418 is what comes back); the bare address does not.
    assert ("418" in seen.reason) is verified, seen.reason
    assert ("SSLError" in seen.reason) is not verified, seen.reason
