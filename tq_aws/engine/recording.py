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
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from tq_aws.core.outcomes import BatchWrites, flow_reports, plan_writes
from tq_aws.core.runner import BatchOutcome
from tq_aws.core.task import Task
from tq_aws.engine import blobs
from tq_aws.engine.context import EngineContext
from tq_aws.engine.dispatch import Dispatcher, schedule_name
from tq_aws.engine.flows import FlowCoordinator
from tq_aws.engine.handoff import AsyncTaskManager, watchdog
from tq_aws.ports import ScheduledTask

logger = logging.getLogger(__name__)


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
    ) -> tuple[int, int]:
        """Write what the batch's outcomes imply; return how many tasks succeeded and failed
        (retried attempts included). Raises when a write failed: the batch must come again."""
        now = self._clock.now()
        plan = plan_writes(
            outcome,
            expired,
            pending_processing,
            now=now,
            result_limit=self._result_limit,
            events=bool(self._events),
        )
        if plan.nothing:
            self._stats.executed += plan.plain_successes
            return plan.plain_successes, 0
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
        if self._events:  # before the flow events these outcomes may cause
            self._emit(plan, expired)

        # 4. flow barriers and joins.
        finished = plan.finished()
        if finished:
            await self.report_flows(finished)
        return plan.succeeded, plan.failed

    async def report_flows(self, finished: Iterable[Task]) -> None:
        """Report finished tasks to their flows: joins onto the flow's row, steps' final
        outcomes to their barriers."""
        reports = flow_reports(finished)
        for join in reports.joins:
            await self._flows.on_join_finished(join.task, join.status, join.error)
        if reports.steps:
            await self._flows.report(reports.steps)

    def _emit(self, plan: BatchWrites, expired: Sequence[Task]) -> None:
        """Tell the listeners, in the order the outcomes were written; an expired task as
        it was delivered."""
        ev = self._events
        inline = plan.inline
        for t in plan.successes:
            ev.on_task_completed(t, inline.get(t.id or ""))
        # the attempt that failed, and when the next one is due
        for failed, retry in zip(plan.retried, plan.retries, strict=True):
            ev.on_task_failed(failed, failed.execution_stats.get("last_error"), True, retry.at)
        for t in plan.finals:
            error = t.execution_stats.get("last_error")
            ev.on_task_failed(t, error, False, None)
            ev.on_task_exhausted(t, error, t.retry_count + 1)
        for t in plan.ignored:
            ev.on_task_ignored(t, t.execution_stats["ignored_reason"])
        for t in expired:
            ev.on_task_expired(t)
