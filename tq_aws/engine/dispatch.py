"""Dispatching prepared tasks: store what must be durable, write ``scheduled`` projections,
publish what is due, schedule what is not.

Order matters for crash safety: durable copies are written before the task can run, and the
``scheduled`` projection is written before publishing, so a fast consumer's terminal status is
never overwritten by it (and the projection store refuses it anyway: it moves forward only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from tq_aws.core.prepare import prepare_tasks
from tq_aws.core.projections import build_row
from tq_aws.core.task import Task, TaskStatus
from tq_aws.engine.context import EngineContext
from tq_aws.errors import PublishError
from tq_aws.ports import ScheduledTask

logger = logging.getLogger(__name__)


def schedule_name(task: Task) -> str:
    """Deterministic schedule name of a task's next delivery: a repeat is a no-op."""
    return f"{task.id}.a{task.retry_count}"


def scheduled(task: Task, now: datetime) -> ScheduledTask:
    """The Scheduler entry that delivers ``task`` at its ``execute_at``."""
    return ScheduledTask(at=task.execute_at or now, name=schedule_name(task), task=task)


class Dispatcher:
    """Routes prepared tasks to the task store, projections, transport and scheduler."""

    def __init__(self, context: EngineContext):
        ports = context.ports
        self._clock = ports.clock
        self._registry = context.registry
        self._transport = ports.transport
        self._scheduler = ports.scheduler
        self._store = ports.task_store
        self._projections = ports.projection_store
        self._events = context.events
        self._stats = context.stats
        self._include_payload = context.settings.include_payload

    async def dispatch(self, tasks: Sequence[Task]) -> None:
        """Make every prepared task durable-or-published. Raises ``PublishError`` if the
        transport refused them (stored copies stay ``scheduled`` and can be re-added)."""
        if not tasks:
            return
        now = self._clock.now()
        immediate: list[Task] = []
        future: list[Task] = []
        to_store: list[Task] = []
        for task in tasks:
            is_future = task.execute_at is not None and task.execute_at > now
            if is_future or task.force_store:
                task = task.copy_with(**{"stored": True})
                to_store.append(task)
            (future if is_future else immediate).append(task)
        if to_store:
            await self._store.put(to_store)
        await self.project(tasks, "scheduled", now)
        if immediate:
            try:
                await self._transport.publish(immediate)
            except PublishError:
                raise  # it already names exactly the tasks that did not go out
            except Exception as exc:
                raise PublishError(
                    f"{len(immediate)} task(s) could not be published: {exc}",
                    task_ids=[t.id or "" for t in immediate],
                ) from exc
        if future:
            await self._scheduler.schedule([scheduled(t, now) for t in future])
        self._stats.added += len(tasks)
        await self._events.task_scheduled(tasks)

    def prepare_internal(self, task: Task) -> Task:
        """Prepare a task the framework built (a join): defaults and partition key, no
        payload validation (the framework's payload shape is not the user's model)."""
        return prepare_tasks([task], self._registry, self._clock.now(), validate=False)[0]

    async def dispatch_once(self, task: Task) -> bool:
        """Dispatch a task with a deterministic id at most once: ``create_once`` then
        ``publish_stored``. Returns whether this call created it."""
        created, record = await self.create_once(task)
        await self.publish_stored(record)
        return created

    async def create_once(self, task: Task) -> tuple[bool, Task]:
        """Create the task's record if no record has its id; return whether this call created
        it, and the record (the existing one otherwise). Exactly one caller ever gets True."""
        record = task.copy_with(stored=True)
        if (await self._store.create([record]))[0]:
            await self.project([record], "scheduled", self._clock.now())
            self._stats.added += 1
            await self._events.task_scheduled([record])
            return True, record
        existing = await self._store.get(task.id or "")
        return False, existing if existing is not None else record

    async def publish_stored(self, record: Task) -> None:
        """Publish (or schedule) a stored record that has not started; nothing otherwise. A
        second copy on the transport is harmless: the claim drops it."""
        if record.status is not TaskStatus.SCHEDULED or record.retry_count != 0:
            return
        now = self._clock.now()
        if record.execute_at is not None and record.execute_at > now:
            await self._scheduler.schedule([scheduled(record, now)])
            return
        try:
            await self._transport.publish([record])
        except PublishError:
            raise
        except Exception as exc:
            raise PublishError(
                f"task {record.id} could not be published: {exc}", task_ids=[record.id or ""]
            ) from exc

    async def project(
        self,
        tasks: Sequence[Task],
        status: str,
        now: datetime,
        *,
        errors: dict[str, str | None] | None = None,
        results: dict[str, object] | None = None,
    ) -> None:
        """Write the ``status`` row of every entity task in one store call; never raises."""
        await self.project_rows(
            [
                (t, status, (errors or {}).get(t.id or ""), (results or {}).get(t.id or ""))
                for t in tasks
            ],
            now,
        )

    async def project_rows(
        self, items: Sequence[tuple[Task, str, str | None, object]], now: datetime
    ) -> None:
        """Write one row per ``(task, status, error, result)`` of an entity task, all in one
        store call; never raises (a projection is never worth failing the batch for)."""
        rows = []
        for task, status, error, result in items:
            row = build_row(
                task,
                status,
                now,
                error=error,
                result=result,
                include_payload=self._include_payload,
            )
            if row is not None:
                rows.append(row)
        if not rows:
            return
        try:
            await self._projections.upsert(rows)
        except Exception:
            self._stats.projection_errors += 1
            logger.exception("projection write of %d rows failed; processing goes on", len(rows))
