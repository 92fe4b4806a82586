"""Watching the shop: lifecycle events and the library's log lines, collected for the screen,
and the short texts they are told in."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tq_aws.core.flows import FlowStatus, flow_meta
from tq_aws.core.lifecycle import LifecycleListener
from tq_aws.core.log_context import RUNTIME_KEYS
from tq_aws.core.task import Task
from tq_aws.testing.clock import ManualClock

logger = logging.getLogger(__name__)


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
