"""``refund-poller sandbox``: run the provider sandbox in the foreground."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from refund_poller.cli.errors import fail
from refund_poller.sandbox import Sandbox

_stdout = Console(soft_wrap=True, highlight=False, markup=False)  # ids may contain [brackets]


def sandbox(
    profiles_dir: Annotated[
        Path, typer.Option("--profiles-dir", help="Where to write the merchant profiles.", show_default=False)
    ],
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print a line per inquiry.")] = False,
) -> None:
    """Run the provider sandbox: Antom, Alipay+ wallet and AlphaPay inquiryRefund on one loopback port.

    Every start generates fresh keys and writes one merchant profile per provider into --profiles-dir
    (antom.json uses Antom's sandbox path, antom-live.json the live one), prints the base URL and the
    profile paths, then answers until Ctrl-C or SIGTERM. A refund id carries its own script before
    "--": processing2-success--r1 answers PROCESSING twice, then SUCCESS. docs/sandbox.md has the
    grammar and the /_sandbox/ admin endpoints, including the signed refund notifications it pushes
    to a merchant's notify URL (PUT /_sandbox/notify/merchants/{provider}/{merchant}).

    Examples:

        refund-poller sandbox --profiles-dir .refund-poller/sandbox

        refund-poller sandbox --profiles-dir /tmp/profiles --port 8765 --quiet

        refund-poller inquire --profile .refund-poller/sandbox/antom.json --refund-id processing2-success--r1
    """
    server = _bound_sandbox(host, port, profiles_dir, quiet)
    # Installed before the first line is printed: whoever reads that line may stop us at once.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _announce(server)
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: the normal way to stop
    finally:
        signal.signal(signal.SIGTERM, previous)
    _stdout.print("sandbox stopped")


def _bound_sandbox(host: str, port: int, profiles_dir: Path, quiet: bool) -> Sandbox:
    """A sandbox listening and with its profiles written, or a one-line error."""
    try:
        return Sandbox(host, port, profiles_dir=profiles_dir, log=None if quiet else _stdout.print).bind()
    except ValueError as exc:
        fail(str(exc), hint="use --host 127.0.0.1 (or ::1)")
    except OSError as exc:
        if exc.filename:  # writing a profile failed, not listening
            fail(f"cannot write the profiles to {profiles_dir}: {exc.strerror or exc}", hint="give a writable one")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint="try --port 0 (any free port)")


def _announce(server: Sandbox) -> None:
    _stdout.print(f"sandbox listening on {server.base_url}")
    for name, path in server.profiles.items():
        _stdout.print(f"  profile {name:<11} {path}")
    _stdout.print(f"  admin   {server.base_url}/_sandbox/health  (Ctrl-C to stop)")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the sandbox the same way Ctrl-C does."""
    raise KeyboardInterrupt
