"""Deadlines that hold: a StartInquiry batch returns before the function's timeout whatever one of its records
waits for. A provider that never finishes its answer costs that record one unanswered poll; an AWS call that
hangs leaves that record for SQS to redeliver. The other records of the batch are handled either way."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from refund_poller.local.fault_proxy import FaultProxy
from tests.integration.stack_support import store
from tests.integration.test_handler_logging import add_merchant, refund_ids, sqs_event

DRIP_MERCHANT = "drip-shop"
TIMEOUT_SECONDS = 10  # the functions' timeout in these tests: short, so that a hang shows quickly


class DripServer:
    """A provider that sends its status line and headers at once, then one byte of body per interval and never the
    rest: every read returns well within a read timeout, the answer as a whole never ends."""

    def __init__(self, interval: float = 0.5) -> None:
        self.requests = 0
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    while not server._stop.wait(interval):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                except OSError:  # the client gave up: what a deadline is for
                    return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="drip", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


class StallingProxy(FaultProxy):
    """Forwards AWS calls to the local stack, holding the first call of one operation until released: an AWS
    call that hangs (the SDK's own read timeout is 60 s)."""

    def __init__(self, upstream: str, operation: str) -> None:
        super().__init__(upstream)
        self.operation = operation
        self.release = threading.Event()
        self.stalled = 0
        self._first = threading.Lock()

    def should_throttle(self, target: str) -> bool:
        if target == self.operation and self._first.acquire(blocking=False):
            self.stalled += 1
            self.release.wait(60)
        return False


@pytest.fixture(scope="module")
def drip() -> Iterator[DripServer]:
    server = DripServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, drip: DripServer) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("handler-budgets"), parameter_overrides=FAST_POLICY) as running:
        add_merchant(running, DRIP_MERCHANT, base_url=drip.url)
        lambda_client = running.client("lambda")
        name = running.cloud.function_name("StartInquiryFunction")
        lambda_client.update_function_configuration(FunctionName=name, Timeout=TIMEOUT_SECONDS)
        yield running


@contextmanager
def function_environment(stack: DevStack, function: str, **variables: str) -> Iterator[None]:
    """The function's environment with ``variables`` set (fresh workers, as after a configuration change in
    Lambda), restored afterwards."""
    lambda_client = stack.client("lambda")
    name = stack.cloud.function_name(function)
    saved = lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": saved | variables})
    try:
        yield
    finally:
        lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": saved})


def invoke_timed(stack: DevStack, event: dict[str, Any]) -> tuple[Any, float]:
    """The invocation's result and its duration as Lambda reports it (init excluded, as from the timeout)."""
    result = stack.cloud.invoke("StartInquiryFunction", event)
    duration = re.search(r"^REPORT .*\tDuration: ([0-9.]+) ms", result.logs, re.MULTILINE)
    assert duration is not None, result.logs[-2000:]
    return result, float(duration[1]) / 1000


def failed_ids(payload: Any) -> list[str]:
    return [failure["itemIdentifier"] for failure in payload["batchItemFailures"]]


def test_a_provider_that_never_finishes_costs_one_unanswered_poll_not_the_batch(
    stack: DevStack, drip: DripServer
) -> None:
    others = refund_ids("slow200ms-success", 9, seed=21)
    (hanging,) = refund_ids("success", 1, seed=22)
    event = sqs_event(
        *({"provider": "antom", "refundRequestId": refund} for refund in others),
        {"provider": "antom", "merchant": DRIP_MERCHANT, "refundRequestId": hanging, "correlationId": "drip 1"},
    )

    result, seconds = invoke_timed(stack, event)

    assert result.function_error is None, result.payload
    assert seconds < TIMEOUT_SECONDS
    assert drip.requests >= 1
    # The hanging record is handled, not retried: its poll is recorded as unanswered and polling goes on.
    assert failed_ids(result.payload) == []
    results = store(stack)
    item = results.get(f"antom#{DRIP_MERCHANT}#rr:{hanging}")
    assert item is not None
    assert (item["polls"], item["lastObservation"]["status"], item["pollingState"]) == (1, "UNKNOWN", "POLLING")
    for refund in others:
        assert (results.get(f"antom#default#rr:{refund}") or {}).get("status") == "SUCCESS", refund


def test_provider_total_timeout_from_the_environment_caps_every_call(stack: DevStack) -> None:
    (hanging,) = refund_ids("success", 1, seed=24)
    event = sqs_event({"provider": "antom", "merchant": DRIP_MERCHANT, "refundRequestId": hanging})

    with function_environment(stack, "StartInquiryFunction", PROVIDER_TOTAL_TIMEOUT="2"):
        result, seconds = invoke_timed(stack, event)

    assert result.function_error is None and failed_ids(result.payload) == [], result.payload
    assert seconds < 4  # 2 s for the provider, the rest for the claim and the write
    item = store(stack).get(f"antom#{DRIP_MERCHANT}#rr:{hanging}")
    assert item is not None and (item["polls"], item["lastObservation"]["status"]) == (1, "UNKNOWN")


def test_a_malformed_provider_bound_stops_the_function_naming_the_variable(stack: DevStack) -> None:
    (refund,) = refund_ids("success", 1, seed=25)
    with function_environment(stack, "StartInquiryFunction", PROVIDER_MAX_BODY_BYTES="64KiB"):
        result = stack.cloud.invoke("StartInquiryFunction", sqs_event({"provider": "antom", "refundId": refund}))

    assert result.function_error == "Unhandled"
    assert (
        result.payload["errorMessage"] == "PROVIDER_MAX_BODY_BYTES: must be a whole number of at least 1, got '64KiB'"
    )
    assert store(stack).get(f"antom#default#rr:{refund}") is None  # nothing was done with a misconfigured adapter


def test_a_record_whose_aws_call_hangs_is_left_for_redelivery_and_the_batch_returns_in_time(stack: DevStack) -> None:
    # StartExecution: only StartInquiry calls it (the polling loops of earlier tests go on calling DynamoDB).
    proxy = StallingProxy(stack.cloud.endpoint_url, "AWSStepFunctions.StartExecution")
    proxy.start()
    stack.cloud.route_functions_through(proxy.url)
    refunds = refund_ids("processing1-success", 10, seed=23)
    event = sqs_event(*({"provider": "alipayplus", "refundRequestId": refund} for refund in refunds))
    try:
        result, seconds = invoke_timed(stack, event)
        results = store(stack)
        items = {refund: results.get(f"alipayplus#default#rr:{refund}") or {} for refund in refunds}
    finally:
        stack.cloud.route_functions_through(stack.cloud.endpoint_url)  # new workers: the stuck thread goes too
        proxy.release.set()
        proxy.stop()

    assert result.function_error is None, result.payload
    assert seconds < TIMEOUT_SECONDS
    assert proxy.stalled == 1
    # The record whose StartExecution hangs is reported for SQS to redeliver (its claim resumes then); the nine
    # others started their polling loops.
    (stuck,) = failed_ids(result.payload)
    stuck_refund = next(refunds[n] for n, record in enumerate(event["Records"]) if record["messageId"] == stuck)
    assert items.pop(stuck_refund).get("executionArn") is None
    assert all(item.get("executionArn") for item in items.values()), items
