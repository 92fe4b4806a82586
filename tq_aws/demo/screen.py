"""Drawing the shop with Rich: the entity status table, a live frame on a terminal, and a plain
running log of events anywhere else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tq_aws.core.flows import FlowStatus
from tq_aws.core.projections import ProjectionRow
from tq_aws.demo.monitor import Event, ShopMonitor, clip, flow_counts, hms, short

logger = logging.getLogger(__name__)

FRAME_PAUSE = 0.7
"""Seconds each frame stays on screen (none with ``fast`` or when output is not a terminal)."""


STATUS_STYLES = {
    "scheduled": "blue",
    "processing": "yellow",
    "executed": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "ignored": "dim",
    "expired": "dim",
}
FLOW_STYLES = {"open": "yellow", "joined": "green", "aborted": "bold red", "timed_out": "bold red"}


@dataclass(slots=True)
class Snapshot:
    """What one frame shows."""

    now: datetime
    caption: str
    rows: dict[str, list[ProjectionRow]]
    stats: dict[str, int]
    flows: dict[str, FlowStatus] = field(default_factory=dict)
    """Flow id -> ``TaskQueue.flow_status``, of every flow started so far."""


def details(row: ProjectionRow, monitor: ShopMonitor, now: datetime) -> str:
    """The last column: result, error, pending retry or due time."""
    pending = monitor.retrying.get(row.task_id)
    if row.status == "executed":
        return short(row.result)
    if row.status == "cancelled":
        return "cancelled before it ran"
    if row.error:
        return row.error
    if pending is not None:
        return f"attempt {pending.attempt} failed: {pending.error}; retry at {hms(pending.at)}"
    due = monitor.due.get(row.task_id)
    if row.status == "scheduled" and due is not None and due > now:
        return f"due {hms(due)}"
    return ""


TASK_WIDTH = 17
"""The task column's narrowest width; it grows to its longest name."""
TABLE_FIXED_WIDTH = 59
"""The first four columns (the task column at ``TASK_WIDTH``), the gaps between columns, and a
panel's borders."""


def row_cells(row: ProjectionRow, snapshot: Snapshot, monitor: ShopMonitor) -> list[Text | str]:
    """Task, status, attempts and details of one row. A flow's own row (``task_id`` is the flow
    id) shows the flow's state and counts from ``flow_status``."""
    flow = snapshot.flows.get(row.task_id)
    if flow is not None:
        return [
            f"flow ({flow.total} steps)",
            Text(flow.state, style=FLOW_STYLES.get(flow.state, "")),
            "",
            flow_counts(flow),
        ]
    index = monitor.step_index.get(row.task_id)
    number = "" if index is None else f" #{index + 1}"
    tries = monitor.attempts.get(row.task_id, 0)
    return [
        f"{row.queue_id}/{row.task_type}{number}",
        Text(row.status, style=STATUS_STYLES.get(row.status, "")),
        str(tries) if tries else "",
        details(row, monitor, snapshot.now),
    ]


def steps_cells(rows: Sequence[ProjectionRow]) -> list[Text | str]:
    """One line for a flow's step rows: how many are at each status."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    return [f"{rows[0].queue_id}/{rows[0].task_type} x{len(rows)}", "", "", summary]


def status_table(
    snapshot: Snapshot,
    monitor: ShopMonitor,
    *,
    width: int | None = None,
    collapse_steps: bool = False,
) -> Table:
    """The entity status table; with ``width``, details are cut to fit one line per row, and
    ``collapse_steps`` shows each flow's steps as one line."""
    lines: dict[str, list[list[Text | str]]] = {}
    for name, rows in snapshot.rows.items():
        cells = lines[name] = []
        steps: list[ProjectionRow] = []
        for row in rows:
            if collapse_steps and row.task_id in monitor.step_index:
                steps.append(row)
                continue
            if steps:
                cells.append(steps_cells(steps))
                steps = []
            cells.append(row_cells(row, snapshot, monitor))
        if steps:
            cells.append(steps_cells(steps))
    task_width = max([TASK_WIDTH, *(len(str(c[0])) for cells in lines.values() for c in cells)])
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("entity", style="bold", no_wrap=True, min_width=8)
    table.add_column("task", no_wrap=True, min_width=task_width)
    table.add_column("status", no_wrap=True, min_width=10)
    table.add_column("attempts", justify="right", no_wrap=True, min_width=8)
    table.add_column("details", overflow="fold", no_wrap=width is not None)
    fixed = TABLE_FIXED_WIDTH + task_width - TASK_WIDTH
    cut = None if width is None else max(8, width - fixed)
    for name, cells in lines.items():
        for i, (task, status, tries, info) in enumerate(cells):
            table.add_row(name if i == 0 else "", task, status, tries, clip(str(info), cut))
        if not cells:
            table.add_row(name, Text("no tasks yet", style="dim"), "", "", "")
    return table


def header(snapshot: Snapshot) -> Panel:
    s = snapshot.stats
    counters = "  ".join(
        f"{key} {s[key]}"
        for key in ("added", "batches", "executed", "retried", "failed", "cancelled")
    )
    body = Text.assemble(
        (hms(snapshot.now), "bold cyan"),
        "   ",
        (counters, ""),
        "\n",
        (snapshot.caption, "bold"),
    )
    return Panel(
        body,
        title="tq-aws demo: a morning at a small shop (simulated clock)",
        title_align="left",
        box=box.ROUNDED,
    )


def event_line(event: Event) -> Text:
    return Text.assemble(
        (hms(event.at), "dim"), " ", (f"{event.kind:<7}", event.style), " ", event.text
    )


def frame(
    snapshot: Snapshot, monitor: ShopMonitor, console: Console, *, last: bool = False
) -> RenderableType:
    """One live frame, fitted to the screen: the event log gets the lines the rest leaves, and
    a flow's steps fold into one line when the screen is short (except in the ``last`` frame,
    which stays on screen whole)."""
    width, height = console.size
    top = header(snapshot)
    top_lines = len(console.render_lines(top, console.options.update_width(width)))

    def room_under(table: Table) -> int:
        # the header, the table panel (rows + 4), the event panel (lines + 2), the cursor's line
        return min(12, height - top_lines - table.row_count - 7)

    table = status_table(snapshot, monitor, width=width)
    if room_under(table) < 3 and not last:
        table = status_table(snapshot, monitor, width=width, collapse_steps=True)
    parts: list[RenderableType] = [top, Panel(table, title="entity status", title_align="left")]
    room = room_under(table)
    if room >= 3:
        lines = [event_line(e) for e in list(monitor.events)[-room:]]
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        log = Group(*lines) if lines else Text("no events yet", "dim")
        parts.append(Panel(log, title="lifecycle events and logs", title_align="left"))
    return Group(*parts)


class Screen:
    """A live view on a terminal; a plain running log of events anywhere else."""

    def __init__(self, console: Console, monitor: ShopMonitor, *, fast: bool):
        self.console = console
        self.monitor = monitor
        self.live_mode = console.is_terminal and not console.is_dumb_terminal
        self.pause = 0.0 if fast or not self.live_mode else FRAME_PAUSE
        self._live: Live | None = None
        self._printed = 0

    def __enter__(self) -> Screen:
        if self.live_mode:
            self._live = Live(console=self.console, auto_refresh=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    async def show(self, snapshot: Snapshot, *, last: bool = False) -> None:
        if self._live is not None:
            view = frame(snapshot, self.monitor, self.console, last=last)
            self._live.update(view, refresh=True)
        else:
            events = list(self.monitor.events)
            caption = Text(f"[{hms(snapshot.now)}] {snapshot.caption}", style="bold")
            self.console.print(caption, soft_wrap=True)
            for event in events[self._printed :]:
                self.console.print(Text("    ").append_text(event_line(event)), soft_wrap=True)
            self._printed = len(events)
        if self.pause and not last:
            await asyncio.sleep(self.pause)
