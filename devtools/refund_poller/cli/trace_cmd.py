"""``refund-poller trace``: every polling window of a refund, poll by poll, with a strip per window."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime
from typing import Annotated, Any

import typer

from refund_poller.cli import options
from refund_poller.cli.errors import fail
from refund_poller.cli.item_view import ago, iso, json_item, meaning
from refund_poller.cli.refunds import check_lookup, find_keyed_item, missing
from refund_poller.cli.render import print_json, stdout, styled_status
from refund_poller.cli.target import Target, resolve_target
from refund_poller.cli.timeline import Step, tail_steps
from refund_poller.cli.windows import WindowTrace, refund_windows

# One character per poll on the strip, by the answer's status; x a failed attempt.
MARKS = {"SUCCESS": "S", "FAIL": "F", "PROCESSING": "P", "NOT_FOUND": "N", "UNKNOWN": "?", "ERROR": "E"}
LEGEND = (
    "strip: one mark per poll: P processing, S success, F fail, N not found,\n"
    "       ? unknown, E error, x failed attempt; - waiting, . still to come,\n"
    "       : window deadline, | closed"
)
OUTCOME_WORDS = {
    "SUCCESS": "the refund succeeded",
    "FAIL": "the refund failed",
    "NOT_FOUND": "the provider did not find the refund",
    "UNRESOLVED": "the window closed without a final status",
    "TAIL": "no final status yet: the long tail goes on asking",
    "SUPERSEDED": "a newer window took over",
    "CONFLICT": "the provider contradicted the final status (kept)",
    "ERROR": "polling stopped with an error",
    "RUNNING": "polling",
}
_STEP_COLUMNS = 44  # time, poll, answer and decision before the detail
Follow = Annotated[
    bool,
    typer.Option("--follow", "-f", help="Keep printing new polls and windows until the refund's window closes."),
]


def trace(
    provider: options.Provider,
    refund_id: options.RefundId = None,
    refund_request_id: options.RefundRequestId = None,
    merchant: options.Merchant = "default",
    follow: Follow = False,
    as_json: options.Json = False,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Show how a refund was polled: every polling window in order, each poll's time, answer and decision.

    A refund sent again (UNRESOLVED, or a forced re-poll) has several windows, one execution each
    (`…-g1-…`, `…-g2-…`): all are shown, oldest first, each with its outcome (SUCCESS, FAIL, NOT_FOUND,
    UNRESOLVED, ERROR, CONFLICT, SUPERSEDED), a strip (a mark per poll, `-` for the waits, `|` the close) and,
    while it runs, the next planned poll and when the window closes. `--follow` keeps printing until the window
    closes (and waits for a refund still queued). A refund final at the first inquiry has no execution: the
    stored item is shown. On AWS the Step Functions console URL of each execution is printed; EXPRESS
    executions are read from the state machine's CloudWatch Logs group (Logging level ALL with
    IncludeExecutionData).

    Examples:

        refund-poller trace --provider antom --refund-request-id processing2-success--r1

        refund-poller trace --provider antom --refund-request-id processing2-success--r1 --follow

        refund-poller trace --provider alphapay --refund-id notfound2-success--r2 --json

        refund-poller trace --provider antom --refund-id 2024010112345 --stack-name refund-poller --region eu-west-1
    """
    check_lookup(provider, refund_id, refund_request_id)
    if follow and as_json:
        fail("--follow prints as the refund is polled; --json prints once", hint="use one of them")
    target = resolve_target(stack_name, profile, region, endpoint_url)
    if follow:
        _follow(target, provider, merchant, refund_id, refund_request_id)
        return
    found = find_keyed_item(target, provider, merchant, refund_id, refund_request_id)
    if found is None:
        missing(target, provider, merchant, refund_id, refund_request_id)
    key, item = found
    if as_json:
        windows, notes = refund_windows(target, key, item)
        print_json(_as_json(target, item, windows, notes))
        return
    print_trace(target, key, item)


def print_trace(target: Target, key: str, item: dict[str, Any]) -> None:
    """The refund's windows for people (also the demo's closing example)."""
    windows, notes = refund_windows(target, key, item)
    _print_title(item)
    if not windows:
        _print_without_execution(item, notes)
        _print_tail(item)
        return
    for n, window in enumerate(windows, 1):
        _print_header(window, n, len(windows))
        stdout.print(_strip(window), markup=False)
        for line in _step_lines(window.steps):
            stdout.print(line, markup=False)
        _print_footer(target, window)
    if not item.get("executionArn") and windows:
        stdout.print("latest window: final at the first inquiry, no execution (see `refund-poller status`)")
    _print_tail(item)
    for note in notes:
        stdout.print(f"note      {note}", markup=False)
    stdout.print(LEGEND, style="dim", markup=False)


def _print_title(item: dict[str, Any]) -> None:
    ids = " / ".join(str(item[k]) for k in ("refundRequestId", "refundId") if item.get(k))
    status = str(item.get("status") or "-")
    title = f"{_escape(str(item.get('provider')))}/{_escape(str(item.get('merchant')))} {_escape(ids)}"
    stdout.print(title, soft_wrap=False)
    stdout.print(f"{styled_status(status)}  {_escape(meaning(item))}".rstrip(), soft_wrap=False)


def _print_header(window: WindowTrace, n: int, count: int) -> None:
    generation = f"g{window.generation}" if window.generation else "g?"
    opened = _clock(window.steps[0].time) if window.steps else "?"
    head = f"window {n}/{count}  {generation} {str(window.window_id or '')[:8]}  {opened}"
    if window.running:
        stdout.print(f"\n{head} →  [cyan]RUNNING[/]", highlight=False)
        stdout.print("  " + _plan(window), markup=False)
        return
    closed = _clock(window.execution.get("stopDate"))
    words = OUTCOME_WORDS.get(window.outcome, "")
    stdout.print(f"\n{head} → {closed}  {styled_status(window.outcome)}: {words}", soft_wrap=False)


def _plan(window: WindowTrace) -> str:
    now = time.time()
    parts = []
    if window.next_poll_at:
        parts.append(f"next poll ≈ {_clock(window.next_poll_at)} ({ago(now - window.next_poll_at)})")
    if window.deadline:
        parts.append(f"window closes at {_clock(window.deadline)} ({ago(now - window.deadline)})")
    return ", ".join(parts) or "waiting for the next poll"


def _print_footer(target: Target, window: WindowTrace) -> None:
    arn = str(window.execution.get("executionArn"))
    line = f"  execution {arn}"
    # The whole ARN where it fits; else the execution's name (what the console searches), which is unique too.
    if len(line) <= stdout.width:
        stdout.print(line, markup=False)
    else:  # the execution's name, which the console searches, on a line of its own (at most 80 characters)
        stdout.print(f"  execution (name):\n{arn.split(':')[7]}", markup=False)
    if window.execution.get("historySource") != "Step Functions execution history":
        stdout.print(f"  history   {window.execution.get('historySource')}", markup=False)
    for note in window.execution.get("notes", []):
        stdout.print(f"  note      {note}", markup=False)
    console = None if ":express:" in arn else target.console_url(arn)
    if console:
        stdout.print(f"  console   {console}", markup=False)


def _step_lines(steps: list[Step], previous: Step | None = None) -> list[str]:
    """One line per step, the detail wrapped under its column; parts of the detail the step before said too are
    left out (a long PROCESSING stretch says its reason once)."""
    width = max(stdout.width, 60)
    lines = []
    for step in steps:
        said = previous.detail.split("; ") if previous and previous.detail else []
        detail = "; ".join(part for part in step.detail.split("; ") if part and part not in said)
        poll = str(step.poll) if step.poll is not None else ""
        status = step.status if step.poll is not None else "end"
        head = f"  {_clock(step.time, millis=True):<12}  {poll:>3}  {status:<10}  {step.decision:<10}"
        wrapped = textwrap.wrap(detail, width=width - _STEP_COLUMNS - 1) or [""]
        lines.append(f"{head} {wrapped[0]}".rstrip())
        lines += [" " * (_STEP_COLUMNS + 1) + more for more in wrapped[1:]]
        previous = step
    return lines


def _strip(window: WindowTrace, width: int | None = None) -> str:
    """The window drawn on one line: time runs left to right from the first poll to the deadline (or the close)."""
    cells = min(max((width or stdout.width) - 6, 20), 70)
    times = [(_epoch(step.time), step) for step in window.steps]
    if not times:
        return "  (no polls recorded)"
    start = times[0][0]
    stop = window.execution.get("stopDate")
    end = _epoch(stop) if stop else time.time()
    deadline = window.deadline or end
    span = max(max(deadline, end) - start, 1.0)

    def at(moment: float) -> int:
        return min(cells - 1, max(0, round((moment - start) / span * (cells - 1))))

    line = [" "] * (cells + 1)
    for n in range(at(end) + 1):
        line[n] = "-"
    if window.running:
        for n in range(at(end) + 1, at(deadline) + 1):
            line[n] = "."
    line[at(deadline)] = ":"
    for moment, step in times:
        if step.poll is not None:
            line[at(moment)] = MARKS.get(step.status, "?")
        elif step.decision.startswith("retry"):
            line[at(moment)] = "x"
    if not window.running:
        line[min(at(end) + 1, cells)] = "|"
    return "  " + "".join(line).rstrip()


def _print_tail(item: dict[str, Any]) -> None:
    """The long tail's attempts after the window (docs/long-tail.md), and the next planned one."""
    steps = tail_steps(item)
    if not steps:
        return
    plan = item.get("tailPlan") or {}
    stdout.print(
        f"\nlong tail  schedule {plan.get('scheduleSeconds')} s, max age {plan.get('maxAgeSeconds')} s"
        + ("  gave up" if item.get("gaveUp") else ""),
        markup=False,
    )
    for line in _step_lines(steps):
        stdout.print(line, markup=False)


def _print_without_execution(item: dict[str, Any], notes: list[str]) -> None:
    stdout.print("recorded by StartInquiry at the first inquiry: no polling execution was needed")
    first = item.get("firstPollAt")
    observation = item.get("lastObservation") or {}
    stdout.print(
        f"  {_clock(first, millis=True)}  1  {observation.get('status', item.get('status'))}  done",
        markup=False,
    )
    for note in notes:
        stdout.print(f"note      {note}", markup=False)


def _follow(target: Target, provider: str, merchant: str, refund_id: str | None, rr_id: str | None) -> None:
    """Append-only output (works in a pipe too): headers, then each new poll as it is made, then each window's
    strip and outcome when it closes. Ends when the refund's window is closed."""
    printed: dict[str, int] = {}
    closed: set[str] = set()
    waiting_said = False
    try:
        while True:
            found = find_keyed_item(target, provider, merchant, refund_id, rr_id)
            if found is None:
                if not waiting_said:
                    stdout.print("no stored item yet: waiting for the stack to pick the refund up (Ctrl-C stops)")
                    waiting_said = True
                time.sleep(1)
                continue
            key, item = found
            if not printed and not closed:
                _print_title(item)
            windows, _ = refund_windows(target, key, item)
            for n, window in enumerate(windows, 1):
                arn = str(window.execution.get("executionArn"))
                if arn in closed:
                    continue
                if arn not in printed:
                    _print_header(window, n, len(windows))
                    printed[arn] = 0
                new = window.steps[printed[arn] :]
                before = window.steps[printed[arn] - 1] if printed[arn] else None
                for line in _step_lines(new, before):
                    stdout.print(line, markup=False)
                printed[arn] = len(window.steps)
                if new and window.running:
                    stdout.print("  " + _plan(window), style="dim", markup=False)
                if not window.running:
                    stdout.print(_strip(window), markup=False)
                    words = OUTCOME_WORDS.get(window.outcome, "")
                    stdout.print(f"  → {styled_status(window.outcome)} {words}".rstrip())
                    _print_footer(target, window)
                    closed.add(arn)
            if item.get("pollingState") != "POLLING" and not any(w.running for w in windows):
                if not windows:
                    _print_without_execution(item, [])
                closing = f"window closed: {styled_status(str(item.get('status')))}  {_escape(meaning(item))}"
                stdout.print(closing, soft_wrap=False)
                return
            time.sleep(1)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _as_json(target: Target, item: dict[str, Any], windows: list[WindowTrace], notes: list[str]) -> dict[str, Any]:
    shown = [
        w.to_json(None if ":express:" in str(w.execution.get("executionArn")) else _console(target, w)) for w in windows
    ]
    latest = shown[-1] if shown and item.get("executionArn") else None
    tail = [step.to_json() for step in tail_steps(item)]
    return {
        "outcome": item.get("status"),
        "meaning": meaning(item),
        "windows": shown,
        # The current window's execution and steps, as before several windows were shown.
        "execution": latest["execution"] if latest else None,
        "steps": (latest["steps"] if latest else []) + tail,  # the long tail's attempts follow the window's polls
        "tail": tail,
        "note": None if latest else "recorded by StartInquiry at the first inquiry: no polling execution was needed",
        "notes": notes,
        "item": json_item(item),
    }


def _console(target: Target, window: WindowTrace) -> str | None:
    return target.console_url(str(window.execution.get("executionArn")))


def _clock(value: Any, millis: bool = False) -> str:
    """HH:MM:SS[.mmm]Z of a time (ISO string or datetime), UTC."""
    if value is None:
        return "?"
    text = iso(value.timestamp()) if isinstance(value, datetime) else iso(value)
    return text[11:23] if millis else text[11:19] + "Z"


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
