"""``local down`` / ``local status``, and the state file found from subfolders as git finds ``.git``: no command
starts a second stack where one runs."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.e2e.conftest import CLI, ENV, EVENTS, STATE_FILE, LocalStack, eventually, run_cli


def _subfolder(stack: LocalStack, name: str) -> Path:
    folder = stack.cwd / "src" / f"新 folder {name}" / "deeper"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_commands_in_a_subfolder_find_the_running_stack(local_stack: LocalStack, unique: str) -> None:
    folder = _subfolder(local_stack, unique)

    status = run_cli(folder, "local", "status")
    as_json = json.loads(run_cli(folder, "local", "status", "--json").stdout)
    dlq = run_cli(folder, "dlq", "--json")

    assert status.returncode == 0, status.stderr
    assert f"pid {local_stack.state['pid']}" in status.stdout and "answering" in status.stdout
    assert "refund-poller local down" in status.stdout
    assert as_json["running"] and as_json["answering"]
    assert as_json["stateFile"] == str((local_stack.cwd / STATE_FILE).resolve())
    assert as_json["state"]["endpoint_url"] == local_stack.state["endpoint_url"]
    assert dlq.returncode == 0, dlq.stderr


def test_invoke_in_a_subfolder_uses_the_running_stack_instead_of_starting_another(
    local_stack: LocalStack, unique: str
) -> None:
    done = run_cli(
        _subfolder(local_stack, unique), "invoke", "InquireFunction", "-e", str(EVENTS / "inquire_success.json")
    )

    assert done.returncode == 0, done.stderr
    assert "throwaway" not in done.stderr and "starting" not in done.stderr
    assert json.loads(done.stdout)["decision"]["status"] == "SUCCESS"


def test_local_up_in_a_subfolder_refuses_a_second_stack_and_says_how_to_stop_the_first(
    local_stack: LocalStack, unique: str
) -> None:
    done = run_cli(_subfolder(local_stack, unique), "local", "up", "--fast", timeout=30)

    assert done.returncode == 2
    error, hint = done.stderr.strip().splitlines()
    assert error.startswith(f"error: a local stack is already running (pid {local_stack.state['pid']}")
    assert str((local_stack.cwd / STATE_FILE).resolve()) in error
    assert "refund-poller local down" in hint


def test_local_down_from_a_subfolder_stops_the_stack_and_status_then_says_none_runs(tmp_path: Path) -> None:
    process = subprocess.Popen([*CLI, "local", "up", "--fast"], cwd=tmp_path, stdout=subprocess.DEVNULL, env=ENV)
    state_file = tmp_path / STATE_FILE
    try:
        eventually(lambda: state_file.exists() or process.poll() is not None, timeout=60)
        folder = tmp_path / "a b" / "c"
        folder.mkdir(parents=True)

        down = run_cli(folder, "local", "down")

        assert down.returncode == 0, down.stderr
        assert down.stdout.startswith(f"local stack stopped (pid {process.pid}")
        assert process.wait(timeout=5) == 0 and not state_file.exists()
        after = run_cli(folder, "local", "status")
        assert after.returncode == 1 and after.stdout.startswith("no local stack is running")
        again = run_cli(folder, "local", "down")
        assert again.returncode == 1 and again.stderr.startswith("error: no local stack is running")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_local_down_removes_a_state_file_left_by_a_stack_that_died(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    state = {"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1", "outputs": {}, "sandbox_url": ""}
    (tmp_path / STATE_FILE).parent.mkdir()
    (tmp_path / STATE_FILE).write_text(json.dumps(state | {"pid": finished.pid}))

    status = run_cli(tmp_path, "local", "status")
    down = run_cli(tmp_path, "local", "down")

    assert status.returncode == 1 and "has stopped" in status.stdout
    assert down.returncode == 0 and "had already stopped" in down.stdout
    assert not (tmp_path / STATE_FILE).exists()
