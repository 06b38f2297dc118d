"""The ``refund-poller`` command: this module only registers the commands, one module per verb."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from refund_poller.cli import (
    demo_cmd,
    dlq_cmd,
    inquire_cmd,
    invoke_cmd,
    local_cmd,
    logs_cmd,
    notify_cmd,
    sandbox_cmd,
    send_cmd,
    status_cmd,
    trace_cmd,
)
from refund_poller.cli.errors import OneLineErrorsGroup
from refund_poller.console import command as console_cmd

app = typer.Typer(
    name="refund-poller",
    help="Learn the final status of refunds from Antom, Alipay+ wallets and AlphaPay, and the tools to try it locally.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrorsGroup,
    rich_markup_mode="markdown",  # reflows the docstrings' paragraphs; indented Examples stay verbatim
    # Locals in a traceback could include a loaded profile's key material.
    pretty_exceptions_show_locals=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        try:
            version = metadata.version("refund-poller")
        except metadata.PackageNotFoundError:  # run from a checkout without `make install`
            version = "unknown (not installed)"
        typer.echo(f"refund-poller {version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Learn the final status of refunds from Antom, Alipay+ wallets and AlphaPay, and the tools to try it locally."""


app.add_typer(local_cmd.app, name="local")
app.command("demo")(demo_cmd.demo)
app.command("send")(send_cmd.send)
app.command("status")(status_cmd.status)
app.command("trace")(trace_cmd.trace)
app.command("logs")(logs_cmd.logs)
app.command("events")(logs_cmd.events)
app.add_typer(dlq_cmd.app, name="dlq")
app.command("invoke")(invoke_cmd.invoke)
app.command("sandbox")(sandbox_cmd.sandbox)
app.command("inquire")(inquire_cmd.inquire)
app.command("notify")(notify_cmd.notify)
app.command("console")(console_cmd.console)

if __name__ == "__main__":
    app()
