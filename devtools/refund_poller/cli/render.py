"""Printing for the commands: JSON on stdout, rich tables for people."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

stdout = Console(soft_wrap=True, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, highlight=False)

STATUS_STYLES = {
    "SUCCESS": "green",
    "FAIL": "red",
    "ERROR": "bold red",
    "UNRESOLVED": "yellow",
    "NOT_FOUND": "magenta",
    "PROCESSING": "cyan",
    "UNKNOWN": "yellow",
    "REJECTED": "red",
}


def print_json(value: Any) -> None:
    """JSON on stdout, no markup (pipes into jq)."""
    print(json.dumps(value, indent=2, default=str))  # plain stdout on purpose


def styled_status(status: str | None) -> str:
    text = status or "-"
    style = STATUS_STYLES.get(text)
    return f"[{style}]{text}[/]" if style else text


def fields_table(title: str, fields: Mapping[str, Any]) -> Table:
    """A two-column table: one row per field, nested values as compact JSON."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in fields.items():
        if value is None:
            continue
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        table.add_row(name, styled_status(shown) if name == "status" else _escape(shown))
    return table


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
