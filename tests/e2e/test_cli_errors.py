"""Every refusal is one ``error:`` line (maybe a ``hint:``), never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from refund_poller.cli.main import app
from tests.e2e.conftest import STATE_FILE, run_cli
from tests.e2e.conftest import one_line_error as _one_line_error


def test_a_bad_flag_is_one_error_line_with_a_help_hint(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "send", "--bogus")

    assert done.returncode == 2
    lines = _one_line_error(done.stderr)
    assert lines[1] == "hint: run 'refund-poller send --help' for the options"


def test_without_a_running_stack_the_error_says_to_start_one(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "status", "--provider", "antom", "--refund-request-id", "r1")

    assert done.returncode == 1
    lines = _one_line_error(done.stderr)
    assert "no local stack is running here" in lines[0]
    assert "refund-poller local up" in lines[1]


def test_a_stopped_stack_left_in_the_state_file_is_reported_as_stopped(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])  # a pid that has surely exited
    finished.wait()
    state: dict[str, object] = {
        "endpoint_url": "http://127.0.0.1:9",
        "region": "us-east-1",
        "outputs": {},
        "sandbox_url": "",
    }
    state["pid"] = finished.pid
    (tmp_path / STATE_FILE).parent.mkdir()
    (tmp_path / STATE_FILE).write_text(json.dumps(state))

    done = run_cli(tmp_path, "dlq")

    assert done.returncode == 1
    assert "has stopped" in _one_line_error(done.stderr)[0]


def test_an_unreachable_endpoint_is_one_error_line(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "dlq", "--endpoint-url", "http://127.0.0.1:9")

    assert done.returncode == 1
    assert "cannot reach the stack" in _one_line_error(done.stderr)[0]


def test_every_command_has_help_with_examples(tmp_path: Path) -> None:
    commands = [["local", "up"], ["demo"], ["send"], ["status"], ["trace"], ["dlq"], ["dlq", "redrive"], ["invoke"]]

    for command in commands:
        done = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})  # in process: help is static
        assert done.exit_code == 0, (command, done.stderr)
        assert "Examples" in done.stdout and "refund-poller " in done.stdout, command
