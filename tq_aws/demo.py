"""``tq-aws demo``: a morning at a small online shop, run on the embedded in-memory default.

Four customers place orders. Each ``orders/charge`` task reports its status on its customer
(an ``Entity``); a successful charge adds two child tasks: an ``emails/receipt`` and a
``reports/aggregate`` sale line due at the close of the morning, where one batch executor call
summarises every sale at once. Bob's card is declined twice and goes through on the third
attempt; Carol's charge fails for good (insufficient funds) once its retries are used up;
Dave's subscription renewal is scheduled a minute ahead, and a newsletter to him is cancelled
before it runs.

Time is simulated: a ``ManualClock`` is moved from one due moment to the next and the worker
runs everything due at each step (``TaskQueue.run_until_idle``), so retries with backoff and
scheduled tasks play out in a few seconds. On a terminal the entity status table and the last
lifecycle events are redrawn live; otherwise the events are printed as a plain log. Both end
with the final status table and a summary checked against the story.

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

from tq_aws.backends.memory import MemoryScheduler
from tq_aws.core.actions import Actions
from tq_aws.core.lifecycle import LifecycleListener
from tq_aws.core.log_context import RUNTIME_KEYS
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Entity, Task
from tq_aws.engine.app import TaskQueue
from tq_aws.testing import ManualClock

OPENING = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
CLOSE_OF_MORNING = OPENING + timedelta(minutes=1, seconds=30)
FRAME_PAUSE = 0.7
"""Seconds each frame stays on screen (none with ``fast`` or when output is not a terminal)."""
MAX_STEPS = 50
"""A guard: the story needs about ten steps of the clock."""


class CardDeclined(Exception):
    """The payment provider turned the card down this time."""


@dataclass(frozen=True, slots=True)
class Order:
    """One order of the story: who pays how much, with what card, and when."""

    order_id: str
    customer: str
    amount_cents: int
    card: str
    """``ok``; ``flaky`` (declined on the first two attempts); ``empty`` (always refused)."""
    delay: timedelta = timedelta(0)
    """How long after opening the charge is due."""


ORDERS = (
    Order("o-1001", "alice", 4200, "ok"),
    Order("o-1002", "bob", 1850, "flaky"),
    Order("o-1003", "carol", 9900, "empty"),
    Order("o-1004", "dave", 1200, "ok", delay=timedelta(minutes=1)),
)
CUSTOMERS = tuple(order.customer for order in ORDERS)
NEWSLETTER_DELAY = timedelta(seconds=30)
UNSUBSCRIBE_AT = OPENING + timedelta(seconds=2)


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def customer(name: str) -> Entity:
    return Entity(id=name, type="customer")


# -- the shop: ordinary application code ------------------------------------------------------


def build_shop(clock: ManualClock) -> TaskQueue:
    """The shop's TaskQueue on the embedded default, with its four executors."""
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
                    payload={"order_id": order["order_id"], "amount_cents": order["amount_cents"]},
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
        self.runs: list[tuple[str, str, int]] = []
        """(``queue/type``, entity id, attempt) of every attempt started, in order."""

    def add(self, kind: str, text: str, style: str = "") -> None:
        self.events.append(Event(self.clock.now(), kind, text, style))

    def on_task_scheduled(self, task: Task) -> None:
        when = ""
        if task.id and task.execute_at and task.execute_at > self.clock.now():
            self.due[task.id] = task.execute_at
            when = f", due {hms(task.execute_at)}"
        self.add("added", f"{label(task)}{when}", "blue")

    def on_task_started(self, task: Task) -> None:
        tid = task.id or ""
        self.attempts[tid] = self.attempts.get(tid, 0) + 1
        self.retrying.pop(tid, None)
        who = task.entity.id if task.entity else "-"
        self.runs.append((f"{task.queue_id}/{task.type}", who, self.attempts[tid]))

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

    def on_batch_completed(
        self, queue_id: str, size: int, succeeded: int, failed: int, duration_s: float
    ) -> None:
        self.batches.append((queue_id, size, succeeded, failed))
        tasks = "task" if size == 1 else "tasks"
        self.add("batch", f"{queue_id}: {size} {tasks} -> {succeeded} ok, {failed} failed", "dim")


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
    """``orders/charge for bob, carol (attempt 2); emails/receipt for bob``."""
    groups: dict[tuple[str, int], list[str]] = {}
    for kind, who, attempt_no in runs:
        groups.setdefault((kind, attempt_no), []).append(who)
    parts = []
    for (kind, attempt_no), names in groups.items():
        again = f" (attempt {attempt_no})" if attempt_no > 1 else ""
        parts.append(f"{kind} for {', '.join(names)}{again}")
    return "; ".join(parts) if parts else "nothing"


def clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def hms(when: datetime) -> str:
    return when.strftime("%H:%M:%S")


def label(task: Task) -> str:
    who = task.entity.id if task.entity else "-"
    return f"{task.queue_id}/{task.type} for {who}"


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


@dataclass(slots=True)
class Snapshot:
    """What one frame shows."""

    now: datetime
    caption: str
    rows: dict[str, list[ProjectionRow]]
    stats: dict[str, int]


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


TABLE_FIXED_WIDTH = 59
"""The first four columns, the gaps between columns, and a panel's borders."""


def status_table(snapshot: Snapshot, monitor: ShopMonitor, *, width: int | None = None) -> Table:
    """The entity status table; with ``width``, details are cut to fit one line per row."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("customer", style="bold", no_wrap=True, min_width=8)
    table.add_column("task", no_wrap=True, min_width=17)
    table.add_column("status", no_wrap=True, min_width=10)
    table.add_column("attempts", justify="right", no_wrap=True, min_width=8)
    table.add_column("details", overflow="fold", no_wrap=width is not None)
    cut = None if width is None else max(8, width - TABLE_FIXED_WIDTH)
    for name, rows in snapshot.rows.items():
        for i, row in enumerate(rows):
            tries = monitor.attempts.get(row.task_id, 0)
            table.add_row(
                name if i == 0 else "",
                f"{row.queue_id}/{row.task_type}",
                Text(row.status, style=STATUS_STYLES.get(row.status, "")),
                str(tries) if tries else "",
                clip(details(row, monitor, snapshot.now), cut),
            )
        if not rows:
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


def frame(snapshot: Snapshot, monitor: ShopMonitor, width: int, height: int) -> RenderableType:
    """One live frame, fitted to the screen: the event log gets the lines the rest leaves."""
    table = status_table(snapshot, monitor, width=width)
    parts: list[RenderableType] = [
        header(snapshot),
        Panel(table, title="entity status", title_align="left"),
    ]
    # header 4 lines, table panel rows + 4, event panel lines + 2, and the cursor's line
    room = min(12, height - table.row_count - 11)
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
            width, height = self.console.size
            self._live.update(frame(snapshot, self.monitor, width, height), refresh=True)
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


async def snapshot(app: TaskQueue, caption: str) -> Snapshot:
    rows = {name: await app.entity_status(customer(name)) for name in CUSTOMERS}
    return Snapshot(app.clock.now(), caption, rows, app.stats.as_dict())


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
                "The shop opens: 3 orders to charge now, Dave's renewal at "
                f"{hms(OPENING + ORDERS[3].delay)} and a newsletter at "
                f"{hms(OPENING + NEWSLETTER_DELAY)}",
            )
        )
        mark = len(monitor.runs)
        await app.run_until_idle()
        ran = describe_runs(monitor.runs[mark:])
        await screen.show(await snapshot(app, f"The worker runs what is due: {ran}"))

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
            await screen.show(await snapshot(app, caption))

        # Flows (fan out to several tasks, then join when all have finished) join the story
        # here once TaskQueue supports them.

        final = await snapshot(app, "Nothing is due any more: the morning is over")
        if screen.live_mode:  # the last frame stays on screen above the summary
            await screen.show(final, last=True)
    day.rows = final.rows
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
}
"""``<customer>/<type>`` -> (final status, attempts) the story should end with."""
EXPECTED_STATS = {"added": 11, "executed": 9, "failed": 1, "retried": 4, "cancelled": 1}


def outcome(day: ShopDay) -> dict[str, tuple[str, int]]:
    """``<customer>/<type>`` -> (final status, attempts), from the projections."""
    return {
        f"{name}/{row.task_type}": (row.status, day.monitor.attempts.get(row.task_id, 0))
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
    report_batches = [b for b in day.monitor.batches if b[0] == "reports"]
    if report_batches != [("reports", 3, 3, 0)]:
        found.append(f"reports batches: expected one of 3 sales, got {report_batches}")
    return found


def fmt(value: tuple[str, int] | None) -> str:
    return "nothing" if value is None else f"{value[0]} after {value[1]} attempt(s)"


def story_lines(day: ShopDay) -> list[str]:
    got = outcome(day)
    rows = {f"{name}/{row.task_type}": row for name, rows in day.rows.items() for row in rows}
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
    for queue_id, size, ok, failed in day.monitor.batches:
        if queue_id == "reports":
            lines.append(
                f"morning report: one batch executor call took all {size} sales "
                f"({ok} ok, {failed} failed)"
            )
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
        "a batch executor and entity status, all on the embedded in-memory default.",
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
