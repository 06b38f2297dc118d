"""``demo --fast`` ends with every scripted refund in its expected outcome."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import run_cli

EXPECTED_COUNTS = {"SUCCESS": 7, "FAIL": 2, "UNRESOLVED": 1, "REJECTED": 1}


def test_demo_fast_starts_its_own_stack_and_ends_with_the_expected_outcomes(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "demo", "--fast", "--json", timeout=90)

    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert summary["counts"] == EXPECTED_COUNTS
    assert summary["asExpected"] == summary["expectedCount"] == 11
    [notified] = [r for r in summary["refunds"] if r["scenario"] == "final by notification"]
    assert (notified["actual"], notified["polls"]) == ("SUCCESS", 1)
    assert notified["note"].startswith("final by notification after 1 poll(s)")
    assert {r["provider"] for r in summary["refunds"]} == {"antom", "alipayplus", "alphapay"}
    assert all(r["trace"].startswith("refund-poller ") for r in summary["refunds"])
    assert "starting a local stack" in done.stderr  # progress lines go to stderr with --json
