"""``demo --fast`` ends with every scripted refund in its expected outcome."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.e2e.conftest import CLI, ENV, run_cli
from tests.e2e.terminal import run_cli_in_pty, widest_line

EXPECTED_COUNTS = {"SUCCESS": 8, "FAIL": 2, "UNRESOLVED": 1, "REJECTED": 1}


def test_demo_fast_starts_its_own_stack_and_ends_with_the_expected_outcomes(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "demo", "--fast", "--json", timeout=240)  # a loaded machine starts a stack slowly

    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert summary["counts"] == EXPECTED_COUNTS
    assert summary["asExpected"] == summary["expectedCount"] == 12
    [notified] = [r for r in summary["refunds"] if r["scenario"] == "final by notification"]
    assert (notified["actual"], notified["polls"]) == ("SUCCESS", 1)
    assert notified["note"].startswith("final by notification after 1 poll(s)")
    # One inquiry in its window, then the long tail (time-compressed): processing, processing, SUCCESS.
    [tail] = [r for r in summary["refunds"] if r["scenario"] == "final in the long tail"]
    assert (tail["actual"], tail["polls"], tail["tailAttempts"]) == ("SUCCESS", 4, 3)
    assert tail["note"] == "final at tail attempt 3 of the long tail"
    assert all(r["tailAttempts"] == 0 for r in summary["refunds"] if r is not tail)
    assert {r["provider"] for r in summary["refunds"]} == {"antom", "alipayplus", "alphapay"}
    assert all(r["trace"].startswith("refund-poller ") for r in summary["refunds"])
    assert "starting a local stack" in done.stderr  # progress lines go to stderr with --json


def _frames(screen: str) -> list[list[str]]:
    """Each redraw of the live table: its rows (the lines after the header rule, up to a blank line)."""
    frames = []
    for chunk in screen.split("refund-poller demo: ")[1:]:
        lines = chunk.splitlines()
        rule = next((n for n, line in enumerate(lines) if line.strip().startswith("─")), None)
        if rule is None:
            continue
        rows = []
        for line in lines[rule + 1 :]:
            if not line.strip():
                break
            rows.append(line)
        frames.append(rows)
    return frames


def test_demo_fits_80x24_with_refunds_in_progress_first_and_ends_with_a_trace(tmp_path: Path) -> None:
    _, screen = run_cli_in_pty(tmp_path, "demo", "--fast", timeout=240)

    assert widest_line(screen) <= 80
    frames = _frames(screen)
    assert frames and all(len(rows) == 12 for rows in frames)  # every refund of the plan, none cut off
    for rows in frames:  # a row still expecting its outcome never comes after a finished one
        finished = [("expect " not in row) for row in rows]
        assert finished == sorted(finished), rows
    assert all(row.split()[0] in ("antom", "alipay+", "alphapay") for rows in frames for row in rows)
    assert "\n$ refund-poller trace --provider " in screen and "\nwindow 1/1  g1 " in screen
    assert "refund-poller demo --keep" in screen  # the hint that keeps a stack for the commands shown


def test_demo_keep_keeps_its_stack_for_the_commands_it_suggests(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [*CLI, "demo", "--fast", "--keep"], cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert demo.stdout is not None
        printed = []
        for line in demo.stdout:
            printed.append(line)
            if "keeps running here" in line:
                break
        commands = [line.strip() for line in printed if line.strip().startswith("refund-poller trace ")]
        assert commands, "".join(printed)
        traced = run_cli(tmp_path, *commands[0].split()[1:])
        status = run_cli(tmp_path, "local", "status")
        stopped = run_cli(tmp_path, "local", "down")
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)

    assert traced.returncode == 0, traced.stderr
    assert "window 1/1" in traced.stdout
    assert status.returncode == 0 and "local stack running" in status.stdout
    assert stopped.returncode == 0
    assert not (tmp_path / ".refund-poller" / "local-stack.json").exists()
