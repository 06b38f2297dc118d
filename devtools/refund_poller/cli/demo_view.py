"""How the demo shows progress: a live table on a terminal, plain lines otherwise; then the summary."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from refund_poller.cli.demo_plan import DemoRefund, Progress
from refund_poller.cli.render import styled_status

Rows = list[tuple[DemoRefund, Progress]]


# Short provider names for narrow terminals.
PROVIDER_SHORT = {"antom": "antom", "alipayplus": "alipay+", "alphapay": "alphapay"}
WIDE = 100  # from this width on, the scenario column is shown too


def progress_table(rows: Rows, elapsed: float, width: int = 80) -> Table:
    """The live table: refunds still in progress first, so that a 24-line terminal shows what moves; ids shown
    by their script (the part before ``--``, the run's suffix is in the title)."""
    done = sum(1 for _, p in rows if p.done)
    suffix = rows[0][0].suffix if rows else ""
    title = f"refund-poller demo: {done}/{len(rows)} done, {elapsed:.0f} s (ids: <script>--demo-{suffix})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    wide = width >= WIDE
    _columns(table, "provider", "refund", *(["scenario"] if wide else []), "status", "polls", "outcome")
    for refund, progress in in_progress_first(rows):
        table.add_row(
            PROVIDER_SHORT.get(refund.provider, refund.provider),
            short_refund(refund),
            *([refund.label] if wide else []),
            styled_status(progress.status),
            str(progress.polls or ""),
            _outcome(refund, progress),
        )
    return table


# Columns that must stay whole; the last column (outcome, notes) gives way, cut with an ellipsis.
_MIN_WIDTHS = {"provider": 8, "refund": 19, "status": 10, "expected": 10, "actual": 10, "polls": 5, "": 1}


def _columns(table: Table, *names: str) -> None:
    for name in names:
        table.add_column(name, no_wrap=True, overflow="ellipsis", min_width=_MIN_WIDTHS.get(name), max_width=28)


def in_progress_first(rows: Rows) -> Rows:
    return sorted(rows, key=lambda row: row[1].done)  # stable: the plan's order within each group


def short_refund(refund: DemoRefund) -> str:
    """The refund id without the run's suffix (the same for all): its script, and ``(x2)`` for a duplicate."""
    name = refund.script + (" (invalid)" if refund.invalid else "")
    return name + (f" (x{refund.copies})" if refund.copies > 1 else "")


def _outcome(refund: DemoRefund, progress: Progress) -> str:
    if not progress.done:
        return f"[dim]expect {refund.expected}[/]"
    mark = "[green]✓[/]" if progress.judged(refund) else f"[red]✗ expected {refund.expected}[/]"
    return f"{mark} {_escape(progress.note)}".rstrip()


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
        self._live.update(progress_table(rows, time.monotonic() - self._started, self._live.console.width))


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


def summary_table(rows: Rows, width: int = 80) -> Table:
    table = Table(title="summary", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    wide = width >= WIDE
    _columns(table, "provider", "refund", *(["scenario"] if wide else []), "expected", "actual", "")
    for refund, progress in rows:
        ok = "[green]✓[/]" if progress.judged(refund) else "[red]✗[/]"
        actual = progress.status if progress.done else f"{progress.status} (not done)"
        table.add_row(
            PROVIDER_SHORT.get(refund.provider, refund.provider),
            short_refund(refund),
            *([refund.label] if wide else []),
            refund.expected,
            styled_status(actual),
            ok,
        )
    return table


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


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
                "tailAttempts": p.tail_attempts,
                "note": p.note,
                "trace": r.trace_command(),
            }
            for r, p in rows
        ],
    }
