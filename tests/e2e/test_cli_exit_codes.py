"""``inquire`` says through its exit status whether a trusted answer came back; ``--version``; undecodable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refund_poller.cli.inquire_cmd import EXIT_UNTRUSTED
from tests.e2e.conftest import LocalStack, run_cli, run_cli_concurrently


def _inquire(stack: LocalStack, profile: str | Path, refund_id: str) -> tuple[int, dict[str, object]]:
    done = stack.cli("inquire", "--profile", str(profile), "--refund-id", refund_id)
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("provider", ["antom", "alphapay"])
def test_inquire_exits_0_on_a_trusted_answer_whatever_the_status_and_3_when_not_trusted(
    local_stack: LocalStack, unique: str, provider: str
) -> None:
    profile = local_stack.state["profiles"][provider]
    trusted = ["success", "processing", "notfound", "unknown"]
    untrusted = ["badsig", "nosig", "garbage", "http500", "reset"]

    scripts = trusted + untrusted
    commands = [["inquire", "--profile", profile, "--refund-id", f"{script}--{unique} 退/款"] for script in scripts]
    results = run_cli_concurrently(local_stack.cwd, commands)
    seen = {script: (done.returncode, json.loads(done.stdout)) for script, done in zip(scripts, results, strict=True)}

    assert EXIT_UNTRUSTED == 3
    assert {script: (code, obs["verified"]) for script, (code, obs) in seen.items()} == {
        **{script: (0, True) for script in trusted},
        **{script: (3, False) for script in untrusted},
    }


def test_inquire_exits_3_when_the_provider_cannot_be_reached(local_stack: LocalStack, tmp_path: Path) -> None:
    profile = json.loads(Path(local_stack.state["profiles"]["alipayplus"]).read_text())
    profile["baseUrl"] = "http://127.0.0.1:9"  # the discard port: nothing listens
    path = tmp_path / "unreachable.json"
    path.write_text(json.dumps(profile))

    code, observation = _inquire(local_stack, path, "success--unreachable")

    assert code == 3 and str(observation["reason"]).startswith("transport:"), observation


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--version")

    assert done.returncode == 0
    name, version = done.stdout.split()
    assert name == "refund-poller" and version[0].isdigit()


@pytest.mark.parametrize("how", ["--file", "--raw"])
def test_a_file_that_is_not_utf8_is_one_error_line_not_a_traceback(tmp_path: Path, how: str) -> None:
    path = tmp_path / "latin1.jsonl"
    text = '{"provider": "antom", "refundRequestId": "café"}\n'
    path.write_bytes(text.encode("latin-1"))

    done = run_cli(tmp_path, "send", how, str(path) if how == "--file" else f"@{path}")

    assert done.returncode == 2 and done.stdout == ""
    error, hint = done.stderr.strip().splitlines()
    assert error == f"error: {path} is not UTF-8 text (byte {text.index('é')} cannot be decoded)"
    assert hint.startswith("hint: ") and "UTF-8" in hint
