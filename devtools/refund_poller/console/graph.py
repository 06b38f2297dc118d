"""The state machine drawn from its ASL file as SVG, with the path one execution took highlighted.

The file is read at every request, so the drawing follows the ASL in the working tree. Every text goes in through
``Markup(template).format``, which escapes it. Layout: states in rows by their longest distance from StartAt once
the loops' back edges are set aside (the poll loop reads top to bottom); a forward edge runs down from its state's
bottom to its target's top, a back edge curves round on the left.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from markupsafe import Markup

BOX_WIDTH = 190
BOX_HEIGHT = 34
COLUMN = 215
ROW = 62
MARGIN = 40


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str  # "", "retry"/"catch" or a Choice's branch


def read_definition(path: Path) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return definition


def edges(definition: dict[str, Any]) -> list[Edge]:
    found: list[Edge] = []
    for name, state in definition["States"].items():
        for choice in state.get("Choices", []):
            found.append(Edge(name, choice["Next"], _choice_label(choice)))
        if state.get("Default"):
            found.append(Edge(name, state["Default"], "default"))
        for catch in state.get("Catch", []):
            found.append(Edge(name, catch["Next"], "catch " + ",".join(catch.get("ErrorEquals", []))[:28]))
        if state.get("Next"):
            found.append(Edge(name, state["Next"], ""))
    return found


def _choice_label(choice: dict[str, Any]) -> str:
    for test in ("StringEquals", "IsPresent", "NumericLessThanEqualsPath"):
        if test in choice:
            return f"{test} {choice[test]}"[:28]
    return "rule"


def layers(definition: dict[str, Any], all_edges: list[Edge]) -> dict[str, int]:
    """Each state's row: its longest distance from StartAt along edges that do not close a loop."""
    states = list(definition["States"])
    out: dict[str, list[str]] = {name: [] for name in states}
    for edge in all_edges:
        out[edge.source].append(edge.target)
    back: set[tuple[str, str]] = set()
    seen: set[str] = set()
    on_path: list[str] = []

    def visit(name: str) -> None:  # depth-first: an edge to a state on the current path closes a loop
        seen.add(name)
        on_path.append(name)
        for target in out[name]:
            if target in on_path:
                back.add((name, target))
            elif target not in seen:
                visit(target)
        on_path.pop()

    visit(definition["StartAt"])
    row = {name: 0 for name in states}
    for _ in states:  # longest path in the acyclic rest: relax as often as there are states
        for edge in all_edges:
            if (edge.source, edge.target) not in back and edge.target != definition["StartAt"]:
                row[edge.target] = max(row[edge.target], row[edge.source] + 1)
    return row


def draw(definition: dict[str, Any], path: Iterable[str] = (), outcome: str | None = None) -> Markup:
    """The SVG of the state machine; the states in ``path`` (entered in that order) and the transitions between
    consecutive ones are highlighted, each state with how many times it was entered. The last state entered is
    coloured by ``outcome`` (the refund's status): a Succeed state reached by an UNRESOLVED refund is not green."""
    all_edges = edges(definition)
    row = layers(definition, all_edges)
    positions = _positions(definition, row)
    entered = list(path)
    visits: dict[str, int] = {}
    for name in entered:
        visits[name] = visits.get(name, 0) + 1
    taken = set(pairwise(entered))
    last = entered[-1] if entered else None
    width = max(x for x, _ in positions.values()) + BOX_WIDTH + MARGIN
    height = max(y for _, y in positions.values()) + BOX_HEIGHT + MARGIN
    parts = [
        Markup(
            '<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {width} {height}" role="img" '
            'aria-label="state machine graph"><defs>'
            '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker>'
            '<marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead taken"/></marker></defs>'
        ).format(width=width, height=height)
    ]
    drawn: set[tuple[str, str]] = set()
    for edge in all_edges:
        if (edge.source, edge.target) in drawn:
            continue
        drawn.add((edge.source, edge.target))
        parts.append(_edge(edge, positions, row, (edge.source, edge.target) in taken))
    for name, state in definition["States"].items():
        parts.append(_box(name, state, positions[name], visits.get(name, 0), outcome if name == last else None))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _positions(definition: dict[str, Any], row: dict[str, int]) -> dict[str, tuple[int, int]]:
    by_row: dict[int, list[str]] = {}
    for name in definition["States"]:  # file order within a row
        by_row.setdefault(row[name], []).append(name)
    widest = max(len(names) for names in by_row.values())
    positions = {}
    for number, names in by_row.items():
        offset = (widest - len(names)) * COLUMN // 2 + MARGIN * 2
        for column, name in enumerate(names):
            positions[name] = (offset + column * COLUMN, MARGIN + number * ROW)
    return positions


def _edge(edge: Edge, positions: dict[str, tuple[int, int]], row: dict[str, int], taken: bool) -> Markup:
    (x1, y1), (x2, y2) = positions[edge.source], positions[edge.target]
    kind = "edge taken" if taken else "edge"
    marker = "url(#arrow-taken)" if taken else "url(#arrow)"
    if row[edge.target] > row[edge.source]:
        start = (x1 + BOX_WIDTH // 2, y1 + BOX_HEIGHT)
        end = (x2 + BOX_WIDTH // 2, y2)
        middle = (start[1] + end[1]) // 2
        d = f"M{start[0]},{start[1]} C{start[0]},{middle} {end[0]},{middle} {end[0]},{end[1]}"
        label_at = ((start[0] + end[0]) // 2, middle)
    else:  # a loop back (or a row's neighbour): round the left of both boxes
        start = (x1, y1 + BOX_HEIGHT // 2)
        end = (x2, y2 + BOX_HEIGHT // 2)
        bend = min(x1, x2) - MARGIN - 10 * abs(row[edge.source] - row[edge.target])
        d = f"M{start[0]},{start[1]} C{bend},{start[1]} {bend},{end[1]} {end[0]},{end[1]}"
        label_at = (bend + 30, (start[1] + end[1]) // 2)
    title = f"{edge.source} → {edge.target}" + (f" ({edge.label})" if edge.label else "")
    line = Markup('<path class="{kind}" d="{d}" marker-end="{marker}"><title>{title}</title></path>')
    label = Markup('<text class="edge-label" x="{x}" y="{y}">{label}</text>')
    return line.format(kind=kind, d=d, marker=marker, title=title) + (
        label.format(x=label_at[0], y=label_at[1], label=edge.label) if taken else ""
    )


def _box(name: str, state: dict[str, Any], at: tuple[int, int], visits: int, outcome: str | None) -> Markup:
    """A state's box; ``outcome`` only for the last state entered."""
    x, y = at
    kind = str(state.get("Type", "")).lower()
    last = f"last outcome-{outcome}" if outcome is not None else ""
    classes = " ".join(c for c in ("state", f"state-{kind}", "visited" if visits else "", last) if c)
    rx = 17 if kind in {"choice", "succeed", "fail"} else 4
    tip = f"{name} ({state.get('Type')})" + (f": {state['Comment']}" if state.get("Comment") else "")
    badge = Markup(
        '<circle class="badge" cx="{cx}" cy="{y}" r="11"/><text class="badge-text" x="{cx}" y="{ty}">{visits}</text>'
    ).format(cx=x + BOX_WIDTH, y=y, ty=y + 4, visits=visits)
    box = Markup(
        '<g class="{classes}" data-state="{name}"><title>{tip}</title>'
        '<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="{rx}"/>'
        '<text x="{tx}" y="{ty}">{name}</text>{badge}</g>'
    )
    return box.format(
        classes=classes, name=name, tip=tip, x=x, y=y, width=BOX_WIDTH, height=BOX_HEIGHT, rx=rx,
        tx=x + BOX_WIDTH // 2, ty=y + BOX_HEIGHT // 2 + 5, badge=badge if visits else "",
    )  # fmt: skip
