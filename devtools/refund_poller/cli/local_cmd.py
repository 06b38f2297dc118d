"""``refund-poller local up|down|status``: the whole stack on this machine, in the foreground, and its control."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from refund_poller.cli.activity import ActivityPrinter, keep_result_events, log_dir
from refund_poller.cli.aws_errors import EXIT_FAILURE
from refund_poller.cli.errors import fail
from refund_poller.cli.local_state import (
    STATE_DIR,
    STATE_FILE,
    FoundState,
    LocalStackState,
    find_state,
    process_alive,
    remove_state,
    write_state,
)
from refund_poller.cli.options import Json
from refund_poller.cli.render import print_json, stdout
from refund_poller.cli.target import local_target

if TYPE_CHECKING:
    from refund_poller.devstack import DevStack

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The local stack (emulated AWS, no account).")


@app.command("up")
def up(
    fast: Annotated[bool, typer.Option("--fast", help="Poll every 1 s for 12 s instead of 5 s for 60 s.")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the emulated AWS endpoint; 0: any.")] = 0,
    sandbox_port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the provider sandbox; 0: any.")] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print no line per message, poll, close, event and DLQ entry.")
    ] = False,
) -> None:
    """Run the local stack in the foreground: emulated AWS, the provider sandbox and the deployed template.

    Deploys template.yaml into moto (queues, table, state machine, functions run in local workers), starts
    the provider sandbox with merchant profiles stored as secrets, prints the endpoints and writes
    .refund-poller/local-stack.json so that the other commands run in this directory or any subfolder find
    the stack. Then prints one line per message handled, poll, window closed, result event and DLQ entry
    (`--quiet`: none); the functions' whole logs are in .refund-poller/local/logs/ (`refund-poller logs`), the
    result events in a CloudWatch Logs group (`refund-poller events`). Stops on Ctrl-C, SIGTERM or
    `refund-poller local down` (from another terminal) and removes the state file. Refuses to start a second
    stack where one already runs (here or in a parent directory).

    Examples:

        refund-poller local up

        refund-poller local up --fast --port 4566

        refund-poller send --provider antom --refund-request-id processing2-success--r1   # in another terminal
    """
    running = find_state()
    if running is not None and running.running and running.state.pid != os.getpid():
        fail(
            f"a local stack is already running (pid {running.state.pid}, {running.state.endpoint_url},"
            f" state file {running.path})",
            hint="use it, or stop it with `refund-poller local down` (or Ctrl-C in its terminal)",
        )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack = _started(fast, port, sandbox_port)
        activity: ActivityPrinter | None = None
        try:
            state = state_of(stack, fast)
            activity = _activity(state, quiet)
            write_state(state)
            _announce(state)
            if activity is not None:
                activity.start()
            threading.Event().wait()  # until Ctrl-C or SIGTERM
        finally:
            if activity is not None:
                activity.stop()
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
        notifications=True,  # the sandbox pushes each final result to the stack, as the providers do
    )
    try:
        return stack.start()
    except (LocalCloudError, OSError) as exc:
        fail(f"cannot start the local stack: {exc}", hint="try --port 0 and --sandbox-port 0", exit_code=EXIT_FAILURE)


def _activity(state: LocalStackState, quiet: bool) -> ActivityPrinter | None:
    """Keeps the result events for `refund-poller events`; the activity lines unless quiet."""
    target = local_target(state)
    keep_result_events(target.client("events"), target.client("logs"), state.outputs.get("EventBusName", "default"))
    if quiet:
        return None
    return ActivityPrinter(
        log_dir(STATE_FILE.resolve()),
        target.client,
        state.outputs["InquiryDLQUrl"],
        lambda line: stdout.print(line, markup=False, highlight=False),
    )


def state_of(stack: DevStack, fast: bool) -> LocalStackState:
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
        notify_base_url=stack.notify_base_url,
    )


def _announce(state: LocalStackState) -> None:
    policy = "fast: every 1 s for 12 s" if state.fast else "every 5 s for 60 s (Antom not found: 15 s, 3 times)"
    lines = [
        f"local stack ready ({policy})",
        f"  AWS endpoint   {state.endpoint_url}   (region {state.region}, any credentials)",
        f"  sandbox        {state.sandbox_url}",
        f"  notifications  {state.notify_base_url}/notify/<provider>/<merchant>",
        f"  inquiry queue  {state.outputs.get('InquiryQueueUrl')}",
        f"  DLQ            {state.outputs.get('InquiryDLQUrl')}",
        f"  results table  {state.outputs.get('ResultsTableName')}",
        f"  state machine  {state.outputs.get('StateMachineArn')}",
        "  merchant profiles (secret ← profile file):",
        *(f"    {state.secret_names[n]:<42} ← {state.profiles.get(n)}" for n in state.secret_names),
        f"  state file     {STATE_FILE.resolve()}",
        "try: refund-poller send --provider antom --refund-request-id processing2-success--r1",
        "stop: Ctrl-C here, or `refund-poller local down` from another terminal",
        "logs: `refund-poller logs --follow`; result events: `refund-poller events --follow`",
    ]
    for line in lines:
        stdout.print(line, markup=False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the stack the same way Ctrl-C does."""
    raise KeyboardInterrupt


STOP_WAIT_SECONDS = 30  # local up stops its workers and the emulated AWS in a few seconds
_NONE_RUNNING = f"no local stack is running (no {STATE_FILE} here or in a parent directory)"


@app.command("down")
def down() -> None:
    """Stop the local stack started by `refund-poller local up` (found here or in a parent directory).

    Sends it SIGTERM, as Ctrl-C in its terminal would, and waits until it has stopped and removed its
    state file. A state file left by a stack that died is removed. Exit status 1 when no stack runs.

    Examples:

        refund-poller local down

        refund-poller local down && refund-poller local up --fast
    """
    found = find_state()
    if found is None:
        fail(_NONE_RUNNING, hint="`refund-poller local up` starts one", exit_code=EXIT_FAILURE)
    if not found.running:
        found.path.unlink(missing_ok=True)
        stdout.print(f"the local stack (pid {found.state.pid}) had already stopped; removed {found.path}", markup=False)
        return
    pid = found.state.pid
    if not _is_local_up(pid):
        fail(
            f"pid {pid} in {found.path} is not a `refund-poller local up`; not stopping it",
            hint=f"the stack stopped without cleaning up: remove {found.path}",
            exit_code=EXIT_FAILURE,
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while not _exited(pid):
        if time.monotonic() > deadline:
            fail(f"the local stack (pid {pid}) has not stopped after {STOP_WAIT_SECONDS} s", exit_code=EXIT_FAILURE)
        time.sleep(0.2)
    stdout.print(f"local stack stopped (pid {pid}, {found.path.parent.parent})", markup=False)


@app.command("status")
def status(as_json: Json = False) -> None:
    """Say whether a local stack runs (found here or in a parent directory), where, and its endpoints.

    Exit status 0 when one runs and its AWS endpoint answers, 1 otherwise (none, stopped, or not answering).

    Examples:

        refund-poller local status

        refund-poller local status --json | jq -r .state.endpoint_url
    """
    found = find_state()
    if found is None:
        if as_json:
            print_json({"running": False, "stateFile": None})
        else:
            stdout.print(_NONE_RUNNING, markup=False)
        raise typer.Exit(EXIT_FAILURE)
    answering = found.running and _answers(found.state.endpoint_url)
    if as_json:
        print_json(
            {"running": found.running, "answering": answering, "stateFile": str(found.path)}
            | {"state": found.state.to_json()}
        )
    else:
        _print_status(found, answering)
    if not answering:
        raise typer.Exit(EXIT_FAILURE)


def _print_status(found: FoundState, answering: bool) -> None:
    state = found.state
    if not found.running:
        lines = [
            f"the local stack (pid {state.pid}) has stopped, leaving {found.path}",
            "`refund-poller local down` removes it; `refund-poller local up` starts a new stack",
        ]
    else:
        health = "answering" if answering else "NOT answering"
        policy = "fast: every 1 s for 12 s" if state.fast else "every 5 s for 60 s"
        lines = [
            f"local stack running (pid {state.pid}, {policy})",
            f"  AWS endpoint   {state.endpoint_url}   ({health})",
            f"  sandbox        {state.sandbox_url}",
            f"  directory      {found.path.parent.parent}",
            f"  state file     {found.path}",
            "stop it with `refund-poller local down`",
        ]
    for line in lines:
        stdout.print(line, markup=False)


def _exited(pid: int) -> bool:
    """Whether the process has ended: gone, or a zombie its parent has not reaped yet."""
    if not process_alive(pid):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def _answers(endpoint_url: str) -> bool:
    """Whether something accepts connections at the endpoint (the emulated AWS)."""
    from urllib.parse import urlsplit

    url = urlsplit(endpoint_url)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=2):
            return True
    except OSError:
        return False


def _is_local_up(pid: int) -> bool:
    """Whether the process is a ``refund-poller local up`` or ``demo --keep`` (a pid from an old state file may now
    be a stranger).

    Only checked where /proc exists; elsewhere the pid is trusted.
    """
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return False
    # `local up`, or `demo --keep` (which runs its stack on in the same way).
    runs_stack = b"up" in arguments or (b"demo" in arguments and b"--keep" in arguments)
    return runs_stack and any(b"refund" in argument for argument in arguments)
