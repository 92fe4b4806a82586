"""Recording a batch's outcomes: the writes ``tq_aws.core.outcomes`` plans, made through the
ports in the order that makes a crash at any point safe to redeliver:

1. flows and children of finished attempts are dispatched, retries are scheduled
   (deterministic names and ids, so a repeat is harmless);
2. task records are written (retries, final failures, ignored, expired, stored successes);
3. terminal projections are written;
4. flow steps' final outcomes reach their barriers (first write wins per step), joins go out;
5. the caller acknowledges the batch.

A crash before 2 redelivers the batch and the tasks run again (at-least-once). A crash after 2
redelivers tasks whose stored copy is terminal: the claim drops them and re-writes their
terminal projection and flow report, so nothing is lost and nothing runs twice.

A write refused for a task's own data (``tq_aws.core.error_kinds``: a value a store or the
scheduler refuses) does not hold the batch back: the outcomes are written again task by task
(every write is safe to repeat), the task at fault ends ``failed`` with the reason in its
``execution_stats`` and the others are recorded as usual. A task whose failure cannot be
written either is handed back to the caller (``Recorded.unrecordable``), which parks its record
in the poison store. Any other failure raises: the batch comes again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tq_aws.core.error_kinds import describe, is_data_error
from tq_aws.core.outcomes import (
    PERMANENT_KEY,
    BatchWrites,
    data_failure,
    flow_reports,
    plan_writes,
)
from tq_aws.core.runner import BatchOutcome, TaskOutcome
from tq_aws.core.task import Task
from tq_aws.engine import blobs
from tq_aws.engine.context import EngineContext
from tq_aws.engine.dispatch import Dispatcher, schedule_name
from tq_aws.engine.flows import FlowCoordinator
from tq_aws.engine.handoff import AsyncTaskManager, watchdog
from tq_aws.ports import ScheduledTask

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Recorded:
    """What ``OutcomeRecorder.record`` wrote."""

    succeeded: int = 0
    failed: int = 0
    """Final failures and retried attempts."""
    unrecordable: list[tuple[Task, BaseException]] = field(default_factory=list)
    """Tasks whose outcome could not be written even as a failure, for their own data, with
    the error: their records are to be parked in the poison store."""

    def add(self, other: Recorded) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.unrecordable.extend(other.unrecordable)


class OutcomeRecorder:
    """Makes the writes of a batch's outcomes, counts them and tells the listeners."""

    def __init__(
        self,
        context: EngineContext,
        *,
        dispatcher: Dispatcher,
        flows: FlowCoordinator,
        async_tasks: AsyncTaskManager | None = None,
    ):
        ports = context.ports
        self._clock = ports.clock
        self._registry = context.registry
        self._dispatcher = dispatcher
        self._flows = flows
        self._scheduler = ports.scheduler
        self._store = ports.task_store
        self._blobs = ports.blob_store
        self._events = context.events
        self._stats = context.stats
        self._result_limit = context.settings.result_limit
        self._async_tasks = async_tasks

    async def record(
        self,
        outcome: BatchOutcome,
        expired: Sequence[Task] = (),
        pending_processing: Sequence[Task] = (),
    ) -> Recorded:
        """Write what the batch's outcomes imply; return how many tasks succeeded and failed
        (retried attempts included), and the tasks that could not be recorded at all.

        A write refused for a task's own data ends that task instead (the module docstring).
        Raises when a write failed for any other reason: the batch must come again."""
        try:
            return await self._record(outcome, expired, pending_processing)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            logger.warning(
                "a task's own data kept a batch's outcomes from being written (%s); writing "
                "them task by task",
                describe(exc),
            )
        return await self._record_each(outcome, expired, pending_processing)

    async def _record_each(
        self, outcome: BatchOutcome, expired: Sequence[Task], pending_processing: Sequence[Task]
    ) -> Recorded:
        """The outcomes written one task at a time, so that only the task whose own data is
        refused ends ``failed`` (every write is safe to repeat, so what the first try wrote
        is harmless)."""
        done = Recorded()
        pending = {t.id: t for t in pending_processing}
        for o in outcome.outcomes:
            rows = [pending[o.task.id]] if o.task.id in pending else []
            done.add(await self._record_one(o.task, BatchOutcome([o], []), (), rows))
        for task in expired:
            done.add(await self._record_one(task, BatchOutcome([], []), [task], ()))
        # children and flows of batch executors, tied to no task of the batch
        for child in outcome.batch_children:
            try:
                await self._dispatcher.dispatch([child])
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                done.add(await self._end_child(child, exc))
        for start in outcome.batch_flows:
            try:
                await self._flows.start([start])
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                logger.error("a flow of a batch executor could not start: %s", describe(exc))
        return done

    async def _record_one(
        self,
        task: Task,
        part: BatchOutcome,
        expired: Sequence[Task],
        rows: Sequence[Task],
    ) -> Recorded:
        try:
            return await self._record(part, expired, rows)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            reason = f"its outcome could not be recorded: {describe(exc)}"
            logger.error("task %s (%s) ends failed: %s", task.id, task.type, reason)
        if not part.outcomes:  # an expired task: recorded as failed, from what it was
            part = BatchOutcome([TaskOutcome(task, None, None)], [])
        try:
            return await self._record(part, (), rows, ended={task.id or "": reason})
        except Exception as exc:
            if not is_data_error(exc):
                raise
            logger.error(
                "task %s (%s) could not be recorded even as failed: %s",
                task.id,
                task.type,
                describe(exc),
            )
            return Recorded(unrecordable=[(task, exc)])

    async def _end_child(self, child: Task, exc: BaseException) -> Recorded:
        """A batch executor's child that could not be added: kept ``failed`` with the reason."""
        reason = f"it could not be added: {describe(exc)}"
        logger.error("task %s (%s) ends failed: %s", child.id, child.type, reason)
        failed = data_failure(child, reason, None, self._clock.now()).copy_with(stored=True)
        try:
            await self._store.put([failed])
        except Exception as again:
            if not is_data_error(again):
                raise
            return Recorded(unrecordable=[(child, again)])
        self._stats.failed += 1
        return Recorded(failed=1)

    async def _record(
        self,
        outcome: BatchOutcome,
        expired: Sequence[Task],
        pending_processing: Sequence[Task],
        *,
        ended: Mapping[str, str] | None = None,
    ) -> Recorded:
        now = self._clock.now()
        plan = plan_writes(
            outcome,
            expired,
            pending_processing,
            now=now,
            result_limit=self._result_limit,
            events=self._events.wants("task_completed"),
            ended=ended,
        )
        if plan.nothing:
            self._stats.executed += plan.plain_successes
            return Recorded(plan.plain_successes)
        for item in plan.offloads:  # results too large for a record, before anything refers
            marker = await blobs.offload(
                self._blobs, item.key, item.value, item.size, self._result_limit
            )
            plan.set_result(item.index, marker)

        # 1. flows and children of finished attempts, and the next attempts of retried ones.
        if plan.starts:
            await self._flows.start(plan.starts)
        if plan.children:
            await self._dispatcher.dispatch(plan.children)
        if plan.retries:
            await self._scheduler.schedule(
                [
                    ScheduledTask(at=p.at, name=schedule_name(p.task), task=p.task)
                    for p in plan.retries
                ]
            )
        if plan.handoffs:  # brought back by the scheduler if this worker dies before they end
            await self._scheduler.schedule(
                [watchdog(t, now, self._registry, self._async_tasks) for t in plan.handoffs]
            )
        # 2. durable records.
        to_store = plan.stored()
        if to_store:
            await self._store.put(to_store)
        # 3. projections, in one store call: tasks that will retry show ``processing`` even
        # within the grace; every other task its terminal row.
        rows = plan.projection_rows()
        if rows:
            await self._dispatcher.project_rows(rows, now)

        stats = self._stats
        stats.executed += plan.succeeded
        stats.failed += len(plan.finals)
        stats.retried += len(plan.retries)
        stats.ignored += len(plan.ignored)
        stats.expired += len(plan.expired)
        await self._emit(plan, expired)  # before the flow events these outcomes may cause

        # 4. flow barriers and joins.
        finished = plan.finished()
        if finished:
            await self.report_flows(finished)
        return Recorded(plan.succeeded, plan.failed)

    async def report_flows(self, finished: Iterable[Task]) -> None:
        """Report finished tasks to their flows: joins onto the flow's row, steps' final
        outcomes to their barriers."""
        reports = flow_reports(finished)
        for join in reports.joins:
            await self._flows.on_join_finished(join.task, join.status, join.error)
        if reports.steps:
            await self._flows.report(reports.steps)

    async def _emit(self, plan: BatchWrites, expired: Sequence[Task]) -> None:
        """Tell the providers, in the order the outcomes were written: each failed attempt
        with its real error and when the next one is due, every task that failed for good as
        exhausted too; an expired task as it was delivered."""
        ev = self._events
        inline = plan.inline
        for t in plan.successes:
            await ev.task_completed(t, inline.get(t.id or ""))
        for failed, retry in zip(plan.retried, plan.retries, strict=True):
            await ev.task_failed(failed, retry.at)
        for t in plan.finals:
            permanent = bool(t.execution_stats.get(PERMANENT_KEY))
            await ev.task_failed(t, None, permanent=permanent)
            await ev.task_exhausted(t, permanent=permanent)
        for t in plan.ignored:
            await ev.task_ignored(t, str(t.execution_stats.get("ignored_reason")))
        for t in expired:
            await ev.task_expired(t)
