"""A polling window as a timeline chart (SVG): time on the x axis, one mark per poll coloured by the provider's answer,
the waits as the gaps between them, failed attempts, the close, and a notification when one came."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup

from refund_poller.cli.timeline import Step

WIDTH = 900
HEIGHT = 96
LEFT = 30
RIGHT = 80  # room for the close's label
LANE = 44  # the marks' line
STATUSES = ("SUCCESS", "FAIL", "PROCESSING", "NOT_FOUND", "UNKNOWN", "ERROR", "UNRESOLVED")


@dataclass(frozen=True)
class Mark:
    at: float  # epoch seconds
    kind: str  # poll, attempt, close, notification
    status: str
    label: str


def marks(steps: list[Step], notification_at: str | None, closed_with: str | None) -> list[Mark]:
    """The chart's marks from a window's steps (refund_poller.cli.timeline): polls, failed attempts, the close."""
    found = []
    for step in steps:
        at = epoch(step.time)
        if at is None:
            continue
        if step.poll is not None:
            text = f"poll {step.poll}: {step.status}, {step.decision}" + (f"; {step.detail}" if step.detail else "")
            found.append(Mark(at, "poll", step.status, text))
        elif step.decision == "retry or give up":
            found.append(Mark(at, "attempt", "ERROR", f"failed attempt: {step.detail}"))
        else:
            outcome = closed_with or step.decision
            found.append(Mark(at, "close", outcome, f"closed: {outcome} (execution {step.decision})"))
    notified = epoch(notification_at) if notification_at else None
    if notified is not None:
        found.append(Mark(notified, "notification", "SUCCESS", "the provider's notification"))
    return sorted(found, key=lambda mark: mark.at)


def draw(found: list[Mark]) -> Markup:
    if not found:
        return Markup('<p class="muted">no polls recorded in this window</p>')
    start, end = found[0].at, max(found[-1].at, found[0].at + 1)
    scale = (WIDTH - LEFT - RIGHT) / (end - start)

    def x(at: float) -> float:
        return round(LEFT + (at - start) * scale, 1)

    parts = [
        Markup(
            '<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" role="img" '
            'aria-label="polls over time"><line class="axis" x1="{left}" y1="{lane}" x2="{right}" y2="{lane}"/>'
        ).format(width=WIDTH, height=HEIGHT, left=LEFT, right=WIDTH - RIGHT, lane=LANE)
    ]
    tick_mark = Markup(
        '<line class="tick" x1="{x}" y1="{y1}" x2="{x}" y2="{y2}"/>'
        '<text class="tick-label" x="{x}" y="{y3}">+{label}</text>'
    )
    for tick in _ticks(end - start):
        parts.append(
            tick_mark.format(x=x(start + tick), y1=LANE + 14, y2=LANE + 18, y3=LANE + 32, label=_seconds(tick))
        )
    for mark in found:
        status = mark.status if mark.status in STATUSES else "OTHER"
        place = {"at": x(mark.at), "lane": LANE, "top": LANE - 22, "bottom": LANE + 12}
        parts.append(_MARKS[mark.kind].format(**place, status=status, title=mark.label, text=mark.status))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


# One template per kind of mark; ``at`` and ``lane`` place it, ``title`` is its tooltip (format escapes every value).
_MARKS = {
    "poll": Markup('<circle class="poll status-{status}" cx="{at}" cy="{lane}" r="7"><title>{title}</title></circle>'),
    "attempt": Markup(
        '<path class="attempt" d="M{at},{lane} m-5,-5 l10,10 m-10,0 l10,-10"><title>{title}</title></path>'
    ),
    "close": Markup(
        '<g class="close status-{status}"><title>{title}</title><line x1="{at}" y1="{top}" x2="{at}" y2="{bottom}"/>'
        '<text x="{at}" y="{lane}" dy="-26">{text}</text></g>'
    ),
    "notification": Markup(
        '<g class="notification"><title>{title}</title><path d="M{at},{lane} m0,-30 l7,7 l-7,7 l-7,-7 z"/>'
        '<text x="{at}" y="{lane}" dy="-34">notification</text></g>'
    ),
}


def _ticks(span: float) -> list[float]:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if span / s <= 10), 7200)
    return [float(n * step) for n in range(int(span // step) + 1)]


def _seconds(value: float) -> str:
    whole = int(value)
    return f"{whole} s" if whole < 120 else f"{whole // 60} min"


def epoch(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() if iso else None
    except ValueError:
        return None
