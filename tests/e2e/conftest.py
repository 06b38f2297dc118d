"""End-to-end fixtures: the installed ``refund-poller`` command, and ``refund-poller local up --fast`` running in a
subprocess in its own directory (the other commands find it there through its state file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from refund_core.store import DynamoDbRefundStore
from refund_poller.cli.dlq_messages import DlqMessage, peek
from refund_poller.cli.local_state import LocalStackState
from refund_poller.cli.target import Target, local_target

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
_SCRIPT = Path(sys.executable).parent / "refund-poller"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "refund_poller.cli.main"]
STATE_FILE = Path(".refund-poller") / "local-stack.json"
UP_OUTPUT = "local-up.out"  # what `local up` printed, beside its state file
PIPE = subprocess.PIPE
CompletedCli = subprocess.CompletedProcess[str]


# Wide enough that tables never wrap an id: tests look for whole ids in them.
ENV = {**os.environ, "COLUMNS": "250"}


def interruptible() -> None:
    """Popen's preexec_fn for a CLI a test stops with Ctrl-C (SIGINT): as from a terminal, whatever this test run
    inherited (a shell running it in the background ignores SIGINT, and ignored signals pass on to children)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=ENV)


def one_line_error(stderr: str) -> list[str]:
    """The lines of a refusal, checked: one ``error:`` line, maybe one ``hint:`` line, never a traceback."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: "))
    return lines


def run_cli_concurrently(cwd: Path, commands: list[list[str]], timeout: float = 90) -> list[CompletedCli]:
    """Run several CLI commands at once (each pays the interpreter's start-up); results in order."""
    processes = [
        subprocess.Popen([*CLI, *args], cwd=cwd, stdout=PIPE, stderr=PIPE, text=True, env=ENV) for args in commands
    ]
    results = []
    for args, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return results


def eventually(check: Callable[[], Any], timeout: float = 20, every: float = 0.3) -> Any:
    """The first truthy result of ``check`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"not true after {timeout} s"
            return result
        time.sleep(every)


@dataclass(frozen=True)
class LocalStack:
    """A running ``local up``: its directory and what it wrote to the state file."""

    cwd: Path
    state: dict[str, Any]
    process: subprocess.Popen[bytes]

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_cli(self.cwd, *args, timeout=timeout)

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    @property
    def target(self) -> Target:
        return local_target(LocalStackState(**self.state))

    def closed_item(self, key: str, timeout: float = 30) -> dict[str, Any]:
        """Wait (reading the table directly, not through the CLI) until the refund's window is closed."""
        store = DynamoDbRefundStore(self.target.client("dynamodb"), self.state["outputs"]["ResultsTableName"])

        def closed() -> dict[str, Any] | None:
            item = store.get(key)
            return item if item and item.get("pollingState") == "IDLE" else None

        found: dict[str, Any] = eventually(closed, timeout=timeout, every=0.2)
        return found

    def printed(self) -> str:
        """What `local up` has printed so far."""
        return (self.cwd / UP_OUTPUT).read_text(encoding="utf-8", errors="replace")

    def dlq_messages(self) -> list[DlqMessage]:
        return peek(self.target.client("sqs"), self.state["outputs"]["InquiryDLQUrl"], None)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    cwd = tmp_path_factory.mktemp("local-up")
    # Its output (a line per message, poll, close, event and DLQ entry) goes to a file the tests read: a pipe
    # nobody reads would fill up and block it.
    output = (cwd / UP_OUTPUT).open("w")
    process = subprocess.Popen([*CLI, "local", "up", "--fast"], cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
    state_file = cwd / STATE_FILE
    try:
        eventually(lambda: state_file.exists() or process.poll() is not None, timeout=180, every=0.2)
        assert process.poll() is None, (cwd / UP_OUTPUT).read_text()
        yield LocalStack(cwd, json.loads(state_file.read_text()), process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        output.close()
    assert not state_file.exists(), "local up leaves no state file behind"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
