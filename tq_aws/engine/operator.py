"""Operator actions: retry a failed task, retry failed tasks in bulk, redrive poison records.

The status page, its API and the CLI call these same methods (on the app: ``retry_task``,
``retry_failed``, ``redrive_poison``, and ``cancel``). Each state change is one conditional
write, so an action sent twice (a double click, a replayed request) changes things once:

- a retry moves the stored task ``failed -> scheduled`` at its next attempt only if it is still
  failed at the attempt that failed (``TaskStore.reopen``); only the call whose write landed
  publishes the task, so a repeated retry never runs it twice. The retry starts a new
  generation of the task: its projection rows supersede the failed one (``core.projections``);
- a redrive creates the record's task in the task store only if no task has its id, and only
  the call that created it publishes it.

Every action is logged (``tq_aws.engine.operator``, INFO) with who asked, what, on what, when
and what came of it.

A crash between the write and the publish leaves the task ``scheduled`` and not on its way;
``get_task`` shows it so. Such a task is re-added by hand (``add_tasks`` with its record).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from tq_aws.core.codec import decode_task
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.projections import OPERATOR_RETRIES, generation_of
from tq_aws.core.recent import MAX_PAGE, RecentFilter, time_key
from tq_aws.core.task import Task, TaskStatus, to_utc
from tq_aws.engine.context import EngineContext
from tq_aws.engine.dispatch import Dispatcher
from tq_aws.errors import CodecError, InvalidQueryError, PublishError
from tq_aws.ids import derived_id

logger = logging.getLogger(__name__)

OPERATOR_RETRY = "operator_retry"
"""``Task.metadata`` key: who retried the task, when, and the error it had failed with."""
POISON_LOOKBACK = 10_000
"""The most poison records a redrive by filter looks through (newest first)."""


def log_action(actor: str, action: str, target: str, outcome: object, at: datetime) -> None:
    """Log one operator action: who, what, on what, what came of it, when."""
    logger.info(
        "operator action %s by %s on %s: %s",
        action,
        actor,
        target,
        outcome,
        extra={
            "operator_actor": actor,
            "operator_action": action,
            "operator_target": target,
            "operator_outcome": outcome,
            "operator_at": time_key(at),
        },
    )


class Operator:
    """The operator actions of one engine (``Engine.retry_task`` and the others call these)."""

    def __init__(self, context: EngineContext, dispatcher: Dispatcher):
        ports = context.ports
        self._clock = ports.clock
        self._tasks = ports.task_store
        self._projections = ports.projection_store
        self._poison = ports.poison_store
        self._transport = ports.transport
        self._dispatcher = dispatcher

    async def retry_task(
        self, task_id: str, *, actor: str = "api", failed_attempt: int | None = None
    ) -> bool:
        """Run a failed task again, as its next attempt; whether this call started it.

        Args:
            task_id: the stored task (final failures are always stored).
            actor: who asks (logged).
            failed_attempt: retry only if the task failed at this attempt (its
                ``retry_count``): a page sends the attempt it showed, so a request replayed
                after the new attempt failed too does not start a third.

        Returns ``False`` (and changes nothing) when the task is not stored, not failed, failed
        at another attempt than ``failed_attempt``, or was just retried by someone else.

        Raises:
            PublishError: the task could not be published; it stays ``scheduled``.
        """
        now = self._clock.now()
        stored = await self._tasks.get(task_id)
        if stored is None or stored.status is not TaskStatus.FAILED:
            state = "not stored" if stored is None else stored.status.value
            log_action(actor, "retry", task_id, f"refused: {state}", now)
            return False
        attempt = stored.retry_count
        if failed_attempt is not None and failed_attempt != attempt:
            log_action(actor, "retry", task_id, f"refused: failed at attempt {attempt}", now)
            return False
        task = _next_generation(stored, actor, now)
        if not await self._tasks.reopen(task, failed_attempt=attempt):
            log_action(actor, "retry", task_id, "refused: retried meanwhile", now)
            return False
        # the row before the record goes out, as in dispatch: a fast run's terminal row wins
        await self._dispatcher.project([task], "scheduled", now)
        try:
            await self._transport.publish([task])
        except PublishError:
            raise
        except Exception as exc:
            raise PublishError(
                f"task {task_id} was retried but could not be published: {exc}",
                task_ids=[task_id],
            ) from exc
        log_action(actor, "retry", task_id, f"attempt {attempt + 1} started", now)
        return True

    async def retry_failed(
        self,
        task_type: str | None = None,
        queue_id: str | None = None,
        since: datetime | None = None,
        *,
        actor: str = "api",
        limit: int = 1000,
    ) -> int:
        """Retry failed tasks in bulk; return how many this call started.

        The failed tasks are found through the overview's index of failed rows, so these are
        the failed tasks of entities (a task without an entity has no projection row).

        Args:
            task_type, queue_id: only tasks of this type / queue.
            since: only tasks that failed at or after this time.
            actor: who asks (logged).
            limit: retry at most this many.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidQueryError(f"limit={limit!r}; give a whole number >= 1", field="limit")
        where = RecentFilter(status="failed", kind="task", task_type=task_type, since=since)
        started = 0
        seen: set[str] = set()
        cursor: str | None = None
        while started < limit:
            page = await self._projections.recent(where, limit=MAX_PAGE, cursor=cursor)
            for row in page.rows:
                if queue_id is not None and row.queue_id != queue_id:
                    continue
                if row.task_id in seen:
                    continue
                seen.add(row.task_id)
                if await self.retry_task(row.task_id, actor=actor):
                    started += 1
                    if started >= limit:
                        break
            cursor = page.cursor
            if cursor is None:
                break
        filters = f"task_type={task_type} queue_id={queue_id} since={since}"
        log_action(actor, "retry_failed", filters, f"{started} started", self._clock.now())
        return started

    async def redrive_poison(
        self,
        keys: Sequence[str] | None = None,
        *,
        reason: str | None = None,
        queue_id: str | None = None,
        since: datetime | None = None,
        actor: str = "api",
    ) -> int:
        """Decode poison records again (after a fix to the producer or the codec) and add
        each task that now decodes; return how many tasks this call added.

        Records are chosen by ``keys`` (``PoisonRecord.key``) or by filter (``reason``,
        ``queue_id``, first seen at or after ``since``); with neither, every record. A
        record that still does not decode is left as it is. The task keeps the id it was
        sent with (a record without one gets an id derived from the record's key), and is
        created in the task store only if no task has that id: a redrive sent twice adds it
        once.

        Raises:
            PublishError: a task could not be published; it stays ``scheduled``.
        """
        now = self._clock.now()
        wanted = None if keys is None else set(keys)
        records = [
            r
            for r in await self._poison.recent(POISON_LOOKBACK)
            if (wanted is None or r.key in wanted)
            and (reason is None or r.reason == reason)
            and (queue_id is None or r.queue_id == queue_id)
            and (since is None or r.seen_at >= to_utc(since))
        ]
        added = 0
        for record in records:
            task = redrive_task(record, now)
            if task is None:
                log_action(actor, "redrive", record.key, "refused: still does not decode", now)
                continue
            created, _ = await self._dispatcher.create_once(task)
            if not created:
                log_action(actor, "redrive", record.key, f"refused: task {task.id} exists", now)
                continue
            try:
                await self._transport.publish([task])
            except PublishError:
                raise
            except Exception as exc:
                raise PublishError(
                    f"poison record {record.key}: task {task.id} could not be published: {exc}",
                    task_ids=[task.id or ""],
                ) from exc
            added += 1
            log_action(actor, "redrive", record.key, f"task {task.id} added", now)
        return added


def redrive_task(record: PoisonRecord, now: datetime) -> Task | None:
    """The task a poison record's bytes decode to now (to be stored and sent), or ``None``."""
    try:
        task = decode_task(record.data)
    except CodecError:
        return None
    return task.copy_with(
        id=task.id or derived_id(record.key, "redrive"),
        status=TaskStatus.SCHEDULED,
        stored=True,
        updated_at=now,
        processing_started_at=None,
    )


def _next_generation(stored: Task, actor: str, now: datetime) -> Task:
    """The failed task's next attempt, started by an operator: due now, a fresh attempt (its
    errors and result gone; its expiry lifted, the operator wants it run), one generation on."""
    generation = generation_of(stored) + 1
    return stored.copy_with(
        status=TaskStatus.SCHEDULED,
        execute_at=now,
        updated_at=now,
        expires_at=None,
        processing_started_at=None,
        execution_result=None,
        execution_stats={"retry_count": stored.retry_count + 1},
        metadata={
            **stored.metadata,
            OPERATOR_RETRIES: generation,
            OPERATOR_RETRY: {
                "by": actor,
                "at": time_key(now),
                "error": stored.execution_stats.get("last_error"),
            },
        },
        stored=True,
    )
