"""``refund-poller notify``: the sandbox of a local stack pushes one notification; every refusal is one line.

The stack's state file is written here as `local up` writes it, pointing at a real sandbox and a real verifying
receiver on 127.0.0.1 (the notification endpoint stand-in), so the command runs end to end without moto.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from refund_poller.cli.main import app
from refund_poller.sandbox import Sandbox
from tests.e2e.conftest import STATE_FILE, one_line_error, run_cli
from tests.integration.notify_receiver import Receiver

NOTIFY = ("notify", "--provider", "antom", "--refund-request-id", "r1", "--status", "SUCCESS")


def _write_state(directory: Path, **extra: Any) -> None:
    """A state file of a running stack (this test process's pid: alive), as `local up` writes it."""
    state = {"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1", "outputs": {}, "pid": os.getpid()}
    (directory / STATE_FILE).parent.mkdir(exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps({**state, "sandbox_url": "http://127.0.0.1:9", **extra}))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(port=0, profiles_dir=tmp_path_factory.mktemp("notify-cli-profiles")) as running:
        yield running


@pytest.fixture
def receiver(sandbox: Sandbox) -> Iterator[Receiver]:
    running = Receiver(sandbox)
    yield running
    sandbox.reset()
    running.close()


def test_notify_pushes_one_verified_notification_to_the_stack_endpoint(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver
) -> None:
    _write_state(tmp_path, sandbox_url=sandbox.base_url, notify_base_url=receiver.base_url)
    request_id = "退款 a/b.c:d <script>"

    done = run_cli(tmp_path, "notify", "--provider", "antom", "--refund-request-id", request_id, "--status", "FAIL")

    assert done.returncode == 0, done.stderr
    assert "HTTP 200 acknowledged" in done.stdout and request_id in done.stdout
    [arrival] = receiver.arrivals
    assert arrival.verified and arrival.path == "/notify/antom/default"
    assert (arrival.payload["refundRequestId"], arrival.payload["refundStatus"]) == (request_id, "FAIL")


def test_notify_exits_1_when_the_receiver_does_not_acknowledge(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver
) -> None:
    _write_state(tmp_path, sandbox_url=sandbox.base_url, notify_base_url=receiver.base_url)
    receiver.refuse = 1_000

    done = run_cli(
        tmp_path, "notify", "--provider", "alphapay", "--merchant", "shop_2", "--refund-id", "R9", "--status", "SUCCESS"
    )

    assert done.returncode == 1
    lines = one_line_error(done.stderr)
    assert "did not acknowledge the notification (HTTP 500 rejected)" in lines[0]
    assert "alphapay never retries" in lines[1]
    assert [arrival.path for arrival in receiver.arrivals] == ["/notify/alphapay/shop_2"]


def test_without_a_running_stack_notify_says_to_start_one(tmp_path: Path) -> None:
    done = run_cli(tmp_path, *NOTIFY)

    assert done.returncode == 1
    lines = one_line_error(done.stderr)
    assert "no local stack is running here" in lines[0] and "refund-poller local up" in lines[1]


def test_a_stack_without_a_notification_endpoint_is_named(tmp_path: Path) -> None:
    _write_state(tmp_path)

    done = run_cli(tmp_path, *NOTIFY)

    assert done.returncode == 1
    lines = one_line_error(done.stderr)
    assert "serves no notification endpoint (no notify_base_url in its state file)" in lines[0]
    assert "refund-poller local up" in lines[1]


def test_an_unreachable_sandbox_is_one_error_line(tmp_path: Path) -> None:
    _write_state(tmp_path, notify_base_url="http://127.0.0.1:9")

    done = run_cli(tmp_path, *NOTIFY)

    assert done.returncode == 1
    lines = one_line_error(done.stderr)
    assert "cannot reach the provider sandbox at http://127.0.0.1:9" in lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--stack-name", "refund-poller"), "notify works on the local stack only"),
        (("--provider", "alphapay", "--refund-id", "R1", "--status", "FAIL"), "--status: alphapay pushes SUCCESS only"),
        (("--status", "DONE"), "--status: must be SUCCESS or FAIL"),
        (("--provider", "paypal"), "--provider: must be one of antom, alipayplus, alphapay"),
        (("--merchant", "acme corp"), "--merchant: must match [A-Za-z0-9_-]{1,64}"),
        (("--refund-request-id", "x" * 65), "refundRequestId: must be at most 64 characters"),
    ],
)
def test_bad_arguments_are_refused_naming_the_option(args: tuple[str, ...], named: str) -> None:
    """In process (arguments are checked before anything is looked up): one interpreter start-up saved per case."""
    overridden = dict(zip(NOTIFY[1::2], NOTIFY[2::2], strict=True)) | dict(zip(args[::2], args[1::2], strict=True))

    done = CliRunner().invoke(app, ["notify", *(item for pair in overridden.items() for item in pair)])

    assert done.exit_code == 2
    assert named in one_line_error(done.stderr)[0]


def test_ids_are_required() -> None:
    done = CliRunner().invoke(app, ["notify", "--provider", "antom", "--status", "SUCCESS"])

    assert done.exit_code == 2
    lines = one_line_error(done.stderr)
    assert "refundId or refundRequestId: at least one is required" in lines[0]
