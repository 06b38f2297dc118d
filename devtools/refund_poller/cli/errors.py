"""How the CLI reports a refusal: one ``error: …`` line, maybe one ``hint: …`` line, a non-zero exit.

No tracebacks for anything a user can fix (arguments, files, profiles, ids), and never a value
that might be key material: messages come from :class:`~refund_core.domain.ProfileError` and
friends, which name fields, not contents.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

try:  # recent typer ships its own copy of click and raises that copy's exceptions
    from typer._click.exceptions import ClickException
except ImportError:  # older typer raises the click package's
    from click.exceptions import ClickException  # type: ignore[assignment]

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments, unreadable files, invalid profiles or ids: the same code click uses
EXIT_ABORTED = 130

# soft_wrap: one message stays one line, whatever the terminal width.
_stderr = Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(message: str, hint: str | None = None) -> None:
    """Print ``error: message`` (and ``hint: …``) on stderr, each on one line."""
    _stderr.print(Text.assemble(("error: ", "bold red"), _one_line(message)))
    if hint:
        _stderr.print(Text.assemble(("hint: ", "bold"), _one_line(hint)))


def fail(message: str, hint: str | None = None, exit_code: int = EXIT_USAGE) -> NoReturn:
    """Report a refusal and leave the command with ``exit_code``."""
    print_error(message, hint)
    raise typer.Exit(exit_code)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class OneLineErrorsGroup(TyperGroup):
    """The root command group: click's usage errors become one ``error:`` line plus a ``--help`` hint.

    Typer would draw them as a multi-line panel; scripts and tests read one line more easily.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            outcome = super().main(
                args, prog_name, complete_var, standalone_mode=False, windows_expand_args=windows_expand_args, **extra
            )
        except ClickException as exc:
            _report(exc)
            code = EXIT_USAGE
        except typer.Abort:
            print_error("aborted")
            code = EXIT_ABORTED
        else:
            # Non-standalone click returns the exit code of typer.Exit, or the command's own return value.
            code = outcome if isinstance(outcome, int) else EXIT_OK
        if not standalone_mode:
            return code
        sys.exit(code)


def _report(exc: ClickException) -> None:
    if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments: the help is the answer, not an error
        if exc.format_message().strip():  # the rich help printer has already printed it itself
            typer.echo(exc.format_message(), err=True)
        return
    print_error(exc.format_message(), _help_hint(exc))


def _help_hint(exc: ClickException) -> str | None:
    command_path = getattr(getattr(exc, "ctx", None), "command_path", None)
    return f"run '{command_path} --help' for the options" if command_path else None
