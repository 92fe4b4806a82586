"""The story: ``play`` runs the morning on a ``ManualClock`` step by step, and the checks say
whether it ended as the story tells (``problems``); ``run_demo`` is ``tq-aws demo``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.backends.memory import MemoryScheduler
from tq_aws.core.flows import FlowStatus
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Task
from tq_aws.demo.monitor import (
    ShopMonitor,
    describe_runs,
    flow_name,
    hms,
    library_logs_to,
    short,
)
from tq_aws.demo.screen import Screen, Snapshot, status_table
from tq_aws.demo.shop import (
    CUSTOMERS,
    NEWSLETTER_DELAY,
    OPENING,
    ORDERS,
    SHOP,
    UNSUBSCRIBE_AT,
    build_shop,
    customer,
    money,
    order_tasks,
)
from tq_aws.testing.clock import ManualClock

logger = logging.getLogger(__name__)

MAX_STEPS = 50
"""A guard: the story needs about a dozen steps of the clock."""


@dataclass(slots=True)
class Step:
    at: datetime
    caption: str
    action: Callable[[], Awaitable[None]]


@dataclass(slots=True)
class ShopDay:
    """The end state of a run, for the summary and for tests."""

    app: TaskQueue
    monitor: ShopMonitor
    task_ids: dict[str, str]
    """``<customer>/<type>`` -> task id of the tasks added at opening."""
    rows: dict[str, list[ProjectionRow]] = field(default_factory=dict)
    flows: dict[str, FlowStatus] = field(default_factory=dict)
    """Flow id -> its final ``flow_status``."""
    joins: dict[str, Task | None] = field(default_factory=dict)
    """Flow id -> its join task as stored (``get_task``)."""


ENTITIES = {**{name: customer(name) for name in CUSTOMERS}, "shop": SHOP}


def story_order(rows: list[ProjectionRow], monitor: ShopMonitor) -> list[ProjectionRow]:
    """Rows as ``entity_status`` gives them (oldest first), with a flow's own row before its
    steps and the steps by index when they were created at the same moment."""

    def key(row: ProjectionRow) -> tuple[datetime, int]:
        if row.task_id in monitor.flows:
            return (row.created_at, 1)
        index = monitor.step_index.get(row.task_id)
        return (row.created_at, 0 if index is None else 2 + index)

    return sorted(rows, key=key)


async def snapshot(app: TaskQueue, monitor: ShopMonitor, caption: str) -> Snapshot:
    """What the shop looks like now; an open flow's changed counts also go to the event log."""
    rows = {
        name: story_order(await app.entity_status(entity), monitor)
        for name, entity in ENTITIES.items()
    }
    flows: dict[str, FlowStatus] = {}
    for flow_id in monitor.flows:
        status = await app.flow_status(flow_id)
        if status is not None:
            flows[flow_id] = status
    monitor.note_progress(flows)
    return Snapshot(app.clock.now(), caption, rows, app.stats.as_dict(), flows)


async def play(console: Console, *, fast: bool = False) -> ShopDay:
    """Run the story on ``console`` and return its end state."""
    clock = ManualClock(start=OPENING)
    app = build_shop(clock)
    monitor = ShopMonitor(clock)
    app.add_listener(monitor)
    scheduler = app.scheduler
    assert isinstance(scheduler, MemoryScheduler), "the demo runs on the embedded default"
    day = ShopDay(app, monitor, {})

    async def unsubscribe() -> None:
        await app.cancel(day.task_ids["dave/newsletter"])

    script = [
        Step(
            UNSUBSCRIBE_AT,
            "Dave unsubscribes: his newsletter is cancelled before it is due",
            unsubscribe,
        )
    ]
    with library_logs_to(monitor), Screen(console, monitor, fast=fast) as screen:
        tasks = order_tasks()
        ids = await app.add_tasks(tasks)
        day.task_ids = {
            f"{t.entity.id if t.entity else '-'}/{t.type}": i
            for t, i in zip(tasks, ids, strict=True)
        }
        await screen.show(
            await snapshot(
                app,
                monitor,
                "The shop opens: 3 orders to charge now, Dave's renewal at "
                f"{hms(OPENING + ORDERS[3].delay)} and a newsletter at "
                f"{hms(OPENING + NEWSLETTER_DELAY)}",
            )
        )
        mark = len(monitor.runs)
        await app.run_until_idle()
        ran = describe_runs(monitor.runs[mark:])
        await screen.show(await snapshot(app, monitor, f"The worker runs what is due: {ran}"))

        for _ in range(MAX_STEPS):
            due = scheduler.next_due()
            if script and (due is None or script[0].at <= due):
                step = script.pop(0)
                clock.set(step.at)
                await step.action()
                caption = step.caption
            elif due is not None:
                clock.set(due)
                caption = "The clock moves to the next due time; the worker runs: {ran}"
            else:
                break
            mark = len(monitor.runs)
            await app.run_until_idle()
            caption = caption.format(ran=describe_runs(monitor.runs[mark:]))
            await screen.show(await snapshot(app, monitor, caption))

        final = await snapshot(app, monitor, "Nothing is due any more: the morning is over")
        if screen.live_mode:  # the last frame stays on screen above the summary
            await screen.show(final, last=True)
    day.rows = final.rows
    day.flows = final.flows
    day.joins = {fid: await app.get_task(status.join_task_id) for fid, status in day.flows.items()}
    print_summary(console, day, final, table=not screen.live_mode)
    return day


# -- the ending --------------------------------------------------------------------------------

EXPECTED: dict[str, tuple[str, int]] = {
    "alice/charge": ("executed", 1),
    "alice/receipt": ("executed", 1),
    "alice/aggregate": ("executed", 1),
    "bob/charge": ("executed", 3),
    "bob/receipt": ("executed", 1),
    "bob/aggregate": ("executed", 1),
    "carol/charge": ("failed", 3),
    "dave/charge": ("executed", 1),
    "dave/newsletter": ("cancelled", 0),
    "dave/receipt": ("executed", 1),
    "dave/aggregate": ("executed", 1),
    "shop/month_end": ("executed", 1),
    "shop/flow": ("executed", 0),
    "shop/pick#1": ("executed", 2),  # teapot: the shelf was being restocked
    "shop/pick#2": ("executed", 1),  # green tea
    "shop/pick#3": ("executed", 1),  # notebook
    "shop/pick#4": ("executed", 1),  # fountain pen
    "shop/pick#5": ("failed", 3),  # ink: out of stock
    "shop/pick#6": ("executed", 1),  # coffee beans
    "shop/month_end.done": ("executed", 1),
}
"""``<entity>/<type>`` (``#<n>`` for flow step n, ``shop/flow`` for the flow's own row) ->
(final status, attempts) the story should end with."""
EXPECTED_STATS = {
    "added": 19,
    "executed": 16,
    "failed": 2,
    "retried": 7,
    "cancelled": 1,
    "flows_started": 1,
    "flows_closed": 1,
}
EXPECTED_FLOW = ("joined", 6, 5, 1, 0)
"""(state, total, succeeded, failed, pending) the month-end flow should end with."""


def row_key(name: str, row: ProjectionRow, monitor: ShopMonitor) -> str:
    if row.task_id in monitor.flows:
        return f"{name}/flow"
    index = monitor.step_index.get(row.task_id)
    number = "" if index is None else f"#{index + 1}"
    return f"{name}/{row.task_type}{number}"


def outcome(day: ShopDay) -> dict[str, tuple[str, int]]:
    """``<entity>/<type>`` -> (final status, attempts), from the projections."""
    return {
        row_key(name, row, day.monitor): (row.status, day.monitor.attempts.get(row.task_id, 0))
        for name, rows in day.rows.items()
        for row in rows
    }


def problems(day: ShopDay) -> list[str]:
    """Where the run differs from the story (empty when it went as told)."""
    found: list[str] = []
    got = outcome(day)
    for key in sorted(EXPECTED.keys() | got.keys()):
        want, have = EXPECTED.get(key), got.get(key)
        if want != have:
            found.append(f"{key}: expected {fmt(want)}, got {fmt(have)}")
    stats = day.app.stats.as_dict()
    for key, want_n in EXPECTED_STATS.items():
        if stats[key] != want_n:
            found.append(f"stats.{key}: expected {want_n}, got {stats[key]}")
    report_batches = [b for b in day.monitor.batches if b[0] == "reports/aggregate"]
    if report_batches != [("reports/aggregate", 3, 3, 0)]:
        found.append(f"reports/aggregate batches: expected one of 3 sales, got {report_batches}")
    found.extend(flow_problems(day))
    return found


def flow_problems(day: ShopDay) -> list[str]:
    """Where the month-end flow differs from the story."""
    if len(day.flows) != 1:
        return [f"flows: expected the month-end flow alone, got {len(day.flows)}"]
    [(flow_id, status)] = day.flows.items()
    found = []
    have = (status.state, status.total, status.succeeded, status.failed, status.pending)
    if have != EXPECTED_FLOW:
        found.append(f"flow (state, total, ok, failed, pending): {EXPECTED_FLOW} != {have}")
    state, _, succeeded, failed, _ = EXPECTED_FLOW
    closed = [c[1:] for c in day.monitor.closed if c[0] == flow_id]
    if closed != [(state, succeeded, failed)]:
        found.append(f"flow closed events: expected {[(state, succeeded, failed)]}, got {closed}")
    join = day.joins.get(flow_id)
    indexes = [s["step_index"] for s in join.payload["flow_results"]["steps"]] if join else []
    if indexes != list(range(status.total)):
        found.append(f"join: expected the results of steps 0-{status.total - 1}, got {indexes}")
    return found


def fmt(value: tuple[str, int] | None) -> str:
    return "nothing" if value is None else f"{value[0]} after {value[1]} attempt(s)"


def story_lines(day: ShopDay) -> list[str]:
    got = outcome(day)
    rows = {row_key(name, row, day.monitor): row for name, rows in day.rows.items() for row in rows}
    lines = []
    for o in ORDERS:
        key = f"{o.customer}/charge"
        status, tries = got.get(key, ("missing", 0))
        line = f"{o.customer}: {money(o.amount_cents)} charge {status}"
        if status == "executed":
            line += (
                f" on attempt {tries}; receipt {got.get(f'{o.customer}/receipt', ('not sent',))[0]}"
            )
        elif status == "failed":
            line += f" after {tries} attempts ({rows[key].error}); no receipt, no sale"
        lines.append(line)
    news = got.get("dave/newsletter", ("missing", 0))
    lines.append(f"dave's newsletter: {news[0]}, run {news[1]} times")
    for kinds, size, ok, failed in day.monitor.batches:
        if kinds == "reports/aggregate":
            lines.append(
                f"morning report: one batch executor call took all {size} sales "
                f"({ok} ok, {failed} failed)"
            )
    for flow_id, flow in day.flows.items():
        lines.extend(flow_lines(day, flow_id, flow, rows))
    return lines


def flow_lines(
    day: ShopDay, flow_id: str, status: FlowStatus, rows: dict[str, ProjectionRow]
) -> list[str]:
    """How the month-end flow went: its fan-out, its counts, its one join."""
    when = f" at {hms(status.finished_at)}" if status.finished_at else ""
    lines = [
        f"month end: {flow_name(flow_id)} fanned out to {status.total} warehouse/pick steps and "
        f"{status.state}{when}: {status.succeeded} succeeded, {status.failed} failed"
    ]
    join = day.joins.get(flow_id)
    if join is not None:
        runs = sum(1 for kind, _, _ in day.monitor.runs if kind == f"{join.queue_id}/{join.type}")
        steps = join.payload["flow_results"]["steps"]
        times = "once" if runs == 1 else f"{runs} times"
        lines.append(
            f"month end: the join {join.queue_id}/{join.type} ran {times} with all "
            f"{len(steps)} step results -> {short(join.execution_result, 80)}"
        )
    flow_row = next((r for r in rows.values() if r.task_id == flow_id), None)
    if flow_row is not None:
        lines.append(f"month end: the flow's own row on the shop ended {flow_row.status}")
    return lines


def print_summary(console: Console, day: ShopDay, final: Snapshot, *, table: bool) -> None:
    """The outcome in plain lines (and the final status table when no live view showed it)."""

    def say(text: str, style: str = "") -> None:
        console.print(Text(text, style=style), soft_wrap=True)

    say("")
    if table:
        say(f"Final entity status at {hms(final.now)} (simulated):", "bold")
        console.print(status_table(final, day.monitor))
        say("")
    say("What happened:", "bold")
    for line in story_lines(day):
        say(f"  {line}")
    say("  app.stats: " + "  ".join(f"{k}={v}" for k, v in final.stats.items() if v), "dim")
    say("")
    found = problems(day)
    if found:
        say("The run did not go as the story says:", "bold red")
        for line in found:
            say(f"  {line}", "red")
    else:
        say("Everything ended as the story says.", "bold green")
    say(
        "The shop's code is build_shop() in tq_aws/demo/shop.py: executors with retries, child "
        "tasks, a batch executor, a flow and entity status, all on the embedded in-memory default.",
        "dim",
    )


def run_demo(fast: bool = False, console: Console | None = None) -> int:
    """Run the demo; return 0 when it ended as the story says, 1 otherwise."""
    console = console or Console()
    try:
        day = asyncio.run(play(console, fast=fast))
    except KeyboardInterrupt:
        return 130
    return 1 if problems(day) else 0
