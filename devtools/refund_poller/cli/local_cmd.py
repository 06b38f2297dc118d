"""``refund-poller local up``: the whole stack on this machine, in the foreground."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from refund_poller.cli.aws_errors import EXIT_FAILURE
from refund_poller.cli.errors import fail
from refund_poller.cli.local_state import (
    STATE_DIR,
    STATE_FILE,
    LocalStackState,
    process_alive,
    read_state,
    remove_state,
    write_state,
)
from refund_poller.cli.render import stdout

if TYPE_CHECKING:
    from refund_poller.devstack import DevStack

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The local stack (emulated AWS, no account).")


@app.command("up")
def up(
    fast: Annotated[bool, typer.Option("--fast", help="Poll every 1 s for 8 s instead of 5 s for 60 s.")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the emulated AWS endpoint; 0: any.")] = 0,
    sandbox_port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the provider sandbox; 0: any.")] = 0,
) -> None:
    """Run the local stack in the foreground: emulated AWS, the provider sandbox and the deployed template.

    Deploys template.yaml into moto (queues, table, state machine, functions run in local workers), starts
    the provider sandbox with merchant profiles stored as secrets, prints the endpoints and writes
    .refund-poller/local-stack.json so that the other commands run in this directory find the stack. Stops on
    Ctrl-C or SIGTERM and removes the state file.

    Examples:

        refund-poller local up

        refund-poller local up --fast --port 4566

        refund-poller send --provider antom --refund-request-id processing2-success--r1   # in another terminal
    """
    running = read_state()
    if running is not None and process_alive(running.pid) and running.pid != os.getpid():
        fail(f"a local stack is already running here (pid {running.pid}, {running.endpoint_url})", hint="stop it first")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack = _started(fast, port, sandbox_port)
        try:
            state = _state_of(stack, fast)
            write_state(state)
            _announce(state)
            threading.Event().wait()  # until Ctrl-C or SIGTERM
        finally:
            remove_state(pid=os.getpid())
            stack.stop()
    except KeyboardInterrupt:
        pass  # the normal way to stop
    finally:
        signal.signal(signal.SIGTERM, previous)
    stdout.print("local stack stopped")


def _started(fast: bool, port: int, sandbox_port: int) -> DevStack:
    from refund_poller.devstack import FAST_POLICY, DevStack  # heavy (moto): only commands that run a stack
    from refund_poller.local import LocalCloudError

    stdout.print("starting the local stack …")
    stack = DevStack(
        Path(STATE_DIR / "local"),
        parameter_overrides=FAST_POLICY if fast else None,
        sandbox_port=sandbox_port,
        port=port,
    )
    try:
        return stack.start()
    except (LocalCloudError, OSError) as exc:
        fail(f"cannot start the local stack: {exc}", hint="try --port 0 and --sandbox-port 0", exit_code=EXIT_FAILURE)


def _state_of(stack: DevStack, fast: bool) -> LocalStackState:
    from refund_poller.local.server import REGION

    return LocalStackState(
        endpoint_url=stack.cloud.endpoint_url,
        region=REGION,
        outputs={k: str(v) for k, v in stack.outputs.items()},
        sandbox_url=stack.sandbox.base_url,
        pid=os.getpid(),
        fast=fast,
        profiles={name: str(path.resolve()) for name, path in stack.sandbox.profiles.items()},
        secret_names=stack.secret_names(),
    )


def _announce(state: LocalStackState) -> None:
    policy = "fast: every 1 s for 8 s" if state.fast else "every 5 s for 60 s (Antom not found: 15 s, 3 times)"
    lines = [
        f"local stack ready ({policy})",
        f"  AWS endpoint   {state.endpoint_url}   (region {state.region}, any credentials)",
        f"  sandbox        {state.sandbox_url}",
        f"  inquiry queue  {state.outputs.get('InquiryQueueUrl')}",
        f"  DLQ            {state.outputs.get('InquiryDLQUrl')}",
        f"  results table  {state.outputs.get('ResultsTableName')}",
        f"  state machine  {state.outputs.get('StateMachineArn')}",
        "  merchant profiles (secret ← profile file):",
        *(f"    {state.secret_names[n]:<42} ← {state.profiles.get(n)}" for n in state.secret_names),
        f"  state file     {STATE_FILE}",
        "try: refund-poller send --provider antom --refund-request-id processing2-success--r1   (Ctrl-C to stop)",
    ]
    for line in lines:
        stdout.print(line, markup=False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the stack the same way Ctrl-C does."""
    raise KeyboardInterrupt
