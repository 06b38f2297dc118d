"""``invoke`` runs each handler with every file in events/, on the local stack (as ``sam local invoke``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refund_poller.cli.main import app
from tests.e2e.conftest import EVENTS, LocalStack, run_cli

# result_event_*.json are what the stack publishes, not function input (see test_result_event_contract.py).
EVENT_FILES = sorted(
    p for p in EVENTS.glob("*.json") if p.name != "env.json" and not p.name.startswith("result_event_")
)


def _function_for(event: Path) -> str:
    # The starter takes queue batches and the scheduled outbox sweep; the rest are polls of a running loop.
    return "StartInquiryFunction" if event.name.startswith(("sqs_", "scheduled_")) else "InquireFunction"


@pytest.mark.parametrize("event", EVENT_FILES, ids=[p.stem for p in EVENT_FILES])
def test_every_sample_event_runs_through_its_function(
    local_stack: LocalStack, event: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process (the CLI's code, not its start-up, is under test here): it finds the stack of
    # `local up` through the state file of the working directory and invokes through its Lambda API.
    monkeypatch.chdir(local_stack.cwd)

    done = CliRunner().invoke(app, ["invoke", _function_for(event), "-e", str(event)])

    assert done.exit_code == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    if event.name.startswith("sqs_"):
        assert payload == {"batchItemFailures": []}
    elif event.name.startswith("scheduled_"):
        assert set(payload) == {"items", "published", "failed"} and payload["failed"] == 0
    else:
        assert payload["decision"]["next"] in {"wait", "done", "fail"}
        assert payload["polls"] == json.loads(event.read_text())["polls"] + 1
    assert "REPORT RequestId" in done.stderr  # the function's logs go to stderr


def test_invoke_without_a_running_stack_starts_one_for_the_call(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "invoke", "InquireFunction", "-e", str(EVENTS / "inquire_success.json"))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["decision"]["status"] == "SUCCESS"
    assert "starting a throwaway one for this call" in done.stderr


def test_invoke_refuses_an_unknown_function_in_one_line(local_stack: LocalStack) -> None:
    done = local_stack.cli("invoke", "NoSuchFunction", "-e", str(EVENTS / "inquire_success.json"))

    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "error: unknown function 'NoSuchFunction'"
