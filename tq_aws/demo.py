"""``tq-aws demo``: a morning at a small online shop, run on the embedded in-memory default.

Four customers place orders. Each ``orders/charge`` task reports its status on its customer
(an ``Entity``); a successful charge adds two child tasks: an ``emails/receipt`` and a
``reports/aggregate`` sale line due at the close of the morning, where one batch executor call
summarises every sale at once. Bob's card is declined twice and goes through on the third
attempt; Carol's charge fails for good (insufficient funds) once its retries are used up;
Dave's subscription renewal is scheduled a minute ahead, and a newsletter to him is cancelled
before it runs. At the close of the morning the sales batch adds a ``reports/month_end`` task,
which starts a flow: one ``warehouse/pick`` step per item sold (the flow fans out), and once
every pick has its final outcome one join task, ``reports/month_end.done``, gets all their
results (the flow fans in). A restocked shelf makes one pick wait for its retry; the ink is out
of stock, and with ``failure_policy="continue"`` the flow still joins, with that failure in its
results.

Time is simulated: a ``ManualClock`` is moved from one due moment to the next and the worker
runs everything due at each step (``TaskQueue.run_until_idle``), so retries with backoff and
scheduled tasks play out in a few seconds. On a terminal the entity status table (with the
flow's state from ``TaskQueue.flow_status``) and the last lifecycle events are redrawn live;
otherwise the events are printed as a plain log. Both end with the final status table and a
summary checked against the story.

The code of the shop is ``build_shop`` below: it is ordinary tq-aws application code.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.backends.memory import MemoryScheduler
from tq_aws.core.actions import Actions
from tq_aws.core.flows import FlowStatus, Join, flow_meta
from tq_aws.core.lifecycle import LifecycleListener
from tq_aws.core.log_context import RUNTIME_KEYS
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Entity, Task
from tq_aws.testing import ManualClock

OPENING = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
CLOSE_OF_MORNING = OPENING + timedelta(minutes=1, seconds=30)
FRAME_PAUSE = 0.7
"""Seconds each frame stays on screen (none with ``fast`` or when output is not a terminal)."""
MAX_STEPS = 50
"""A guard: the story needs about a dozen steps of the clock."""


class CardDeclined(Exception):
    """The payment provider turned the card down this time."""


class ShelfBusy(Exception):
    """The picker could not reach the shelf this time (it is being restocked)."""


@dataclass(frozen=True, slots=True)
class Order:
    """One order of the story: who pays how much, with what card, and when."""

    order_id: str
    customer: str
    amount_cents: int
    card: str
    """``ok``; ``flaky`` (declined on the first two attempts); ``empty`` (always refused)."""
    items: tuple[str, ...]
    """What the warehouse picks once the order is paid."""
    delay: timedelta = timedelta(0)
    """How long after opening the charge is due."""


ORDERS = (
    Order("o-1001", "alice", 4200, "ok", ("teapot", "green tea")),
    Order("o-1002", "bob", 1850, "flaky", ("notebook", "fountain pen", "ink")),
    Order("o-1003", "carol", 9900, "empty", ("espresso machine",)),
    Order("o-1004", "dave", 1200, "ok", ("coffee beans",), delay=timedelta(minutes=1)),
)
CUSTOMERS = tuple(order.customer for order in ORDERS)
NEWSLETTER_DELAY = timedelta(seconds=30)
UNSUBSCRIBE_AT = OPENING + timedelta(seconds=2)
SHOP = Entity(id="shop", type="shop")
"""The shop itself: the month-end task, its flow, the flow's steps and its join report here."""
RESTOCKING = frozenset({"teapot"})
"""Items whose shelf is busy at the first pick (the retry gets them)."""
OUT_OF_STOCK = frozenset({"ink"})
"""Items the warehouse no longer has (every pick fails)."""
MONTH_END_JOIN = Join(queue_id="reports", type="month_end.done")


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def customer(name: str) -> Entity:
    return Entity(id=name, type="customer")


# -- the shop: ordinary application code ------------------------------------------------------


def build_shop(clock: ManualClock) -> TaskQueue:
    """The shop's TaskQueue on the embedded default, with its seven executors."""
    app = TaskQueue(clock=clock)

    @app.executor("orders", "charge", retries=2, retry_after=1.0, store_on_failure=True)
    async def charge(task: Task, actions: Actions) -> None:
        order = task.payload
        actions.log.info("charging %s (attempt %d)", money(order["amount_cents"]), attempt(task))
        if order["card"] == "empty":
            actions.fail(task, "insufficient funds")  # decided, not raised: retried all the same
            return
        if order["card"] == "flaky" and task.retry_count < 2:
            raise CardDeclined("card declined: issuer timeout")
        actions.add_tasks(
            [
                Task(
                    type="receipt",
                    queue_id="emails",
                    entity=task.entity,
                    payload={"order_id": order["order_id"], "amount_cents": order["amount_cents"]},
                ),
                Task(
                    type="aggregate",
                    queue_id="reports",
                    entity=task.entity,
                    payload={
                        "order_id": order["order_id"],
                        "amount_cents": order["amount_cents"],
                        "items": order["items"],
                    },
                    execute_at=CLOSE_OF_MORNING,
                ),
            ]
        )
        actions.success(task, {"charge_id": f"ch-{order['order_id']}"})

    @app.executor("emails", "receipt")
    def receipt(task: Task, actions: Actions) -> None:
        actions.log.info("sending the receipt for %s", task.payload["order_id"])
        actions.success(task, {"message_id": f"m-{task.payload['order_id']}"})

    @app.executor("emails", "newsletter")
    def newsletter(task: Task, actions: Actions) -> None:
        actions.success(task, {"message_id": "m-newsletter"})

    @app.batch_executor("reports", "aggregate")
    async def aggregate(tasks: list[Task], actions: Actions) -> None:
        total = sum(t.payload["amount_cents"] for t in tasks)
        actions.log.info("morning report: %d sales, %s", len(tasks), money(total))
        for t in tasks:
            actions.success(t, {"sales_in_batch": len(tasks), "morning_total": money(total)})
        sales = sorted(
            ({"order_id": t.payload["order_id"], "items": t.payload["items"]} for t in tasks),
            key=lambda sale: sale["order_id"],
        )
        # Not tied to one sale: a child of the whole batch.
        actions.add_tasks(
            [Task(type="month_end", queue_id="reports", entity=SHOP, payload={"sales": sales})]
        )

    @app.executor("reports", "month_end")
    async def month_end(task: Task, actions: Actions) -> None:
        steps = [
            Task(
                type="pick",
                queue_id="warehouse",
                entity=SHOP,
                payload={"order_id": sale["order_id"], "item": item},
            )
            for sale in task.payload["sales"]
            for item in sale["items"]
        ]
        # Fan out: one pick per item. Fan in: one month_end.done task gets every pick's
        # outcome once all of them have one; "continue" keeps failed picks in its results.
        actions.start_flow(steps, MONTH_END_JOIN, failure_policy="continue", entity=SHOP)
        actions.log.info(
            "closing the morning: %d sales, %d items to pick",
            len(task.payload["sales"]),
            len(steps),
        )
        actions.success(task, {"sales": len(task.payload["sales"]), "items_to_pick": len(steps)})

    @app.executor("warehouse", "pick", retries=2, retry_after=1.0)
    def pick(task: Task, actions: Actions) -> None:
        item = task.payload["item"]
        if item in OUT_OF_STOCK:
            actions.fail(task, f"out of stock: {item}")
            return
        if item in RESTOCKING and task.retry_count == 0:
            raise ShelfBusy(f"{item} shelf being restocked")
        actions.success(task, {"item": item, "order_id": task.payload["order_id"]})

    @app.executor("reports", "month_end.done")
    def month_end_done(task: Task, actions: Actions) -> None:
        steps = task.payload["flow_results"]["steps"]
        picked = [s["result"]["item"] for s in steps if s["status"] == "success"]
        problems = [s["error"] for s in steps if s["status"] == "fail"]
        actions.log.info(
            "month end: %d of %d items picked; %s",
            len(picked),
            len(steps),
            "; ".join(problems) or "no problems",
        )
        actions.success(
            task, {"steps": len(steps), "picked": len(picked), "problems": "; ".join(problems)}
        )

    return app


def attempt(task: Task) -> int:
    """The 1-based number of the attempt ``task`` is on."""
    return task.retry_count + 1


def order_tasks() -> list[Task]:
    """The tasks added when the shop opens: every charge, and Dave's newsletter."""
    tasks = [
        Task(
            type="charge",
            queue_id="orders",
            entity=customer(o.customer),
            payload={
                "order_id": o.order_id,
                "amount_cents": o.amount_cents,
                "card": o.card,
                "items": list(o.items),
            },
            execute_at=OPENING + o.delay,
            metadata={"log_context": {"customer": o.customer, "order": o.order_id}},
        )
        for o in ORDERS
    ]
    tasks.append(
        Task(
            type="newsletter",
            queue_id="emails",
            entity=customer("dave"),
            payload={"issue": "january"},
            execute_at=OPENING + NEWSLETTER_DELAY,
            metadata={"log_context": {"customer": "dave"}},
        )
    )
    return tasks


# -- watching it: lifecycle events and logs --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str
    text: str
    style: str = ""


@dataclass(slots=True)
class PendingRetry:
    attempt: int
    error: str
    at: datetime


class ShopMonitor(LifecycleListener):
    """Collects lifecycle events (and the library's log lines) for the screen."""

    def __init__(self, clock: ManualClock):
        self.clock = clock
        self.events: deque[Event] = deque(maxlen=500)
        self.attempts: dict[str, int] = {}
        self.due: dict[str, datetime] = {}
        self.retrying: dict[str, PendingRetry] = {}
        self.batches: list[tuple[str, int, int, int]] = []
        """(``queue/type`` of its tasks, size, succeeded, failed) of every batch run."""
        self.runs: list[tuple[str, str, int]] = []
        """(``queue/type``, entity id or ``#<step>``, attempt) of every attempt started."""
        self.flows: dict[str, int] = {}
        """Flow id -> number of steps, of every flow started."""
        self.closed: list[tuple[str, str, int, int]] = []
        """(flow id, state, succeeded, failed) of every flow closed."""
        self.step_index: dict[str, int] = {}
        """Task id -> step index, of every flow step added."""
        self._progress: dict[str, tuple[int, int, int]] = {}
        self._batch_kinds: list[str] = []

    def add(self, kind: str, text: str, style: str = "") -> None:
        self.events.append(Event(self.clock.now(), kind, text, style))

    def on_task_scheduled(self, task: Task) -> None:
        index = step_index(task)
        if task.id and index is not None:
            self.step_index[task.id] = index
        when = ""
        if task.id and task.execute_at and task.execute_at > self.clock.now():
            self.due[task.id] = task.execute_at
            when = f", due {hms(task.execute_at)}"
        self.add("added", f"{label(task)}{when}", "blue")

    def on_task_started(self, task: Task) -> None:
        tid = task.id or ""
        self.attempts[tid] = self.attempts.get(tid, 0) + 1
        self.retrying.pop(tid, None)
        index = step_index(task)
        who = task.entity.id if task.entity else "-"
        if index is not None:
            who = f"#{index + 1}"  # a flow step: its number says more than the entity
        kind = f"{task.queue_id}/{task.type}"
        self.runs.append((kind, who, self.attempts[tid]))
        if kind not in self._batch_kinds:
            self._batch_kinds.append(kind)

    def on_task_completed(self, task: Task, result: Any) -> None:
        self.add("done", f"{label(task)} -> {short(result)}", "green")

    def on_task_failed(
        self, task: Task, error: str | None, will_retry: bool, next_attempt_at: datetime | None
    ) -> None:
        if not will_retry or next_attempt_at is None:
            return  # on_task_exhausted reports it
        tid = task.id or ""
        made = self.attempts.get(tid, 1)
        self.retrying[tid] = PendingRetry(made, error or "failed", next_attempt_at)
        self.add(
            "retry",
            f"{label(task)} attempt {made} failed ({error}); retry at {hms(next_attempt_at)}",
            "yellow",
        )

    def on_task_exhausted(self, task: Task, error: str | None, attempts: int) -> None:
        self.add(
            "failed", f"{label(task)} failed for good after {attempts} attempts: {error}", "red"
        )

    def on_task_ignored(self, task: Task, reason: str) -> None:
        self.add("ignored", f"{label(task)}: {reason}", "dim")

    def on_task_cancelled(self, task: Task) -> None:
        self.add("cancel", f"{label(task)} cancelled before it ran", "magenta")

    def on_task_expired(self, task: Task) -> None:
        self.add("expired", label(task), "dim")

    def on_flow_started(self, flow_id: str, total: int) -> None:
        self.flows[flow_id] = total
        self.add("flow", f"{flow_name(flow_id)} started: fans out to {total} steps", "blue")

    def on_flow_closed(self, flow_id: str, state: str, succeeded: int, failed: int) -> None:
        self.closed.append((flow_id, state, succeeded, failed))
        style = "green" if state == "joined" else "red"
        text = (
            f"{flow_name(flow_id)} {state}: {succeeded} succeeded, {failed} failed; join task added"
        )
        self.add("flow", text, style)

    def note_progress(self, flows: dict[str, FlowStatus]) -> None:
        """Log an open flow's counts (from ``TaskQueue.flow_status``) when they changed."""
        for flow_id, status in flows.items():
            counts = (status.succeeded, status.failed, status.pending)
            if status.state != "open" or self._progress.get(flow_id) == counts:
                continue
            self._progress[flow_id] = counts
            self.add("flow", f"{flow_name(flow_id)} open: {flow_counts(status)}", "yellow")

    def on_batch_started(self, queue_id: str, size: int) -> None:
        self._batch_kinds = []

    def on_batch_completed(
        self, queue_id: str, size: int, succeeded: int, failed: int, duration_s: float
    ) -> None:
        kinds = "+".join(self._batch_kinds) or queue_id
        self.batches.append((kinds, size, succeeded, failed))
        tasks = "task" if size == 1 else "tasks"
        self.add("batch", f"{kinds}: {size} {tasks} -> {succeeded} ok, {failed} failed", "dim")


class MonitorLogHandler(logging.Handler):
    """Puts ``tq_aws`` log records into the event log instead of on the terminal."""

    def __init__(self, monitor: ShopMonitor):
        super().__init__(logging.INFO)
        self.monitor = monitor

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            # Task loggers prefix the whole log context; keep only the application's keys.
            prefix = getattr(record, "tq_context", "")
            if prefix and message.startswith(prefix):
                message = message[len(prefix) :].lstrip()
            context = getattr(record, "tq_log_context", None) or {}
            own = {k: v for k, v in context.items() if k not in RUNTIME_KEYS and k != "batch_size"}
            tags = "".join(f"[{k}:{v}]" for k, v in sorted(own.items()))
            style = "red" if record.levelno >= logging.WARNING else "cyan"
            self.monitor.add("log", f"{tags} {message}" if tags else message, style)
        except Exception:
            self.handleError(record)


@contextmanager
def library_logs_to(monitor: ShopMonitor) -> Iterator[None]:
    """Route the ``tq_aws`` loggers into the event log for the duration of the block."""
    lib = logging.getLogger("tq_aws")
    handler = MonitorLogHandler(monitor)
    saved = (lib.level, lib.propagate)
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    lib.propagate = False
    try:
        yield
    finally:
        lib.removeHandler(handler)
        lib.setLevel(saved[0])
        lib.propagate = saved[1]


def describe_runs(runs: Sequence[tuple[str, str, int]]) -> str:
    """``orders/charge for bob, carol (attempt 2); warehouse/pick #1-#6``."""
    groups: dict[tuple[str, int], list[str]] = {}
    for kind, who, attempt_no in runs:
        groups.setdefault((kind, attempt_no), []).append(who)
    parts = []
    for (kind, attempt_no), names in groups.items():
        again = f" (attempt {attempt_no})" if attempt_no > 1 else ""
        parts.append(f"{kind} {who_text(names)}{again}")
    return "; ".join(parts) if parts else "nothing"


def who_text(names: Sequence[str]) -> str:
    """``for alice, bob``; flow steps by number: ``#1-#6`` when consecutive, else ``#1, #5``."""
    if not all(n.startswith("#") for n in names):
        return "for " + ", ".join(names)
    numbers = [int(n[1:]) for n in names]
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        return f"#{numbers[0]}-#{numbers[-1]}"
    return ", ".join(names)


def step_index(task: Task) -> int | None:
    """The index of ``task`` in its flow, or ``None`` when it is not a flow step."""
    meta = flow_meta(task)
    if meta is None or "step_index" not in meta:
        return None
    return int(meta["step_index"])


def flow_name(flow_id: str) -> str:
    return f"flow {flow_id[-8:]}"


def flow_counts(status: FlowStatus) -> str:
    return f"{status.succeeded} succeeded, {status.failed} failed, {status.pending} pending"


def clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def hms(when: datetime) -> str:
    return when.strftime("%H:%M:%S")


def label(task: Task) -> str:
    who = task.entity.id if task.entity else "-"
    index = step_index(task)
    number = "" if index is None else f" #{index + 1}"
    return f"{task.queue_id}/{task.type}{number} for {who}"


def short(value: Any, limit: int = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={v}" for k, v in value.items())
    else:
        text = str(value)
    return clip(text, limit)


# -- drawing -----------------------------------------------------------------------------------

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


# -- the story ---------------------------------------------------------------------------------


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
        "The shop's code is build_shop() in tq_aws/demo.py: executors with retries, child tasks, "
        "a batch executor, a flow and entity status, all on the embedded in-memory default.",
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
