"""The installed ``refund-poller`` command, run as a subprocess: ``inquire`` against the sandbox, and ``sandbox``."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
import requests

from refund_core.domain import parse_profile
from refund_core.providers import RefundQuery, provider_for
from refund_poller.sandbox import Sandbox

NewId = Callable[[str], str]
_SCRIPT = Path(sys.executable).parent / "refund-poller"
# The console script when installed (make install does it); the module otherwise.
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "refund_poller.cli.main"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(
    ("script", "status", "final"),
    [
        ("success", "SUCCESS", True),
        ("fail", "FAIL", True),
        ("processing", "PROCESSING", False),
        ("notfound", "NOT_FOUND", False),
        ("unknown", "UNKNOWN", False),
    ],
)
def test_inquire_prints_one_observation_and_exits_0_whatever_the_status(
    sandbox: Sandbox, new_refund_id: NewId, script: str, status: str, final: bool
) -> None:
    refund_request_id = new_refund_id(script)

    done = run_cli("inquire", "--profile", str(sandbox.profiles["antom"]), "--refund-request-id", refund_request_id)

    assert done.returncode == 0, done.stderr
    observation = json.loads(done.stdout)
    assert (observation["status"], observation["final"], observation["verified"]) == (status, final, True)
    assert observation["provider"] == "antom" and observation["refundRequestId"] == refund_request_id
    assert {"refundId", "resultCode", "resultStatus", "resultMessage", "reason"} <= observation.keys()


def test_inquire_passes_the_timeouts_to_the_adapter(sandbox: Sandbox, new_refund_id: NewId) -> None:
    profile = str(sandbox.profiles["alphapay"])

    done = run_cli("inquire", "--profile", profile, "--refund-id", new_refund_id("slow500ms"), "--read-timeout", "0.1")

    assert done.returncode == 3  # no answer in time: no trusted answer
    assert json.loads(done.stdout)["reason"] == "transport: no answer within 0.1 s"


def _error_lines(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert len(lines) in (1, 2) and lines[0].startswith("error: ")
    assert len(lines) == 1 or lines[1].startswith("hint: ")
    return lines


def test_a_profile_with_an_unusable_key_is_refused_in_one_line_naming_the_field_without_the_key(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    profile = json.loads(sandbox.profiles["antom"].read_text())
    secret_looking = "QUJD" * 100  # valid Base64, not a key: the message must name the field, not echo it
    profile["privateKey"] = secret_looking
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(profile))

    done = run_cli("inquire", "--profile", str(path), "--refund-id", "r1")

    assert done.returncode == 2
    assert "privateKey" in _error_lines(done.stderr)[0]
    assert secret_looking[:16] not in done.stderr + done.stdout
    assert profile["providerPublicKey"][:16] not in done.stderr + done.stdout


def test_a_profile_missing_a_field_names_that_field(tmp_path: Path) -> None:
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"provider": "alphapay", "merchantCode": "M1"}))

    done = run_cli("inquire", "--profile", str(path), "--refund-id", "r1")

    assert done.returncode == 2
    assert "'privateKey': is required" in _error_lines(done.stderr)[0]


def test_inquire_without_any_refund_id_is_a_one_line_error(sandbox: Sandbox) -> None:
    done = run_cli("inquire", "--profile", str(sandbox.profiles["alipayplus"]))

    assert done.returncode == 2
    assert "refundId or refundRequestId" in _error_lines(done.stderr)[0]


def test_an_unknown_option_is_a_one_line_error_with_a_help_hint() -> None:
    done = run_cli("inquire", "--refund", "r1")

    assert done.returncode == 2
    assert _error_lines(done.stderr)[1] == "hint: run 'refund-poller inquire --help' for the options"


def _lines_of(stream: IO[str]) -> queue.Queue[str]:
    """Read a child's output on a thread, so a test can wait for a line with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], text: str, timeout: float = 15) -> str:
    while True:
        line = lines.get(timeout=timeout)  # queue.Empty fails the test instead of hanging it
        if text in line:
            return line


def test_the_sandbox_command_prints_its_url_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [*CLI, "sandbox", "--profiles-dir", str(tmp_path), "--quiet"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env) as child:
        try:
            assert child.stdout is not None
            lines = _lines_of(child.stdout)
            base_url = _wait_for(lines, "listening on ").split("listening on ", 1)[1].strip()

            health = requests.get(f"{base_url}/_sandbox/health", timeout=5).json()
            profile = parse_profile((tmp_path / "alphapay.json").read_text(), allow_plain_http=True)
            seen = provider_for(profile, timeout=(1.0, 2.0)).inquire(RefundQuery(refund_id="processing1-fail--cli"))
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=10)
            stopped = _wait_for(lines, "sandbox stopped", timeout=5)
        finally:
            child.kill()  # no-op once it has exited; keeps a failing test from leaving it behind

    assert health["status"] == "ok" and health["baseUrl"] == base_url
    assert (seen.status.value, seen.verified) == ("PROCESSING", True)
    assert (code, stopped.strip()) == (0, "sandbox stopped")
