"""Dispatching prepared tasks: store what must be durable, write ``scheduled`` projections,
publish what is due, schedule what is not.

Order matters for crash safety: durable copies are written before the task can run, and the
``scheduled`` projection is written before publishing, so a fast consumer's terminal status is
never overwritten by it (and the projection store refuses it anyway: it moves forward only).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from tq_aws.core.prepare import prepare_tasks
from tq_aws.core.projections import build_row
from tq_aws.core.task import Task, TaskStatus
from tq_aws.engine.context import EngineContext
from tq_aws.errors import PublishError, TaskAlreadyExistsError
from tq_aws.ports import ScheduledTask

logger = logging.getLogger(__name__)


_PLAIN_ID = re.compile(r"[0-9A-Za-z_-]{1,40}")
_NOT_PLAIN = re.compile(r"[^0-9A-Za-z_-]")


def schedule_name(task: Task) -> str:
    """Deterministic schedule name of a task's next delivery: a repeat is a no-op.

    ``<id>.a<attempt>`` for an id of at most 40 letters, digits, ``-`` and ``_`` (UUIDs);
    any other id is named by its digest, ``<up to 16 of its characters>.<sha-256, 32 hex>
    .a<attempt>``, so every name is one EventBridge Scheduler takes (1 to 64 of
    ``[0-9A-Za-z-_.]``, room left for suffixes such as the watchdog's ``.h``) and two ids never
    share a name (a plain name has one dot, a digest name two).
    """
    task_id = task.id or ""
    if _PLAIN_ID.fullmatch(task_id):
        return f"{task_id}.a{task.retry_count}"
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    readable = _NOT_PLAIN.sub("_", task_id[:16]) or "_"
    return f"{readable}.{digest}.a{task.retry_count}"


def already_exists(task: Task, index: int, stored: Task | None) -> TaskAlreadyExistsError:
    """The error for an explicit id that a stored task already has."""
    status = f" ({stored.status.value})" if stored is not None else ""
    return TaskAlreadyExistsError(
        f"tasks[{index}] ({task.queue_id}/{task.type}): id {task.id!r} is already a stored "
        f"task{status}; give a new id, or leave id unset for a generated one (a retried call "
        "may catch TaskAlreadyExistsError: that task was added). No task of this call was "
        "added.",
        task_id=task.id or "",
        index=index,
    )


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

    async def dispatch(
        self, tasks: Sequence[Task], *, exclusive: Mapping[str, int] | None = None
    ) -> None:
        """Make every prepared task durable-or-published. Raises ``PublishError`` if the
        transport refused them (stored copies stay ``scheduled`` and can be re-added).

        Stored tasks whose id is in ``exclusive`` (explicit ids of ``add_tasks``, mapped to
        their index in the call) are created only if no record has their id, before anything
        else is written; otherwise ``TaskAlreadyExistsError``. Other stored tasks are put
        (the engine's own re-adds of children and steps: a repeat is a no-op)."""
        if not tasks:
            return
        now = self._clock.now()
        immediate: list[Task] = []
        future: list[Task] = []
        to_create: list[Task] = []
        to_store: list[Task] = []
        for task in tasks:
            is_future = task.execute_at is not None and task.execute_at > now
            if is_future or task.force_store:
                task = task.copy_with(**{"stored": True})
                (to_create if exclusive and task.id in exclusive else to_store).append(task)
            (future if is_future else immediate).append(task)
        if to_create:
            assert exclusive is not None
            created = await self._store.create(to_create)
            for task, ok in zip(to_create, created, strict=True):
                if not ok:  # stored meanwhile by another producer
                    index = exclusive[task.id or ""]
                    raise already_exists(task, index, await self._store.get(task.id or ""))
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
        errors, results = errors or {}, results or {}
        items = [
            (t, status, errors.get(t.id or ""), results.get(t.id or ""))
            for t in tasks
            if t.entity is not None  # only entity tasks have rows
        ]
        if items:
            await self.project_rows(items, now)

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
