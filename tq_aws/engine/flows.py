"""The flow coordinator: starts flows, reports steps' final outcomes to their barrier, and
dispatches each flow's one join.

Exactly one join per flow, whatever the duplicates, crashes or races:

- the join's id derives from the flow id, and it is created in the task store only if absent;
- the flow moves ``open -> joined | aborted | timed_out`` by one conditional write that also
  requires the number of results it read, so the join carries exactly the results recorded
  before it closed; only the caller whose write succeeded dispatches the join;
- a crash between that write and the dispatch is mended on redelivery: the closing step comes
  back as a duplicate (or the timeout sentinel comes back), finds the flow closed and
  dispatches the same join if the task store does not have it yet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from tq_aws.core.flow_steps import step_chunks
from tq_aws.core.flows import (
    FlowRecord,
    FlowStart,
    FlowState,
    FlowStatus,
    RecordOutcome,
    StepResult,
    build_join,
    build_timeout_sentinel,
    decide,
    flow_meta,
    status_of,
)
from tq_aws.core.projections import RANKS, ProjectionRow, generation_of, version_of
from tq_aws.core.task import Task
from tq_aws.engine import blobs
from tq_aws.engine.context import EngineContext
from tq_aws.engine.dispatch import Dispatcher, schedule_name, scheduled

logger = logging.getLogger(__name__)

MAX_CLOSE_ATTEMPTS = 20
CLOSED_ERRORS = {FlowState.ABORTED: "flow_aborted", FlowState.TIMED_OUT: "flow_timeout"}


class FlowCoordinator:
    """Drives flows over the FlowStore port."""

    def __init__(self, context: EngineContext, dispatcher: Dispatcher):
        ports = context.ports
        self._clock = ports.clock
        self._flows = ports.flow_store
        self._tasks = ports.task_store
        self._projections = ports.projection_store
        self._scheduler = ports.scheduler
        self._blobs = ports.blob_store
        self._dispatcher = dispatcher
        self._events = context.events
        self._stats = context.stats

    async def start(self, starts: Sequence[FlowStart]) -> None:
        """Create each barrier (idempotent), arm its deadline and dispatch its steps."""
        if not starts:
            return
        now = self._clock.now()
        rows: list[ProjectionRow] = []
        sentinels = []
        to_dispatch: list[FlowStart] = []
        for start in starts:
            record = start.record
            created = await self._flows.init(record)
            if not created:  # a redelivered starter: only an open flow may need its steps again
                existing = await self._flows.get(record.flow_id)
                if existing is not None and existing.state is not FlowState.OPEN:
                    continue
            if record.deadline is not None:
                sentinels.append(scheduled(build_timeout_sentinel(record), now))
            if record.entity is not None:
                rows.append(_flow_row(record, "processing", now))
            to_dispatch.append(start)
            if created:
                self._stats.flows_started += 1
                await self._events.flow_started(record, start.steps)
        if rows:
            await self._write_rows(rows)
        if sentinels:
            await self._scheduler.schedule(sentinels)
        # a chunk at a time: a flow's steps are built as they go out (tq_aws.core.flow_steps)
        for start in to_dispatch:
            for chunk in step_chunks(start.steps):
                await self._dispatcher.dispatch(chunk)

    async def report(self, outcomes: Iterable[tuple[Task, StepResult]]) -> None:
        """Record steps' final outcomes, one store call per flow, then close what is due."""
        by_flow: dict[str, list[StepResult]] = {}
        for task, result in outcomes:
            meta = flow_meta(task)
            if meta is None or "step_index" not in meta:
                continue
            by_flow.setdefault(str(meta["flow_id"]), []).append(result)
        for flow_id, results in by_flow.items():
            recorded = await self._flows.record_steps(flow_id, results)
            if RecordOutcome.UNKNOWN in recorded:
                logger.error("step results for unknown flow %s dropped", flow_id)
                continue
            dup = RecordOutcome.DUPLICATE in recorded
            self._stats.flow_step_duplicates += recorded.count(RecordOutcome.DUPLICATE)
            await self.evaluate(flow_id, mend=dup)

    async def on_timeout(self, sentinel: Task) -> None:
        """The deadline task arrived: close the flow with partial results if it is still open."""
        meta = flow_meta(sentinel) or {}
        await self.evaluate(str(meta.get("flow_id")), timed_out=True, mend=True)

    async def on_join_finished(self, join: Task, status: str, error: str | None) -> None:
        """Project the join's outcome onto the flow-level entity row."""
        meta = flow_meta(join) or {}
        record = await self._flows.get(str(meta.get("flow_id")))
        if record is None or record.entity is None:
            return
        now = self._clock.now()
        result = join.execution_result if status == "executed" else None
        # an operator's retry of a failed join is a new generation: its outcome replaces the row
        row = _flow_row(
            record, status, now, error=error, result=result, generation=generation_of(join)
        )
        await self._write_rows([row])

    async def status(self, flow_id: str) -> FlowStatus | None:
        record = await self._flows.get(flow_id)
        return None if record is None else status_of(record)

    async def evaluate(self, flow_id: str, *, timed_out: bool = False, mend: bool = False) -> None:
        """Close the flow if its policy, counts or deadline say so; exactly one caller wins.

        With ``mend``, a flow found closed gets its join dispatched if it is missing (the
        closing caller crashed between its close and its dispatch)."""
        for _ in range(MAX_CLOSE_ATTEMPTS):
            record = await self._flows.get(flow_id)
            if record is None:
                logger.error("flow %s is unknown", flow_id)
                return
            if record.state is not FlowState.OPEN:
                if mend:
                    await self._mend(record)
                return
            target = decide(record, timed_out=timed_out)
            if target is None:
                return
            results = await self._flows.results(flow_id)
            if len(results) != record.completed:
                continue  # a result landed between the two reads
            now = self._clock.now()
            if await self._flows.close(
                flow_id, target, expected_completed=record.completed, now=now
            ):
                record.state = target
                record.finished_at = now
                await self._dispatch_join(record, results, now)
                return
        raise RuntimeError(f"flow {flow_id}: could not settle its state; it will be redelivered")

    async def _mend(self, record: FlowRecord) -> None:
        existing = await self._tasks.get(record.join_task_id)
        if existing is not None:
            # the closer got as far as creating the join: finish what it may not have done
            now = record.finished_at or self._clock.now()
            await self._mark_row(record, now)
            await self._dispatcher.publish_stored(existing)
            await self._close_up(record)
            return
        logger.warning("flow %s closed without its join; dispatching it now", record.flow_id)
        await self._dispatch_join(record, await self._flows.results(record.flow_id), None)

    async def _dispatch_join(
        self, record: FlowRecord, results: Sequence[StepResult], now: datetime | None
    ) -> None:
        now = now or record.finished_at or self._clock.now()
        resolved = [await self._resolve(r) for r in results]
        join = self._dispatcher.prepare_internal(build_join(record, resolved, record.state, now))
        created, stored = await self._dispatcher.create_once(join)
        if created:  # exactly one caller creates the join: it announces the close
            self._stats.flows_closed += 1
            await self._events.flow_closed(record, results)
        # the flow's own row first: once the join is out it may finish (and write its outcome
        # on that row) before anything else here happens
        await self._mark_row(record, now)
        await self._dispatcher.publish_stored(stored)
        await self._close_up(record)

    async def _mark_row(self, record: FlowRecord, now: datetime) -> None:
        """An aborted or timed-out flow's row reads failed with the reason (idempotent)."""
        error = CLOSED_ERRORS.get(record.state)
        if record.entity is not None and error is not None:
            await self._write_rows([_flow_row(record, "failed", now, error=error)])

    async def _close_up(self, record: FlowRecord) -> None:
        """What follows the join's dispatch, each step idempotent: disarm the deadline, drop
        the step results."""
        if record.deadline is not None:
            sentinel = build_timeout_sentinel(record)
            await self._scheduler.cancel([schedule_name(sentinel)])
        await self._flows.release_results(record.flow_id)

    async def _resolve(self, result: StepResult) -> StepResult:
        if not blobs.is_blob_ref(result.result):
            return result
        value = await blobs.resolve(self._blobs, result.result)
        return StepResult(result.step_index, result.status, value, result.error)

    async def _write_rows(self, rows: list[ProjectionRow]) -> None:
        try:
            await self._projections.upsert(rows)
        except Exception:
            self._stats.projection_errors += 1
            logger.exception("flow projection write (%d rows) failed", len(rows))


def _flow_row(
    record: FlowRecord,
    status: str,
    now: datetime,
    *,
    error: str | None = None,
    result: object = None,
    generation: int = 0,
) -> ProjectionRow:
    assert record.entity is not None
    return ProjectionRow(
        entity_id=record.entity.id,
        entity_type=record.entity.type,
        task_id=record.flow_id,
        task_type=record.join.type,
        queue_id=record.join.queue_id,
        status=status,
        rank=RANKS[status],
        version=version_of(now),
        generation=generation,
        error=error,
        result=result,
        created_at=record.started_at,
        updated_at=now,
        kind="flow",
    )
