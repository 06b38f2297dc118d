"""``status`` and ``trace`` read the way a support person needs: status and meaning first, human times, the last
answer explained; every polling window of a refund in order with its named outcome, a strip, and ``--follow``.

Everything runs through the real CLI against ``local up --fast`` (12 s windows, polls every second); the
80-column cases run in a pseudo-terminal of 80x24.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import CLI, ENV, LocalStack, eventually
from tests.e2e.terminal import run_cli_in_pty, widest_line

# An epoch-seconds number as the raw item holds them (windowEndsAt, expiresAt).
EPOCH = re.compile(r"\b1[0-9]{9}(\.[0-9]+)?\b")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _send(stack: LocalStack, refund: str, *more: str) -> None:
    done = stack.cli("send", "--provider", "antom", "--refund-request-id", refund, *more)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def closed(local_stack: LocalStack) -> dict[str, str]:
    """Refunds whose windows are closed: one per named outcome, and one polled in two windows."""
    run = local_stack.state["pid"]
    refunds = {
        "success": f"processing1-success--st-{run}",
        "fail": f"processing1-fail--st-{run}",
        "not found": f"processing1-notfound--st-{run}",
        "unresolved": f"processing--st-{run}",
        "twice": f"processing--twice-st-{run}",
    }
    # Windows long enough that the starter's first inquiry (slow on a loaded machine) leaves room for polling.
    for refund in refunds.values():
        _send(local_stack, refund, "--window", "12")
    for refund in refunds.values():
        local_stack.closed_item(f"antom#default#rr:{refund}", timeout=60)
    # The UNRESOLVED refund sent again: a second window (g2) with its own execution.
    _send(local_stack, refunds["twice"], "--window", "12")
    eventually(
        lambda: local_stack.closed_item(f"antom#default#rr:{refunds['twice']}", timeout=60).get("generation") == 2,
        timeout=60,
    )
    return refunds


def test_status_shows_status_and_meaning_first_human_times_and_the_last_answer_explained(
    local_stack: LocalStack, closed: dict[str, str]
) -> None:
    code, screen = run_cli_in_pty(
        local_stack.cwd, "status", "--provider", "antom", "--refund-request-id", closed["unresolved"]
    )

    assert code == 0, screen
    lines = [line for line in screen.splitlines() if line.strip()]
    assert lines[1].startswith("status") and "UNRESOLVED" in lines[1]
    assert "window closed without a final status" in " ".join(lines[1:3])
    assert re.search(r"\d{2}:\d{2}:\d{2}\.\d{3}Z \(\d+ (s|min) ago\)", screen)
    assert not EPOCH.search(screen), "no raw epoch seconds"
    # The call's result code is named as such, never as a bare "result SUCCESS" beside a non-SUCCESS status.
    flat = re.sub(r"\s+", " ", screen)
    assert "inquiry call's result: SUCCESS" in flat
    assert "result SUCCESS" not in flat.replace("call's result: SUCCESS", "")
    assert widest_line(screen) <= 80


def test_status_json_keeps_the_whole_item_with_iso_times(local_stack: LocalStack, closed: dict[str, str]) -> None:
    item: dict[str, Any] = local_stack.cli_json("status", "--provider", "antom", "--refund-request-id", closed["fail"])

    assert (item["status"], item["final"]) == ("FAIL", True)
    for name in ("windowEndsAt", "expiresAt", "claimedAt", "firstPollAt", "lastPollAt", "resolvedAt"):
        assert ISO.match(str(item[name])), (name, item[name])
    assert {"generation", "windowId", "pollingState", "lastObservation", "executionArn"} <= set(item)


@pytest.mark.parametrize(
    ("case", "outcome", "terminal"),
    [
        ("success", "SUCCESS", "Refund succeeded"),
        ("fail", "FAIL", "Refund failed"),
        ("not found", "NOT_FOUND", "Not found"),
        ("unresolved", "UNRESOLVED", "Unresolved at window close"),
    ],
)
def test_trace_names_each_outcome_and_the_terminal_state_it_ended_in(
    local_stack: LocalStack, closed: dict[str, str], case: str, outcome: str, terminal: str
) -> None:
    trace = local_stack.cli_json("trace", "--provider", "antom", "--refund-request-id", closed[case])

    [window] = trace["windows"]
    assert (window["outcome"], window["terminalState"]) == (outcome, terminal)
    assert window["nextPollAt"] is None and ISO.match(window["closesAt"])
    assert trace["steps"][-1]["detail"] == terminal


def test_trace_shows_every_window_of_a_refund_in_order_each_with_a_strip(
    local_stack: LocalStack, closed: dict[str, str]
) -> None:
    args = ("trace", "--provider", "antom", "--refund-request-id", closed["twice"])
    trace = local_stack.cli_json(*args)
    code, screen = run_cli_in_pty(local_stack.cwd, *args)

    assert [(w["generation"], w["outcome"]) for w in trace["windows"]] == [(1, "UNRESOLVED"), (2, "UNRESOLVED")]
    assert [w["execution"]["executionArn"].split("-g")[-1][:1] for w in trace["windows"]] == ["1", "2"]
    assert trace["execution"]["executionArn"] == trace["windows"][1]["execution"]["executionArn"]
    assert code == 0, screen
    assert screen.index("window 1/2  g1") < screen.index("window 2/2  g2")
    strips = [line.strip() for line in screen.splitlines() if re.fullmatch(r"\s+P[-P:.]*\|[ :]*", line)]
    assert len(strips) == 2, screen  # one strip per window: a P per poll, waits, the close
    assert widest_line(screen) <= 80


def test_trace_follow_prints_polls_as_they_are_made_and_ends_when_the_window_closes(
    local_stack: LocalStack, unique: str
) -> None:
    refund = f"processing25s-success--follow-{unique}"  # PROCESSING for 25 s: --follow starts while it runs
    _send(local_stack, refund, "--window", "60")

    code, screen = run_cli_in_pty(
        local_stack.cwd, "trace", "--provider", "antom", "--refund-request-id", refund, "--follow", timeout=120
    )

    assert code == 0, screen
    assert "RUNNING" in screen and "next poll ≈" in screen and "window closes at" in screen
    assert re.search(r"^\s+\d\d:\d\d:\d\d\.\d{3}\s+\d+\s+SUCCESS\s+done", screen, re.MULTILINE), screen
    assert screen.rstrip().splitlines()[-1].startswith("window closed: SUCCESS")
    assert widest_line(screen) <= 80


def test_trace_follow_and_json_are_refused_together(local_stack: LocalStack) -> None:
    done = subprocess.run(
        [*CLI, "trace", "--provider", "antom", "--refund-request-id", "x", "--follow", "--json"],
        cwd=local_stack.cwd,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2 and done.stderr.startswith("error: --follow")
