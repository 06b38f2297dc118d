"""The official Antom SDK (global-open-sdk-python 1.7.1), unmodified but for its hard-wired HTTPS port, accepts the
sandbox's answers: a merchant's existing SDK-based code can be pointed at the sandbox.

The SDK lives in its own venv (bench/.venv-sdk, the Makefile's recipe: its declared dependencies break Python 3),
so each inquiry runs in that venv's interpreter through bench/inquiry_worker.py ``sdk-once``, the same client
set-up the benchmark measures. The fixture builds the venv from PyPI when it is missing (``make test`` builds it
first anyway).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from refund_poller.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / "bench" / ".venv-sdk" / "bin" / "python"
WORKER = ROOT / "bench" / "inquiry_worker.py"


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    built = subprocess.run(  # our own Makefile target
        ["make", "--no-print-directory", "bench/.venv-sdk/.installed"],  # make from PATH, as `make test` does
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return SDK_PYTHON


def sdk_inquire(sdk_python: Path, profile: Path, refund_request_id: str) -> dict[str, Any]:
    """What the SDK's client made of one inquiry: the parsed answer, or ``{"error": …}`` when it refused it."""
    done = subprocess.run(  # the SDK venv's interpreter and our worker
        [str(sdk_python), str(WORKER), "sdk-once", str(profile), refund_request_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def merchant_id(script: str) -> str:
    """A refund request id as a merchant may write it: CJK, a space, '/', '.', ':' (64 characters at most)."""
    return f"{script}--退款 {uuid.uuid4().hex[:10]}/order.7:a"


@pytest.mark.parametrize(
    ("profile_name", "path"),
    [
        ("antom", "/ams/sandbox/api/v1/payments/inquiryRefund"),  # SANDBOX_ client id: the SDK rewrites the path
        ("antom-live", "/ams/api/v1/payments/inquiryRefund"),
    ],
)
def test_the_official_sdk_accepts_the_sandboxs_signed_success(
    sdk_python: Path, sandbox: Sandbox, profile_name: str, path: str
) -> None:
    refund_request_id = merchant_id("processing1-success")

    first = sdk_inquire(sdk_python, sandbox.profiles[profile_name], refund_request_id)
    second = sdk_inquire(sdk_python, sandbox.profiles[profile_name], refund_request_id)

    assert (first.get("error"), first["resultStatus"], first["refundStatus"]) == (None, "S", "PROCESSING")
    assert (second.get("error"), second["resultStatus"], second["resultCode"]) == (None, "S", "SUCCESS")
    assert second["refundStatus"] == "SUCCESS"
    assert second["refundRequestId"] == refund_request_id
    assert second["refundAmount"]["currency"] == "USD" and second["refundAmount"]["value"].isdigit()
    record = sandbox.refund("antom", refund_request_id) or {}
    assert (record["polls"], record["lastPath"], record["finalStatus"]) == (2, path, "SUCCESS")


@pytest.mark.parametrize(
    ("script", "refusal"),
    [("badsig", "verify failed"), ("nosig", "signature not exist")],
)
def test_the_official_sdk_still_refuses_a_forged_or_unsigned_success_from_the_sandbox(
    sdk_python: Path, sandbox: Sandbox, script: str, refusal: str
) -> None:
    # The SDK really verifies the sandbox's signatures: a forgery is not accepted just because the names match.
    answer = sdk_inquire(sdk_python, sandbox.profiles["antom"], merchant_id(script))

    assert refusal in answer["error"]
