"""send → status → trace through the CLI, against ``local up --fast`` in another process, for every provider.

The refunds of the module are sent at once (concurrent CLI processes) and polled concurrently by the stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import CompletedCli, LocalStack, run_cli_concurrently

PROVIDERS = ("antom", "alipayplus", "alphapay")
ID_OPTION = {"antom": "--refund-request-id", "alipayplus": "--refund-request-id", "alphapay": "--refund-id"}
ID_FIELD = {"antom": "refundRequestId", "alipayplus": "refundRequestId", "alphapay": "refundId"}


def _send(provider: str, refund: str, *more: str) -> list[str]:
    return ["send", "--provider", provider, ID_OPTION[provider], refund, *more]


@pytest.fixture(scope="module")
def sent(local_stack: LocalStack) -> Iterator[dict[str, tuple[str, CompletedCli]]]:
    """Case name → (refund id, the send command's result); every window already closed."""
    run = local_stack.state["pid"]
    cases = {p: (p, f"processing1-success--e2e-{run}-{p}") for p in PROVIDERS}
    cases["at once"] = ("alipayplus", f"fail--e2e-{run}")
    commands = [_send(provider, refund, "--correlation-id", f"c-{name}") for name, (provider, refund) in cases.items()]
    results = run_cli_concurrently(local_stack.cwd, commands)
    for (provider, refund), done in zip(cases.values(), results, strict=True):
        assert done.returncode == 0, done.stderr
        local_stack.closed_item(f"{provider}#default#{'r' if provider == 'alphapay' else 'rr'}:{refund}")
    yield {name: (cases[name][1], done) for name, done in zip(cases, results, strict=True)}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refund_sent_through_the_cli_is_polled_to_success_and_traced_poll_by_poll(
    local_stack: LocalStack, sent: dict[str, tuple[str, CompletedCli]], provider: str
) -> None:
    refund, send = sent[provider]
    message_id, for_refund = send.stdout.strip().split("  ", 1)  # one message id, then the refund it is for
    assert message_id and for_refund == f"{provider} default {ID_FIELD[provider]}={refund!r}"

    status: dict[str, Any] = local_stack.cli_json("status", "--provider", provider, ID_OPTION[provider], refund)
    trace = local_stack.cli_json("trace", "--provider", provider, ID_OPTION[provider], refund)

    assert (status["status"], status["final"], status["polls"]) == ("SUCCESS", True, 2)
    assert status["correlationId"] == f"c-{provider}"
    assert trace["execution"]["status"] == "SUCCEEDED"
    polls = [step for step in trace["steps"] if step["poll"] is not None]
    assert [(s["poll"], s["status"], s["decision"]) for s in polls] == [
        (1, "PROCESSING", "wait 1 s"),
        (2, "SUCCESS", "done"),
    ]
    assert "result SUCCESS" in polls[-1]["detail"]
    assert trace["execution"]["consoleUrl"] is None  # local: no console


def test_status_prints_a_table_and_trace_a_timeline_for_people(
    local_stack: LocalStack, sent: dict[str, tuple[str, CompletedCli]]
) -> None:
    refund = sent["antom"][0]

    status, trace = run_cli_concurrently(
        local_stack.cwd,
        [
            ["status", "--provider", "antom", "--refund-request-id", refund],
            ["trace", "--provider", "antom", "--refund-request-id", refund],
        ],
    )

    assert status.returncode == 0 and "SUCCESS" in status.stdout and "execution      arn:aws:states:" in status.stdout
    assert trace.returncode == 0 and "first inquiry" in trace.stdout and "execution arn:aws:states:" in trace.stdout


def test_a_refund_final_at_the_first_inquiry_is_traced_as_having_no_execution(
    local_stack: LocalStack, sent: dict[str, tuple[str, CompletedCli]]
) -> None:
    trace = local_stack.cli_json("trace", "--provider", "alipayplus", "--refund-request-id", sent["at once"][0])

    assert trace["execution"] is None
    assert "no polling execution" in trace["note"]
    assert trace["item"]["status"] == "FAIL"


def test_a_refund_is_found_by_the_provider_refund_id_too(
    local_stack: LocalStack, sent: dict[str, tuple[str, CompletedCli]]
) -> None:
    refund = sent["antom"][0]
    refund_id = local_stack.closed_item(f"antom#default#rr:{refund}")["refundId"]

    by_refund_id = local_stack.cli_json("status", "--provider", "antom", "--refund-id", refund_id)

    assert by_refund_id["refundRequestId"] == refund


def test_send_from_a_json_lines_file_sends_every_line_in_batches(local_stack: LocalStack) -> None:
    run = local_stack.state["pid"]
    lines = [json.dumps({"provider": "alipayplus", "refundRequestId": f"success--file{n}-{run}"}) for n in range(12)]
    path = local_stack.cwd / "refunds.jsonl"
    path.write_text("\n".join(lines) + "\n\n")

    done = local_stack.cli("send", "--file", str(path))

    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 12
    local_stack.closed_item(f"alipayplus#default#rr:success--file11-{run}")
