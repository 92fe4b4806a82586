"""Processing one delivered batch: admission (poison, duplicates, claims, early, expired and
sentinel tasks), the ``processing`` rows, the run, then the recording of its outcomes.

Recording (``tq_aws.engine.recording``, planned by ``tq_aws.core.outcomes``) writes in the order
that makes a crash at any point safe to redeliver; its docstring gives that order. The caller
acknowledges the batch once ``process`` returns.

Parking: a record is set aside in the poison store with its bytes, the reason and the exception
(an operator redrives it after a fix) when its task could not be recorded even as failed, for
its own data (``unrecordable``), or when its batch failed to record ``max_deliveries`` times
for a reason that is not a passing fault (``max_deliveries``, ``settle_unrecorded``: the
runtimes call it when ``process`` raised). Either way its key moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from tq_aws.core.codec import encode_task
from tq_aws.core.error_kinds import ErrorKind, describe, error_kind
from tq_aws.core.flows import TIMEOUT_TYPE, flow_meta
from tq_aws.core.outcomes import terminal_row
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.runner import Runner
from tq_aws.core.task import Task
from tq_aws.engine import blobs
from tq_aws.engine.context import EngineContext
from tq_aws.engine.dispatch import Dispatcher, scheduled
from tq_aws.engine.flows import FlowCoordinator
from tq_aws.engine.handoff import AsyncTaskManager, HandoffHook
from tq_aws.engine.recording import OutcomeRecorder
from tq_aws.ids import new_id
from tq_aws.ports import ClaimState, Delivery

logger = logging.getLogger(__name__)

EARLY_TOLERANCE = timedelta(milliseconds=1)

UNRECORDABLE = "unrecordable"
"""Poison reason: the task's outcome could not be recorded even as failed (its own data)."""
MAX_DELIVERIES = "max_deliveries"
"""Poison reason: the record's batch could not be recorded in ``max_deliveries`` deliveries."""


class BatchProcessor:
    """Runs delivered batches through the runner and has their outcomes recorded."""

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
        self._runner = runner
        self._dispatcher = dispatcher
        self._flows = flows
        self._scheduler = ports.scheduler
        self._store = ports.task_store
        self._blobs = ports.blob_store
        self._poison_store = ports.poison_store
        self._events = context.events
        self._stats = context.stats
        self._processing_grace = context.settings.processing_grace
        self.max_deliveries = context.settings.max_deliveries
        """Deliveries after which a record that could not be recorded is parked (``None``:
        never)."""
        self._recorder = OutcomeRecorder(
            context, dispatcher=dispatcher, flows=flows, async_tasks=async_tasks
        )
        runner.handoff = HandoffHook(async_tasks, ports.scheduler, self._recorder.record).accept
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
            await self._events.record_poisoned(poison)
        if not tasks:
            return
        queue_id = tasks[0].queue_id
        events = self._events
        await events.batch_started(queue_id, tasks)
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
        recorded = await self._recorder.record(outcome, expired, pending_processing)
        if recorded.unrecordable:
            await self._park_unrecordable(deliveries, recorded.unrecordable, now)
        self._stats.batches += 1
        await events.batch_completed(
            queue_id,
            len(tasks),
            recorded.succeeded,
            recorded.failed,
            time.perf_counter() - started,
        )

    async def settle_unrecorded(
        self, deliveries: Sequence[Delivery], error: BaseException
    ) -> list[Delivery]:
        """``process`` raised ``error`` for ``deliveries``: settle, and return, the records that
        have now failed ``max_deliveries`` deliveries; the caller acknowledges those and gives
        the others back.

        A passing fault (``ErrorKind.TRANSIENT``: throttling, timeouts, connections) counts
        nothing, so an outage parks nothing. A source that counts deliveries (SQS
        ``ApproximateReceiveCount``, ``Delivery.deliveries``) is taken at its word; for the
        others (Kinesis) the poison store counts the failed deliveries of each position.

        A record due is run again alone first (when it shared its batch), so that only the
        record that fails by itself is parked, not its neighbours: recorded alone, it is
        settled; failing alone (not for a passing fault), it is parked in the poison store. A
        key's records are settled in order: one that is not settled holds back the later ones
        of its key. Raises when the count or the poison store write fails."""
        bound = self.max_deliveries
        decoded = [d for d in deliveries if d.task is not None]
        if bound is None or not decoded or error_kind(error) is ErrorKind.TRANSIENT:
            return []
        uncounted = [d for d in decoded if d.deliveries is None]
        counted: dict[int, int] = {id(d): d.deliveries or 0 for d in decoded if d.deliveries}
        if uncounted:
            counts = await self._poison_store.count_failures(
                [(d.queue_id, d.position) for d in uncounted], token=new_id()
            )
            counted.update((id(d), n) for d, n in zip(uncounted, counts, strict=True))
        if not any(counted.get(id(d), 0) >= bound for d in decoded):
            return []
        settled: list[Delivery] = []
        held: set[str] = set()
        alone = len(decoded) > 1
        for d in decoded:
            key = d.partition_key
            if counted.get(id(d), 0) < bound or (key is not None and key in held):
                if key is not None:
                    held.add(key)
                continue
            last: BaseException = error
            if alone:
                try:
                    await self.process([d])
                except Exception as exc:
                    last = exc
                else:
                    settled.append(d)
                    continue
                if error_kind(last) is ErrorKind.TRANSIENT:
                    if key is not None:
                        held.add(key)
                    continue
            record = self._parked(
                d,
                MAX_DELIVERIES,
                f"not recorded in {counted[id(d)]} deliveries (max_deliveries={bound}); "
                f"last error: {describe(last)}",
                self._clock.now(),
            )
            await self._keep([record])
            settled.append(d)
        return settled

    async def _park_unrecordable(
        self,
        deliveries: Sequence[Delivery],
        unrecordable: Sequence[tuple[Task, BaseException]],
        now: datetime,
    ) -> None:
        """Park the records of tasks whose outcome could not be recorded even as failed."""
        by_id: dict[str, Delivery] = {}
        for d in deliveries:
            if d.task is not None:
                by_id.setdefault(d.task.id or "", d)
        records = []
        for task, exc in unrecordable:
            error = f"the task's outcome could not be recorded: {describe(exc)}"
            delivery = by_id.get(task.id or "")
            if delivery is None:  # a child of a batch executor: no record of its own yet
                delivery = Delivery(task.queue_id, _task_bytes(task), f"task/{task.id}", task)
            records.append(self._parked(delivery, UNRECORDABLE, error, now))
        await self._keep(records)

    def _parked(self, delivery: Delivery, reason: str, error: str, now: datetime) -> PoisonRecord:
        return PoisonRecord(
            queue_id=delivery.queue_id,
            position=delivery.position,
            reason=reason,
            error=error,
            data=delivery.data,
            seen_at=now,
        )

    async def _keep(self, records: list[PoisonRecord]) -> None:
        await self._poison_store.record(records)
        self.poison.extend(records)
        self._stats.poison += len(records)
        await self._events.record_poisoned(records)  # logged by FailureLog

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
        return record  # logged by FailureLog once it is kept

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
        if len({t.id for t in tasks}) < len(tasks):  # the same task more than once
            kept = latest_attempts(tasks)
            self._stats.duplicates_dropped += len(tasks) - len(kept)
            tasks = kept
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
            await self._dispatcher.project_rows([terminal_row(t) for t in repairs], now)
            await self._recorder.report_flows(repairs)
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


def _task_bytes(task: Task) -> bytes:
    """The record of ``task`` as the codec writes it, or its JSON as far as it goes."""
    try:
        return encode_task(task)
    except Exception:  # what could not be written: keep what can be
        return task.model_dump_json(fallback=repr).encode()


def latest_attempts(tasks: list[Task]) -> list[Task]:
    """One copy per task id: its latest attempt, where that copy was delivered.

    A batch may hold a stale copy of a task (a redelivered earlier attempt) ahead of its
    next attempt (a retry, an operator's retry). Keeping the first copy would drop the next
    attempt as a duplicate and the stale one as stale, and the task would never run again."""
    best: dict[str, int] = {}
    for index, task in enumerate(tasks):
        kept = best.get(task.id or "")
        if kept is None or task.retry_count > tasks[kept].retry_count:
            best[task.id or ""] = index
    return [task for index, task in enumerate(tasks) if best[task.id or ""] == index]
