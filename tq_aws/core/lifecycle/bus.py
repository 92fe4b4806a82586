"""``LifecycleBus``: the engine's side of the events. Each method builds one event from what the
engine has at hand and delivers it (``EventDispatch``); none builds anything when no provider
receives its event, so a batch pays for the events someone listens to only. The task events
are built here; batches, poison, flows, workers and consumers in ``run_emitters``.

The consumer that delivers a batch is named by ``CONSUMER`` (a context variable the worker sets
around each consumer's loop), so the events of its tasks say ``consumer_id`` without it being
passed through every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tq_aws.core.executors import ExecutorRegistry
from tq_aws.core.flows import flow_meta
from tq_aws.core.lifecycle.run_emitters import CONSUMER, RunEmitters
from tq_aws.core.lifecycle.tally import StartTimes, Totals
from tq_aws.core.task import Task

if TYPE_CHECKING:
    from tq_aws.core.lifecycle import events as ev
else:  # the event classes load with the first event built (``names``)
    from tq_aws.core.lifecycle.names import lazy_events as ev

_TIMED = ("task_completed", "task_failed", "task_exhausted")
_TOTALS = ("worker_heartbeat", "worker_stopped", "consumer_stopped")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LifecycleBus(RunEmitters):
    """Builds and delivers the engine's events (see ``tq_aws.core.lifecycle``)."""

    def __init__(self) -> None:
        super().__init__()
        self.worker_id = ""
        self._now: Callable[[], datetime] = _utc_now
        self._registry: ExecutorRegistry | None = None
        self._include_payload = False
        self.starts = StartTimes()
        self.totals = Totals()
        self.tracks_starts = False
        """Whether attempts' start times are kept (someone receives ``task_started``, or the
        timing of an outcome)."""
        self.counts_totals = False
        """Whether batches are counted for heartbeats and stops."""
        self._set_worker(())

    def bind(
        self,
        *,
        worker_id: str,
        now: Callable[[], datetime],
        registry: ExecutorRegistry | None = None,
        include_payload: bool = False,
    ) -> None:
        """Say whose events these are: the worker id, the clock, the executors (for each
        task's ``max_retries``) and whether events carry payloads."""
        self.worker_id = worker_id
        self._now = now
        self._registry = registry
        self._include_payload = include_payload
        self._set_worker(self._worker["enabled_queues"])

    def _changed(self) -> None:
        self.tracks_starts = self.wants("task_started") or any(
            self.wanted_by_users(n) for n in _TIMED
        )
        self.counts_totals = any(self.wants(n) for n in _TOTALS)

    # -- what every task event says -------------------------------------------------------------

    def _task(self, task: Task) -> dict[str, Any]:
        flow_id = None
        log_context: Mapping[str, str] = {}
        if task.metadata:
            meta = flow_meta(task)
            if meta is not None and meta.get("flow_id") is not None:
                flow_id = str(meta["flow_id"])
            log_context = task.log_context
        retries = task.retries
        if retries is None:
            spec = self._registry.get(task.queue_id, task.type) if self._registry else None
            retries = spec.retries if spec is not None else 0
        return {
            "task_id": task.id or "",
            "task_type": task.type,
            "queue_id": task.queue_id,
            "attempt": task.retry_count + 1,
            "max_retries": retries,
            "scheduled_at": task.created_at,
            "worker_id": self.worker_id,
            "consumer_id": CONSUMER.get(),
            "partition_key": task.partition_key,
            "entity": task.entity,
            "flow_id": flow_id,
            "log_context": log_context,
            "payload": task.payload if self._include_payload else None,
            "task": task,
        }

    def _context(self, task: Task) -> ev.TaskContext:
        return ev.TaskContext(**self._task(task))

    # -- tasks ----------------------------------------------------------------------------------

    async def task_scheduled(self, tasks: Iterable[Task]) -> None:
        if "task_scheduled" not in self._routes:
            return
        now = self._now()
        for task in tasks:
            # stored as the dispatcher decides: due later, or force_store
            later = task.execute_at is not None and task.execute_at > now
            await self.send(
                ev.TaskScheduled(
                    **self._task(task),
                    execute_at=task.execute_at,
                    stored=task.stored or task.force_store or later,
                )
            )

    async def task_started(self, task: Task) -> None:
        now = self._now()
        self.starts.remember(task.id or "", now)
        if "task_started" not in self._routes:
            return
        created = task.created_at or now
        await self.send(
            ev.TaskStarted(
                **self._task(task),
                started_at=now,
                queued_duration_ms=max((now - created).total_seconds() * 1000.0, 0.0),
            )
        )

    async def task_completed(self, task: Task, result: Any) -> None:
        if "task_completed" not in self._routes:
            self.starts.forget(task.id or "")
            return
        now = self._now()
        timing = self.starts.timing(task.id or "", task.created_at, now)
        await self.send(
            ev.TaskCompleted(**self._task(task), completed_at=now, timing=timing, result=result)
        )

    async def task_failed(
        self, task: Task, next_attempt_at: datetime | None, *, permanent: bool = False
    ) -> None:
        """``task`` is the attempt that failed; ``next_attempt_at`` when the next one is due
        (``None``: it will not retry)."""
        if "task_failed" not in self._routes:
            if next_attempt_at is not None:
                self.starts.forget(task.id or "")
            return
        now = self._now()
        stats = task.execution_stats
        # a final failure's start is kept for its exhausted event
        timing = self.starts.timing(
            task.id or "", task.created_at, now, forget=next_attempt_at is not None
        )
        await self.send(
            ev.TaskFailed(
                **self._task(task),
                failed_at=now,
                timing=timing,
                error=_text(stats.get("last_error")),
                will_retry=next_attempt_at is not None,
                next_attempt_at=next_attempt_at,
                permanent=permanent,
                stack=_text(stats.get("last_error_stack")),
            )
        )

    async def task_exhausted(self, task: Task, *, permanent: bool = False) -> None:
        if "task_exhausted" not in self._routes:
            self.starts.forget(task.id or "")
            return
        now = self._now()
        stats = task.execution_stats
        await self.send(
            ev.TaskExhausted(
                **self._task(task),
                failed_at=now,
                timing=self.starts.timing(task.id or "", task.created_at, now),
                error=_text(stats.get("last_error")),
                total_attempts=task.retry_count + 1,
                permanent=permanent,
                stack=_text(stats.get("last_error_stack")),
            )
        )

    async def task_ignored(self, task: Task, reason: str) -> None:
        if "task_ignored" in self._routes:
            await self.send(ev.TaskIgnored(**self._task(task), reason=reason))

    async def task_expired(self, task: Task) -> None:
        if "task_expired" in self._routes:
            await self.send(ev.TaskExpired(**self._task(task), expires_at=task.expires_at))

    async def task_cancelled(self, task: Task, reason: str = "cancelled") -> None:
        if "task_cancelled" in self._routes:
            await self.send(ev.TaskCancelled(**self._task(task), reason=reason))

    async def task_batch_started(self, queue_id: str, type: str, tasks: Sequence[Task]) -> None:
        if "task_batch_started" not in self._routes:
            return
        await self.send(
            ev.TaskBatchStarted(
                task_type=type,
                queue_id=queue_id,
                task_ids=tuple(t.id or "" for t in tasks),
                worker_id=self.worker_id,
                consumer_id=CONSUMER.get(),
                started_at=self._now(),
                tasks=tuple(self._context(t) for t in tasks),
            )
        )

    async def task_batch_completed(
        self,
        queue_id: str,
        type: str,
        tasks: Sequence[Task],
        succeeded: Iterable[str],
        duration_ms: float,
    ) -> None:
        """``succeeded``: the ids the executor decided successful; the others failed."""
        if "task_batch_completed" not in self._routes:
            return
        ok = set(succeeded)
        ids = tuple(t.id or "" for t in tasks)
        await self.send(
            ev.TaskBatchCompleted(
                task_type=type,
                queue_id=queue_id,
                task_ids=ids,
                worker_id=self.worker_id,
                consumer_id=CONSUMER.get(),
                succeeded=tuple(i for i in ids if i in ok),
                failed=tuple(i for i in ids if i not in ok),
                duration_ms=duration_ms,
                tasks=tuple(self._context(t) for t in tasks),
            )
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
