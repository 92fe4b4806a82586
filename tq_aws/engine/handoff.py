"""Long-running tasks handed off from their batch: the ``AsyncTaskManager``, and the engine's
hand-off hook (accepting a task from the runner, its watchdog delivery, recording its outcome).

A single-task executor registered with ``handoff_timeout`` that has not finished after that many
seconds is handed off: the batch goes on without it and its outcome is recorded when it ends.
The manager bounds how many run at once, evicts those that run past their maximum duration
(cancelling them and failing them into the retry path, so nothing is lost), and drains them at
shutdown within a grace period.

Options, defaults and metric names follow the reference's AsyncTaskManager: at most 100 tasks,
a sweep every 5 s, a maximum duration of 10 minutes, a shutdown grace of 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tq_aws.core.actions import NO_DECISION, BatchBook, Decision
from tq_aws.core.executors import ExecutorRegistry, ExecutorSpec
from tq_aws.core.runner import BatchOutcome, TaskOutcome
from tq_aws.core.task import Task
from tq_aws.engine.dispatch import schedule_name
from tq_aws.ports import ScheduledTask, Scheduler

logger = logging.getLogger(__name__)

TimeoutHook = Callable[[str, Task, float], object]


@dataclass(frozen=True, slots=True)
class ShutdownResult:
    """What ``shutdown`` achieved within its grace period."""

    completed_during_grace: int
    abandoned_task_ids: list[str]


@dataclass(frozen=True, slots=True)
class AsyncTaskMetrics:
    """A snapshot of the manager (names as in the reference)."""

    active_task_count: int
    total_handed_off: int
    total_completed: int
    total_rejected: int
    total_timed_out: int
    oldest_task_ms: float
    max_tasks: int
    utilization_percent: float


@dataclass(slots=True)
class _Entry:
    task: Task
    job: asyncio.Task[None]
    """The executor's own run; cancelled on eviction."""
    completion: asyncio.Task[None] | None
    """Awaits ``job`` then records the outcome; what shutdown waits for."""
    started: float
    max_duration: float
    evicted: bool = field(default=False)


class AsyncTaskManager:
    """Tracks handed-off tasks.

    Args:
        max_tasks: how many handed-off tasks may run at once; more are not handed off (the
            batch waits for them instead).
        sweep_interval: seconds between sweeps for tasks past their maximum duration
            (<= 0: no sweep).
        default_max_duration: seconds a handed-off task may run when no per-task limit is given.
        on_task_timeout: called ``(task_id, task, duration_ms)`` when a task is evicted;
            exceptions in it are logged.
        shutdown_grace: seconds ``shutdown`` waits for running tasks.

    Example:
        >>> manager = AsyncTaskManager(max_tasks=10, default_max_duration=60)
        >>> app = TaskQueue(async_tasks=manager)
        >>> @app.executor("video", "encode", handoff_timeout=2.0)
        ... async def encode(task, actions): ...
    """

    def __init__(
        self,
        max_tasks: int = 100,
        *,
        sweep_interval: float = 5.0,
        default_max_duration: float = 600.0,
        on_task_timeout: TimeoutHook | None = None,
        shutdown_grace: float = 10.0,
    ):
        if max_tasks < 0:
            raise ValueError(f"max_tasks={max_tasks!r}; give a whole number >= 0")
        self.max_tasks = max_tasks
        self.sweep_interval = sweep_interval
        self.default_max_duration = default_max_duration
        self.on_task_timeout = on_task_timeout
        self.shutdown_grace = shutdown_grace
        self._entries: dict[str, _Entry] = {}
        self._accepting = True
        self._sweeper: asyncio.Task[None] | None = None
        self.total_handed_off = 0
        self.total_completed = 0
        self.total_rejected = 0
        self.total_timed_out = 0

    # -- taking tasks ---------------------------------------------------------------------

    def can_accept_task(self) -> bool:
        return self._accepting and len(self._entries) < self.max_tasks

    def is_handed_off(self, task_id: str) -> bool:
        return task_id in self._entries

    def handoff_task(
        self,
        task: Task,
        job: asyncio.Task[None],
        complete: Callable[[bool], Awaitable[None]],
        task_timeout: float | None = None,
    ) -> bool:
        """Track ``job`` (the executor's run of ``task``); return False, counting a rejection,
        when the task has no id, shutdown has begun, it is tracked already, or the manager is
        full. ``complete(evicted)`` records the outcome once the job ends or is evicted."""
        tid = task.id
        if not tid or not self._accepting or tid in self._entries:
            self.total_rejected += 1
            return False
        if len(self._entries) >= self.max_tasks:
            self.total_rejected += 1
            return False
        entry = _Entry(
            task=task,
            job=job,
            completion=None,
            started=time.monotonic(),
            max_duration=self.default_max_duration if task_timeout is None else task_timeout,
        )
        self._entries[tid] = entry
        self.total_handed_off += 1
        entry.completion = asyncio.ensure_future(self._follow(tid, entry, complete))
        self._ensure_sweeper()
        return True

    async def _follow(
        self, tid: str, entry: _Entry, complete: Callable[[bool], Awaitable[None]]
    ) -> None:
        try:
            await asyncio.wait({entry.job})
            await complete(entry.evicted)
        except Exception:
            logger.exception("recording the outcome of handed-off task %s failed", tid)
        finally:
            # an entry evicted and then re-handed off under the same id is not ours to drop
            if self._entries.get(tid) is entry:
                del self._entries[tid]
                if not entry.evicted:
                    self.total_completed += 1

    # -- sweeping -------------------------------------------------------------------------

    def _ensure_sweeper(self) -> None:
        if self.sweep_interval > 0 and (self._sweeper is None or self._sweeper.done()):
            self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while self._entries:
            await asyncio.sleep(self.sweep_interval)
            self.evict_stale()

    def evict_stale(self) -> list[str]:
        """Evict every task past its maximum duration: it leaves the manager at once (freeing
        its slot), its run is cancelled, and it fails into the retry path. Returns their ids."""
        now = time.monotonic()
        evicted = []
        for tid, entry in list(self._entries.items()):
            age = now - entry.started
            if age <= entry.max_duration or entry.evicted:
                continue
            entry.evicted = True
            del self._entries[tid]
            self.total_timed_out += 1
            entry.job.cancel()
            evicted.append(tid)
            logger.warning("handed-off task %s ran %.1f s, past its limit; cancelled", tid, age)
            if self.on_task_timeout is not None:
                try:
                    self.on_task_timeout(tid, entry.task, age * 1000)
                except Exception:
                    logger.exception("on_task_timeout failed for task %s", tid)
        return evicted

    # -- waiting and shutting down --------------------------------------------------------

    async def wait_any(self) -> None:
        """Return once any tracked task has finished recording its outcome."""
        pending = {e.completion for e in self._entries.values() if e.completion is not None}
        if pending:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)

    async def shutdown(self, grace: float | None = None) -> ShutdownResult:
        """Stop taking tasks and wait up to ``grace`` seconds (default ``shutdown_grace``) for
        the running ones; return how many completed and which were abandoned (still running:
        their stored record and delivery watchdog bring them back)."""
        self._accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        initial = len(self._entries)
        if not initial:
            return ShutdownResult(0, [])
        pending = {e.completion for e in self._entries.values() if e.completion is not None}
        await asyncio.wait(pending, timeout=self.shutdown_grace if grace is None else grace)
        abandoned = sorted(self._entries)
        return ShutdownResult(initial - len(abandoned), abandoned)

    # -- metrics ----------------------------------------------------------------------------

    def get_oldest_task_age(self) -> float:
        """Milliseconds since the oldest tracked task was handed off (0 when none)."""
        if not self._entries:
            return 0.0
        return (time.monotonic() - min(e.started for e in self._entries.values())) * 1000

    def get_metrics(self) -> AsyncTaskMetrics:
        active = len(self._entries)
        return AsyncTaskMetrics(
            active_task_count=active,
            total_handed_off=self.total_handed_off,
            total_completed=self.total_completed,
            total_rejected=self.total_rejected,
            total_timed_out=self.total_timed_out,
            oldest_task_ms=self.get_oldest_task_age(),
            max_tasks=self.max_tasks,
            utilization_percent=(active / self.max_tasks * 100) if self.max_tasks else 0.0,
        )

    def reset_counters(self) -> None:
        """Zero the cumulative counters (not the active count)."""
        self.total_handed_off = self.total_completed = 0
        self.total_rejected = self.total_timed_out = 0

    @property
    def active(self) -> int:
        return len(self._entries)


# -- the engine's side ----------------------------------------------------------------------

WATCHDOG_MARGIN = 60.0
"""Seconds past a handed-off task's maximum duration before its record is delivered again."""

RecordFn = Callable[[BatchOutcome], Awaitable[object]]
"""Records a batch's outcomes (``OutcomeRecorder.record``)."""


def watchdog_name(task: Task) -> str:
    """The schedule name of a handed-off task's watchdog delivery."""
    return f"{schedule_name(task)}.h"


def watchdog(
    task: Task, now: datetime, registry: ExecutorRegistry, manager: AsyncTaskManager | None
) -> ScheduledTask:
    """The delivery that brings a handed-off task's stored record back if its worker dies
    before it ends: due ``WATCHDOG_MARGIN`` seconds past its maximum duration."""
    limit = manager.default_max_duration if manager is not None else 600.0
    spec = registry.get(task.queue_id, task.type)
    if spec is not None and spec.max_duration is not None:
        limit = spec.max_duration
    at = now + timedelta(seconds=limit + WATCHDOG_MARGIN)
    return ScheduledTask(at=at, name=watchdog_name(task), task=task)


class HandoffHook:
    """What the runner offers a task still running after its handoff timeout (``accept``):
    the manager takes it, and once it ends its outcome is recorded and its watchdog disarmed."""

    def __init__(self, manager: AsyncTaskManager | None, scheduler: Scheduler, record: RecordFn):
        self._manager = manager
        self._scheduler = scheduler
        self._record = record

    def accept(
        self, spec: ExecutorSpec, task: Task, job: asyncio.Task[None], book: BatchBook
    ) -> bool:
        """Offered by the runner: a task still running after its handoff timeout."""
        if self._manager is None or not self._manager.can_accept_task():
            return False

        async def complete(evicted: bool) -> None:
            await self._finish(spec, task, book, evicted)

        return self._manager.handoff_task(task, job, complete, task_timeout=spec.max_duration)

    async def _finish(self, spec: ExecutorSpec, task: Task, book: BatchBook, evicted: bool) -> None:
        tid = task.id or ""
        if evicted and tid not in book.decisions:
            limit = spec.max_duration or (
                self._manager.default_max_duration if self._manager else 0
            )
            book.decide(
                task,
                Decision(
                    kind="fail",
                    error=f"handed-off task ran past its maximum duration of {limit:g} s "
                    "and was cancelled",
                ),
            )
        decision = book.decisions.get(tid) or Decision(kind="fail", error=NO_DECISION)
        outcome = TaskOutcome(
            task=task.copy_with(**{"stored": True}),
            spec=spec,
            decision=decision,
            children=book.children.get(tid, []),
            flows=book.flows.get(tid, []),
        )
        await self._record(BatchOutcome([outcome], []))
        await self._scheduler.cancel([watchdog_name(task)])
