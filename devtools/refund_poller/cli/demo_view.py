"""How the demo shows progress: a live table on a terminal, plain lines otherwise; then the summary."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from refund_poller.cli.demo_plan import DemoRefund, Progress
from refund_poller.cli.render import styled_status

Rows = list[tuple[DemoRefund, Progress]]


def progress_table(rows: Rows, elapsed: float) -> Table:
    done = sum(1 for _, p in rows if p.done)
    table = Table(title=f"refund-poller demo: {done}/{len(rows)} done, {elapsed:.0f} s", title_justify="left")
    for column in ("provider", "refund", "scenario", "status", "polls", "outcome"):
        table.add_column(column, overflow="fold")
    for refund, progress in rows:
        table.add_row(
            refund.provider,
            refund.refund,
            refund.label,
            styled_status(progress.status),
            str(progress.polls or ""),
            _outcome(refund, progress),
        )
    return table


def _outcome(refund: DemoRefund, progress: Progress) -> str:
    if not progress.done:
        return f"[dim]expecting {refund.expected}[/]"
    mark = "[green]✓[/]" if progress.judged(refund) else f"[red]✗ expected {refund.expected}[/]"
    return f"{mark} {progress.note}".rstrip()


class LiveView:
    """A rich live table, redrawn as refunds change."""

    def __init__(self, console: Console) -> None:
        self._live = Live(console=console, refresh_per_second=4, transient=False)
        self._started = time.monotonic()

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def update(self, rows: Rows) -> None:
        self._live.update(progress_table(rows, time.monotonic() - self._started))


class PlainView:
    """One line per change, for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._seen: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._started = time.monotonic()

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, rows: Rows) -> None:
        for refund, progress in rows:
            shown = (progress.status, progress.polls, progress.done)
            if self._seen.get((refund.provider, refund.refund)) == shown:
                continue
            self._seen[(refund.provider, refund.refund)] = shown
            elapsed = time.monotonic() - self._started
            end = " (done)" if progress.done else ""
            line = f"{elapsed:5.1f}s {refund.provider:<10} {refund.refund:<40} {progress.status:<10}"
            line += f" polls={progress.polls}"
            self._console.print(line + end, markup=False)


def summary_table(rows: Rows) -> Table:
    table = Table(title="summary", title_justify="left")
    for column in ("provider", "refund", "scenario", "expected", "actual", ""):
        table.add_column(column, overflow="fold")
    for refund, progress in rows:
        ok = "[green]✓[/]" if progress.judged(refund) else "[red]✗[/]"
        actual = progress.status if progress.done else f"{progress.status} (not done)"
        table.add_row(refund.provider, refund.refund, refund.label, refund.expected, styled_status(actual), ok)
    return table


def summary_json(rows: Rows, elapsed: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for _, progress in rows:
        counts[progress.status] = counts.get(progress.status, 0) + 1
    return {
        "ok": all(p.judged(r) for r, p in rows),
        "elapsedSeconds": round(elapsed, 1),
        "expectedCount": len(rows),
        "asExpected": sum(1 for r, p in rows if p.judged(r)),
        "counts": counts,
        "refunds": [
            {
                "scenario": r.label,
                "provider": r.provider,
                "refund": r.refund,
                "expected": r.expected,
                "actual": p.status,
                "done": p.done,
                "asExpected": p.judged(r),
                "polls": p.polls,
                "note": p.note,
                "trace": r.trace_command(),
            }
            for r, p in rows
        ],
    }
