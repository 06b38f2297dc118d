"""``refund-poller demo``: the product end to end on one machine, in under two minutes."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from refund_core.domain.inquiry import item_key
from refund_core.store import DynamoDbRefundStore
from refund_poller.cli.activity import keep_result_events
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.demo_plan import REJECTED, DemoRefund, Progress, plan
from refund_poller.cli.demo_view import LiveView, PlainView, Rows, summary_json, summary_table
from refund_poller.cli.dlq_messages import peek
from refund_poller.cli.errors import fail
from refund_poller.cli.local_cmd import state_of
from refund_poller.cli.local_state import STATE_DIR, process_alive, read_state, remove_state, write_state
from refund_poller.cli.refunds import find_keyed_item
from refund_poller.cli.render import print_json, stderr, stdout
from refund_poller.cli.send_cmd import send_bodies
from refund_poller.cli.target import Target, local_session, local_target
from refund_poller.cli.trace_cmd import print_trace

REFRESH_SECONDS = 0.5
DEMO_TIME_SCALE = 1000.0  # the long tail's waits, 1,000 times shorter (docs/long-tail.md, "Local stack")
# The longest lifecycle is the unresolved one: a whole polling window, plus slack for a loaded machine.
TIMEOUT_SECONDS = {True: 40.0, False: 100.0}


def demo(
    fast: Annotated[bool, typer.Option("--fast", help="Poll every 1 s for 12 s instead of 5 s for 60 s.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (progress goes to stderr).")
    ] = False,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="Keep the demo's own stack running afterwards (as `local up` would), for trace and status."
        ),
    ] = False,
) -> None:
    """Show the whole product working: refunds across Antom, an Alipay+ wallet and AlphaPay, polled live.

    Uses the local stack running in this directory (`refund-poller local up`) or starts one for the demo.
    Sends refunds whose ids script the provider sandbox: success, fail, not found then found, unresolved at
    the end of the polling window, final by the provider's notification, final in the long tail (the demo's own
    stack runs the tail 1,000 times faster), an invalid message (rejected to the DLQ) and a duplicate (polled once).
    Shows each refund's status and polls as they change (in progress first; fits 80x24), then a summary and
    one refund's trace, with the commands to trace the others. A stack the demo started stops at the end unless
    `--keep` (then it runs on in the foreground, found by the other commands, until Ctrl-C or
    `refund-poller local down`). Exit status 0 only if every refund ended as expected. About 70 s with the real
    5 s / 60 s policy.

    Examples:

        refund-poller demo

        refund-poller demo --fast

        refund-poller demo --keep

        refund-poller demo --fast --json | jq .counts
    """
    console = stderr if as_json else stdout
    started = time.monotonic()
    with _stack(fast, keep) as (target, own_stack, stack_fast):
        if not own_stack:
            stderr.print("note: the running local stack has the long tail off: the long-tail refund is left out")
        rows: Rows = [(refund, Progress()) for refund in plan(tail=own_stack)]
        rejected_ids = _send(target, [refund for refund, _ in rows])
        view = LiveView(console) if console.is_terminal else PlainView(console)
        with view:
            _follow(target, rows, rejected_ids, view, TIMEOUT_SECONDS[stack_fast])
        elapsed = time.monotonic() - started
        _report(rows, elapsed, as_json)
        if not as_json:
            _example_trace(target, rows)
            _hints(rows, stopping=own_stack and not keep)
        if own_stack and keep:
            _hold()
    if not all(progress.judged(refund) for refund, progress in rows):
        raise typer.Exit(EXIT_FAILURE)


@contextmanager
def _stack(fast: bool, keep: bool) -> Iterator[tuple[Target, bool, bool]]:
    """The running local stack of this directory, or one of our own: (target, ours, fast policy).

    Our own stack lives in a temporary directory, or with ``keep`` in .refund-poller/ with a state file, as
    `local up` has it (so that trace, status, dlq and `local down` find it)."""
    state = read_state()
    if state is not None and process_alive(state.pid):
        if fast != state.fast:
            stderr.print(f"note: using the running local stack ({'fast' if state.fast else 'real'} policy)")
        yield local_target(state), False, state.fast
        return
    from refund_poller.devstack import FAST_POLICY, DevStack  # heavy (moto): only when we run the stack
    from refund_poller.local import LocalCloudError
    from refund_poller.local.scheduler import SchedulerSettings
    from refund_poller.local.server import REGION

    stderr.print("starting a local stack for the demo (emulated AWS, provider sandbox) …")
    with tempfile.TemporaryDirectory(prefix="refund-poller-demo-") as scratch:
        stack = DevStack(
            STATE_DIR / "local" if keep else Path(scratch),
            parameter_overrides=FAST_POLICY if fast else None,
            notifications=True,
            # The long tail on, its waits compressed: the tail refund's attempts planned 2, 12 and 42 minutes
            # after its window come within seconds (the unresolved refund's message keeps it out of the tail).
            tail=True,
            scheduler=SchedulerSettings(time_scale=DEMO_TIME_SCALE),
        )
        try:
            stack.start()
        except (LocalCloudError, OSError) as exc:
            fail(f"cannot start the local stack: {exc}", exit_code=EXIT_FAILURE)
        try:
            outputs = {k: str(v) for k, v in stack.outputs.items()}
            if keep:
                state = state_of(stack, fast)
                kept = local_target(state)
                keep_result_events(kept.client("events"), kept.client("logs"), outputs.get("EventBusName", "default"))
                write_state(state)
            yield Target(local_session(REGION), outputs, REGION, stack.cloud.endpoint_url), True, fast
        finally:
            if keep:
                remove_state(pid=os.getpid())
            stack.stop()


def _hold() -> None:
    """Keep the demo's stack running until Ctrl-C or `refund-poller local down` (SIGTERM)."""
    stdout.print("the demo's stack keeps running here: Ctrl-C or `refund-poller local down` stops it")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stdout.print("local stack stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _send(target: Target, refunds: list[DemoRefund]) -> dict[str, str]:
    """Send every refund's message (a duplicate twice); the message id of each invalid one → its refund id."""
    bodies = [refund.body() for refund in refunds for _ in range(refund.copies)]
    owners = [refund for refund in refunds for _ in range(refund.copies)]
    message_ids = send_bodies(target, bodies)
    return {message_id: owner.refund for message_id, owner in zip(message_ids, owners, strict=True) if owner.invalid}


def _follow(
    target: Target, rows: Rows, rejected_ids: dict[str, str], view: LiveView | PlainView, timeout: float
) -> None:
    store = target.store()
    sqs = target.client("sqs")
    deadline = time.monotonic() + timeout
    with aws_errors(target.where):
        while True:
            for refund, progress in rows:
                if not progress.done:
                    _refresh(store, refund, progress)
            if any(refund.invalid and not progress.done for refund, progress in rows):
                _refresh_rejected(sqs, target.output("InquiryDLQUrl"), rows, rejected_ids)
            view.update(rows)
            if all(progress.done for _, progress in rows) or time.monotonic() > deadline:
                return
            time.sleep(REFRESH_SECONDS)


def _refresh(store: DynamoDbRefundStore, refund: DemoRefund, progress: Progress) -> None:
    if refund.invalid:
        return
    refund_id, refund_request_id = refund.ids
    item = store.get(item_key(refund.provider, "default", refund_id=refund_id, refund_request_id=refund_request_id))
    if item is None:
        return
    progress.item = item
    progress.polls = int(item.get("polls") or 0)
    progress.status = str(item.get("status")) if progress.polls else "claimed"  # claimed, not asked yet
    progress.generation = int(item.get("generation") or 0)
    progress.done = item.get("pollingState") == "IDLE"
    if not progress.done and item.get("pollsLive") is False:  # the stack runs with RecordEveryPoll=false
        progress.note = "polls not counted live: written on status changes and at the close"
    if progress.done:
        progress.note = "polled by an execution" if item.get("executionArn") else "no execution needed"
        if item.get("source") == "notification":
            progress.note = f"final by notification after {progress.polls} poll(s), before the next"
        if progress.tail_attempts:
            progress.note = f"final at tail attempt {progress.tail_attempts} of the long tail"
        if refund.copies > 1:
            progress.note = f"{refund.copies} messages, {progress.generation} polling window(s)"


def _refresh_rejected(sqs: object, dlq_url: str, rows: Rows, rejected_ids: dict[str, str]) -> None:
    for message in peek(sqs, dlq_url, None):
        refund_id = rejected_ids.get(message.source_message_id or "")
        for refund, progress in rows:
            if refund.refund == refund_id and refund.invalid:
                progress.status, progress.done, progress.note = REJECTED, True, f"DLQ: {message.reason}"


def _report(rows: Rows, elapsed: float, as_json: bool) -> None:
    if as_json:
        print_json(summary_json(rows, elapsed))
        return
    stdout.print(summary_table(rows, stdout.width))
    good = sum(1 for refund, progress in rows if progress.judged(refund))
    verdict = "[green]every refund ended as expected[/]" if good == len(rows) else "[red]some refunds did not[/]"
    stdout.print(f"{good}/{len(rows)} as expected in {elapsed:.0f} s: {verdict}")


def _example_trace(target: Target, rows: Rows) -> None:
    """One refund's trace, printed while the stack still runs (the first refund polled by an execution)."""
    polled = [refund for refund, progress in rows if progress.done and progress.item.get("executionArn")]
    if not polled:
        return
    refund = polled[0]
    refund_id, refund_request_id = refund.ids
    found = find_keyed_item(target, refund.provider, "default", refund_id, refund_request_id)
    if found is not None:
        stdout.print(f"\n$ {_fitted(refund.trace_command())}", markup=False)
        print_trace(target, *found)


def _fitted(command: str) -> str:
    """A command that fits the terminal: continued on a second line (shell ``\\``) before the id option."""
    if len(command) + 2 <= stdout.width or " --refund" not in command:
        return command
    head, _, rest = command.partition(" --refund")
    return f"{head} \\\n      --refund{rest}"


def _hints(rows: Rows, stopping: bool) -> None:
    stdout.print("\ntrace the others, e.g.:" if not stopping else "\nwith a stack running (`--keep`), trace others:")
    for refund, _ in rows[1:2] + [r for r in rows if r[0].expected == "UNRESOLVED" or r[0].invalid]:
        stdout.print(f"  {_fitted(refund.trace_command())}", markup=False)
    if stopping:
        stdout.print(
            "this demo's own stack stops now: `refund-poller demo --keep`, or `refund-poller local up` in another"
            " terminal first, keeps one for these commands",
            soft_wrap=False,
        )
