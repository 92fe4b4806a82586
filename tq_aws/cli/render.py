"""How commands show things: Rich tables for people, ``--json`` for machines.

Times are ISO-8601 UTC; statuses have one colour each (failures in red); long values are cut
in tables and whole in JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

WIDE = 200
"""Columns for output that is not a terminal (pipes, files, tests): ids are never folded."""

STATUS_STYLES = {
    "scheduled": "cyan",
    "processing": "yellow",
    "executed": "green",
    "failed": "bold red",
    "succeeded": "green",
    "pending": "cyan",
    "success": "green",
    "fail": "bold red",
    "ignored": "magenta",
    "expired": "dim",
    "cancelled": "dim",
    "open": "blue",
    "joined": "green",
    "aborted": "bold red",
    "timed_out": "bold red",
}


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr): the terminal's width there, ``WIDE`` elsewhere."""
    found = Console(stderr=stderr, highlight=False)
    if found.is_terminal:
        return found
    return Console(stderr=stderr, highlight=False, width=WIDE)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def when(value: datetime | None) -> str:
    """``2026-03-01T12:00:00Z``, or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def short(value: Any, limit: int = 60) -> str:
    """A value as compact JSON, cut to ``limit`` characters (``-`` for nothing)."""
    if value is None or value == {}:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def jsonable(value: Any) -> Any:
    """Models, dataclasses and times as JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return when(value)
    return value


def emit_json(document: Any) -> None:
    """One JSON document on one line of stdout."""
    typer.echo(json.dumps(jsonable(document), ensure_ascii=False, default=str))


def table(title: str | Text | None, *columns: str) -> Table:
    """A table whose first column (an id) is never folded."""
    grid = Table(title=title, title_justify="left", header_style="bold")
    for n, name in enumerate(columns):
        grid.add_column(name, no_wrap=n == 0, overflow="fold")
    return grid


def add_row(grid: Table, *cells: str | Text) -> None:
    """A row of plain text: user data is never read as Rich markup."""
    grid.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def error_text(error: str | None) -> Text:
    return Text(short(error, 80), style="red") if error else Text("-")


__all__ = [
    "STATUS_STYLES",
    "WIDE",
    "add_row",
    "console",
    "emit_json",
    "error_text",
    "escape",
    "jsonable",
    "short",
    "status_text",
    "table",
    "when",
]
