"""Processing one delivered batch: decode, claim, run, post-process.

Post-processing writes in the order that makes a crash at any point safe to redeliver:

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

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from tq_aws.core.actions import NO_DECISION, BatchBook, Decision
from tq_aws.core.executors import ExecutorSpec
from tq_aws.core.flows import TIMEOUT_TYPE, FlowStart, flow_meta
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.retry import RetryPlan, plan_retry
from tq_aws.core.runner import BatchOutcome, Runner, TaskOutcome
from tq_aws.core.task import Task, TaskStatus
from tq_aws.engine import blobs
from tq_aws.engine.context import EngineContext
from tq_aws.engine.dispatch import Dispatcher, schedule_name, scheduled
from tq_aws.engine.flows import FlowCoordinator, step_result
from tq_aws.engine.handoff import AsyncTaskManager
from tq_aws.ports import (
    ClaimState,
    Delivery,
    ScheduledTask,
)

logger = logging.getLogger("tq_aws.processor")

EARLY_TOLERANCE = timedelta(milliseconds=1)
WATCHDOG_MARGIN = 60.0
"""Seconds past a handed-off task's maximum duration before its record is delivered again."""


class BatchProcessor:
    """Runs delivered batches through the runner and persists their outcomes."""

    def __init__(
        self,
        context: EngineContext,
        *,
        runner: Runner,
        dispatcher: Dispatcher,
        flows: FlowCoordinator,
        async_tasks: AsyncTaskManager | None = None,
    ):
        ports = context.ports
        self._clock = ports.clock
        self._registry = context.registry
        self._runner = runner
        self._dispatcher = dispatcher
        self._flows = flows
        self._scheduler = ports.scheduler
        self._store = ports.task_store
        self._blobs = ports.blob_store
        self._poison_store = ports.poison_store
        self._events = context.events
        self._stats = context.stats
        self._result_limit = context.settings.result_limit
        self._processing_grace = context.settings.processing_grace
        self._async_tasks = async_tasks
        runner.handoff = self.accept_handoff
        self.poison: list[PoisonRecord] = []
        """The poison records this process has seen (the store keeps everyone's)."""

    async def process(self, deliveries: Sequence[Delivery]) -> None:
        """Process a batch; raises only when an outcome could not be recorded (redeliver then)."""
        started = time.perf_counter()
        now = self._clock.now()
        tasks: list[Task] = []
        poison: list[PoisonRecord] = []
        for d in deliveries:
            if d.task is None:
                poison.append(self._poison(d, now))
            else:
                tasks.append(d.task)
        if poison:  # kept before anything runs: if this write fails, the batch comes again
            await self._poison_store.record(poison)
            self.poison.extend(poison)
            self._stats.poison += len(poison)
        if not tasks:
            return
        queue_id = tasks[0].queue_id
        if self._events:
            self._events.on_batch_started(queue_id, len(tasks))
        runnable, expired, sentinels = await self._admit(tasks, now)
        for sentinel in sentinels:
            await self._flows.on_timeout(sentinel)
        first_attempts = [t for t in runnable if t.entity is not None and t.retry_count == 0]
        late: asyncio.Task[None] | None = None
        if first_attempts:
            if self._processing_grace <= 0:
                await self._dispatcher.project(first_attempts, "processing", now)
            else:  # written only if the batch is still running when the grace is over
                late = asyncio.create_task(self._late_processing(first_attempts, now))
        outcome = await self._runner.run(runnable)
        pending_processing: list[Task] = []
        if late is not None:
            if late.done():
                await late
            else:
                late.cancel()
                pending_processing = first_attempts
        succeeded, failed = await self._post_process(outcome, expired, pending_processing)
        self._stats.batches += 1
        if self._events:
            self._events.on_batch_completed(
                queue_id, len(tasks), succeeded, failed, time.perf_counter() - started
            )

    async def _late_processing(self, tasks: list[Task], now: datetime) -> None:
        await asyncio.sleep(self._processing_grace)
        await self._dispatcher.project(tasks, "processing", now)

    def _poison(self, delivery: Delivery, now: datetime) -> PoisonRecord:
        error = delivery.error
        record = PoisonRecord(
            queue_id=delivery.queue_id,
            position=delivery.position,
            reason=error.reason if error is not None else "unknown",
            error=str(error),
            data=delivery.data,
            seen_at=now,
        )
        logger.error(
            "undecodable record at %s (%s): %s", record.position, record.reason, record.error
        )
        return record

    async def _admit(
        self, tasks: list[Task], now: datetime
    ) -> tuple[list[Task], list[Task], list[Task]]:
        """Drop duplicates and cancelled tasks, hold back early ones, set aside expired ones
        and flow deadline sentinels (handled by the framework, not by an executor)."""
        due_by = now + EARLY_TOLERANCE
        seen: set[str] = set()
        early: list[Task] = []
        runnable: list[Task] = []
        expired: list[Task] = []
        sentinels: list[Task] = []
        # Tasks are sorted as they come until the first stored one; from there on they wait
        # for the claims (one store call), so the runnable ones keep their delivery order.
        awaiting_claims: list[Task] = []
        for task in tasks:
            tid = task.id or ""
            if tid in seen:  # the same record twice in one batch
                self._stats.duplicates_dropped += 1
                continue
            seen.add(tid)
            # Held back before the claim, so an early record leaves a stored task scheduled
            # (and cancellable) until its time.
            execute_at = task.execute_at
            if execute_at is not None:
                if execute_at.tzinfo is not due_by.tzinfo:
                    # Task times are UTC, under pydantic's shared zero-offset tzinfo once
                    # decoded: under one tzinfo object, comparisons skip two utcoffset() calls.
                    due_by = due_by.replace(tzinfo=execute_at.tzinfo)
                if execute_at > due_by:
                    early.append(task)
                    continue
            if awaiting_claims or task.stored:
                awaiting_claims.append(task)
            else:
                if self._sort(task, now, runnable, expired, sentinels):
                    runnable[-1] = await self._with_payload(task)
        if early:
            self._stats.held_back += len(early)
            await self._scheduler.schedule([scheduled(t, now) for t in early])
        if not awaiting_claims:
            return runnable, expired, sentinels
        stored = [t for t in awaiting_claims if t.stored]
        claims = await self._store.claim(stored, now)
        repairs: list[Task] = []
        for task in awaiting_claims:
            claim = claims.get(task.id or "")
            if claim is not None and claim.state not in (ClaimState.RUN, ClaimState.ABSENT):
                self._stats.duplicates_dropped += claim.state is not ClaimState.CANCELLED
                if claim.state is ClaimState.DONE and claim.stored is not None:
                    repairs.append(claim.stored)
                logger.info("task %s not run: stored copy is %s", task.id, claim.state.value)
            else:
                if self._sort(task, now, runnable, expired, sentinels):
                    runnable[-1] = await self._with_payload(task)
        if repairs:  # outcomes recorded before a crash: re-write what may not have landed
            await self._dispatcher.project_rows([_terminal_row(t) for t in repairs], now)
            await self._report_flows(repairs)
        return runnable, expired, sentinels

    @staticmethod
    def _sort(
        task: Task,
        now: datetime,
        runnable: list[Task],
        expired: list[Task],
        sentinels: list[Task],
    ) -> bool:
        """File a due task that may run as a flow deadline sentinel, expired, or runnable;
        return whether it went to ``runnable`` with its payload in the BlobStore."""
        if task.type == TIMEOUT_TYPE and (flow_meta(task) or {}).get("is_timeout"):
            sentinels.append(task)
        elif task.expires_at is not None and now >= task.expires_at:
            expired.append(task)
        else:
            runnable.append(task)
            return blobs.is_blob_ref(task.payload)  # a payload too large for the record
        return False

    async def _with_payload(self, task: Task) -> Task:
        payload = await blobs.resolve(self._blobs, task.payload)
        return task.copy_with(**{"payload": payload})

    async def _post_process(
        self, outcome: BatchOutcome, expired: list[Task], pending_processing: list[Task]
    ) -> tuple[int, int]:
        now = self._clock.now()
        to_store: list[Task] = []
        successes: list[Task] = []
        finals: list[Task] = []
        ignored: list[Task] = []
        retries: list[RetryPlan] = []
        retried: list[Task] = []  # the failed attempts behind ``retries``, for events
        inline: dict[str, Any] = {}  # results as the executor gave them, for events
        children: list[Task] = list(outcome.batch_children)
        starts: list[FlowStart] = list(outcome.batch_flows)
        handoffs: list[Task] = []
        plain_successes = 0
        events = bool(self._events)
        for o in outcome.outcomes:
            task = o.task
            if o.handed_off:
                handoffs.append(self._handed_off_copy(task, now))
                continue
            if o.ignored_reason is not None:
                stats = {
                    **task.execution_stats,
                    "ignored_reason": o.ignored_reason,
                    "ignored_at": now.isoformat(),
                }
                ignored.append(
                    task.copy_with(
                        **{
                            "status": TaskStatus.IGNORED,
                            "updated_at": now,
                            "execution_stats": stats,
                        }
                    )
                )
                continue
            decision = o.decision
            assert decision is not None
            if decision.kind == "success":
                children.extend(o.children)
                starts.extend(o.flows)
                if not (task.stored or task.entity or task.metadata or events):
                    plain_successes += 1  # nothing to record: no copy needed (the hot path)
                    continue
                result = await blobs.offload(
                    self._blobs,
                    f"results/{task.id}",
                    decision.result,
                    decision.result_size,
                    self._result_limit,
                )
                done = task.copy_with(
                    **{
                        "status": TaskStatus.EXECUTED,
                        "updated_at": now,
                        "execution_result": result,
                    }
                )
                successes.append(done)
                inline[task.id or ""] = decision.result
                if task.stored:
                    to_store.append(done)
                continue
            stats = dict(task.execution_stats)
            if decision.error is not None:
                stats["last_error"] = decision.error
                stats.pop("last_error_stack", None)
            if decision.stack is not None:
                stats["last_error_stack"] = decision.stack
            if decision.meta:
                stats.update(decision.meta)
                # the framework's counter is not the executor's to change: it bounds retries
                stats["retry_count"] = task.retry_count
            failed = task.copy_with(**{"execution_stats": stats, "updated_at": now})
            spec = o.spec
            plan = plan_retry(
                failed,
                executor_retries=spec.retries if spec else 0,
                executor_retry_after=spec.retry_after if spec else 2.0,
                now=now,
            )
            if plan is None:
                final = failed.copy_with(
                    **{
                        "status": TaskStatus.FAILED,
                        "execution_stats": {**stats, "failed_at": now.isoformat()},
                    }
                )
                finals.append(final)
                children.extend(o.children)
                starts.extend(o.flows)
            else:
                # A retry is stored when a durable copy exists already (it must move on) or the
                # executor asked for failures to be kept; otherwise it travels by the scheduler.
                if task.stored or (spec is not None and spec.store_on_failure):
                    plan = RetryPlan(plan.task.copy_with(**{"stored": True}), plan.at, plan.delay)
                retries.append(plan)
                retried.append(failed)
        if plain_successes == len(outcome.outcomes) and not (
            expired or children or starts or pending_processing
        ):  # nothing to write: the common batch of plain tasks
            self._stats.executed += plain_successes
            return plain_successes, 0
        expired_done = [
            t.copy_with(**{"status": TaskStatus.EXPIRED, "updated_at": now}) for t in expired
        ]
        to_store.extend(expired_done)

        # 1. flows and children of finished attempts, and the next attempts of retried ones.
        if starts:
            await self._flows.start(starts)
        if children:
            await self._dispatcher.dispatch(children)
        if retries:
            await self._scheduler.schedule(
                [ScheduledTask(at=p.at, name=schedule_name(p.task), task=p.task) for p in retries]
            )
        if handoffs:  # brought back by the scheduler if this worker dies before they end
            await self._scheduler.schedule([self._watchdog(t, now) for t in handoffs])
        # 2. durable records.
        to_store.extend(handoffs)
        to_store.extend(p.task for p in retries if p.task.stored)
        to_store.extend(finals)
        to_store.extend(ignored)
        if to_store:
            await self._store.put(to_store)
        # 3. projections, in one store call: tasks that will retry show ``processing`` even
        # within the grace; every other task its terminal row.
        rows: list[tuple[Task, str, str | None, object]] = []
        if pending_processing:
            retrying = {p.task.id for p in retries}
            rows.extend(
                (t, "processing", None, None) for t in pending_processing if t.id in retrying
            )
        rows.extend(
            _terminal_row(t)
            for t in (*successes, *finals, *ignored, *expired_done)
            if t.entity is not None
        )
        if rows:
            await self._dispatcher.project_rows(rows, now)

        self._stats.executed += len(successes) + plain_successes
        self._stats.failed += len(finals)
        self._stats.retried += len(retries)
        self._stats.ignored += len(ignored)
        self._stats.expired += len(expired)
        if self._events:  # before the flow events these outcomes may cause
            retry_pairs = list(zip(retried, retries, strict=True))
            self._emit(successes, finals, retry_pairs, ignored, expired, inline)

        # 4. flow barriers and joins.
        if successes or finals or ignored or expired_done:
            await self._report_flows([*successes, *finals, *ignored, *expired_done])
        return len(successes) + plain_successes, len(finals) + len(retries)

    # -- handed-off tasks ----------------------------------------------------------------------

    def accept_handoff(
        self, spec: ExecutorSpec, task: Task, job: asyncio.Task[None], book: BatchBook
    ) -> bool:
        """Offered by the runner: a task still running after its handoff timeout."""
        if self._async_tasks is None or not self._async_tasks.can_accept_task():
            return False

        async def complete(evicted: bool) -> None:
            await self._finish_handoff(spec, task, book, evicted)

        return self._async_tasks.handoff_task(task, job, complete, task_timeout=spec.max_duration)

    def _handed_off_copy(self, task: Task, now: datetime) -> Task:
        return task.copy_with(
            **{
                "stored": True,
                "status": TaskStatus.PROCESSING,
                "processing_started_at": now,
                "updated_at": now,
            }
        )

    def _watchdog(self, task: Task, now: datetime) -> ScheduledTask:
        limit = self._async_tasks.default_max_duration if self._async_tasks is not None else 600.0
        spec = self._registry.get(task.queue_id, task.type)
        if spec is not None and spec.max_duration is not None:
            limit = spec.max_duration
        at = now + timedelta(seconds=limit + WATCHDOG_MARGIN)
        return ScheduledTask(at=at, name=f"{schedule_name(task)}.h", task=task)

    async def _finish_handoff(
        self, spec: ExecutorSpec, task: Task, book: BatchBook, evicted: bool
    ) -> None:
        tid = task.id or ""
        if evicted and tid not in book.decisions:
            limit = spec.max_duration or (
                self._async_tasks.default_max_duration if self._async_tasks else 0
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
        await self._post_process(BatchOutcome([outcome], []), [], [])
        await self._scheduler.cancel([f"{schedule_name(task)}.h"])

    async def _report_flows(self, finished: list[Task]) -> None:
        steps = []
        for task in finished:
            meta = flow_meta(task)
            if meta is None:
                continue
            if meta.get("is_join"):
                if task.status is TaskStatus.EXECUTED:
                    await self._flows.on_join_finished(task, "executed", None)
                else:
                    error = task.execution_stats.get("last_error") or "join failed"
                    await self._flows.on_join_finished(task, "failed", str(error))
                continue
            result = step_result(task)
            if result is not None:
                steps.append((task, result))
        if steps:
            await self._flows.report(steps)

    def _emit(
        self,
        successes: list[Task],
        finals: list[Task],
        retries: list[tuple[Task, RetryPlan]],
        ignored: list[Task],
        expired: list[Task],
        inline: dict[str, Any],
    ) -> None:
        ev = self._events
        for t in successes:
            ev.on_task_completed(t, inline.get(t.id or ""))
        for failed, plan in retries:  # the attempt that failed, and when the next one is due
            ev.on_task_failed(failed, failed.execution_stats.get("last_error"), True, plan.at)
        for t in finals:
            error = t.execution_stats.get("last_error")
            ev.on_task_failed(t, error, False, None)
            ev.on_task_exhausted(t, error, t.retry_count + 1)
        for t in ignored:
            ev.on_task_ignored(t, t.execution_stats["ignored_reason"])
        for t in expired:
            ev.on_task_expired(t)


def _terminal_row(task: Task) -> tuple[Task, str, str | None, object]:
    """The projection row of a task in a terminal status: executed with its result, the
    others with their reason."""
    stats = task.execution_stats
    if task.status is TaskStatus.EXECUTED:
        return task, "executed", None, task.execution_result
    if task.status is TaskStatus.IGNORED:
        return task, "ignored", str(stats.get("ignored_reason") or "ignored"), None
    if task.status is TaskStatus.EXPIRED:
        return task, "expired", "expired", None
    if task.status is TaskStatus.CANCELLED:
        return task, "cancelled", None, None
    return task, "failed", str(stats.get("last_error") or "task failed"), None
