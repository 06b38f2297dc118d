"""Nothing the README (and the docs it sends readers to) says about the CLI is out of date with its `--help`:
every `refund-poller …` command named exists, every flag named after it is in that command's help, and every
command the CLI has is in the README."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refund_poller.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "operations.md", ROOT / "docs" / "events.md"]
# A mention: "refund-poller", then words, flags and values up to the end of the code span, line or shell operator.
# (Not the stack's name after --stack-name, nor a path such as refund-poller/merchants/.)
MENTION = re.compile(r"(?<![\w/-])(?<!--stack-name )refund-poller((?: +[^`|&;#\n]+)*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
runner = CliRunner()


@cache
def help_text(path: tuple[str, ...]) -> str | None:
    """The command's --help as a user sees it, or None when there is no such command."""
    done = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    return done.output if done.exit_code == 0 else None


def subcommands(path: tuple[str, ...]) -> set[str]:
    text = help_text(path) or ""
    if "Commands" not in text:
        return set()
    listed = text.split("Commands", 1)[1]
    return set(re.findall(r"^[│|]?\s+([a-z][a-z-]*)\s{2,}", listed, re.MULTILINE))


def mentions() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(document, command path, flags) for every `refund-poller …` the documents name."""
    found = []
    for document in DOCUMENTS:
        for match in MENTION.finditer(document.read_text(encoding="utf-8")):
            words = match.group(1).split()
            path: tuple[str, ...] = ()
            for word in words:
                if word.startswith("-") or word not in subcommands(path):
                    break
                path = (*path, word)
            flags = [flag for flag in FLAG.findall(" ".join(words[len(path) :]))]
            if path or flags:
                found.append((document.name, path, flags))
    return found


def test_the_documents_name_the_cli_at_all() -> None:
    named = {path for _, path, _ in MENTIONS}

    assert ("trace",) in named and ("local", "up") in named


MENTIONS = mentions()


@pytest.mark.parametrize(
    ("document", "path", "flags"), MENTIONS, ids=[f"{d}: {' '.join(p)} {' '.join(f)}" for d, p, f in MENTIONS]
)
def test_every_command_and_flag_the_documents_name_is_in_the_cli_help(
    document: str, path: tuple[str, ...], flags: list[str]
) -> None:
    text = help_text(path)

    assert text is not None, f"{document}: `refund-poller {' '.join(path)}` is no command"
    known = set(FLAG.findall(text))
    assert not set(flags) - known, f"{document}: `refund-poller {' '.join(path)}` has no {set(flags) - known}"


def test_every_command_of_the_cli_is_in_the_readme() -> None:
    named = {path for document, path, _ in MENTIONS if document == "README.md"}
    commands: set[tuple[str, ...]] = {(name,) for name in subcommands(())}
    commands |= {(group, name) for (group,) in commands for name in subcommands((group,))}
    groups = {path[:1] for path in commands if len(path) == 2}

    assert commands - groups - named == set()
